"""Rollout throughput: sequential (one episode at a time, inline env) vs concurrent (batched generation, envs in
worker threads or processes), side by side in one run, on ALFWorld with the tiny model.

    .venv/bin/python benchmarks/bench_rollout.py                      # ALFWorld, 4 tasks x G=4, 6 turns
    .venv/bin/python benchmarks/bench_rollout.py --env resrl/WebShop-v0 --tasks 8 --group 4 --workers process

Prints episodes/s, sampled tokens/s and env-steps/s for each mode and the concurrent/sequential ratio, and checks
that both modes sampled the same tokens (per-request seeds).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _alfworld_prompts() -> Any:
    """ALFWorld's PROMPTS, or an adapter over its prompt functions while envs/alfworld/prompts.py has none."""
    import envs.alfworld.prompts as p
    from envs.base import PromptBuilder

    if hasattr(p, "PROMPTS"):
        return p.PROMPTS

    class AlfworldPrompts(PromptBuilder):
        system_prompt = p.SYSTEM

        def initial(self, observation: str, info: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"role": "user", "content": p.user_message(observation, info)}]

        def reply(self, observation: str, info: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"role": "user", "content": p.observation_message(observation, info)}]

    return AlfworldPrompts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="resrl/ALFWorld-v0")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--workers", default="thread", choices=["thread", "process"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()

    import gymnasium as gym
    import torch

    import envs
    from resrl_agent.inference.base import SamplingParams
    from resrl_agent.inference.hf import HFEngine, load_model_and_tokenizer
    from resrl_agent.inference.make_model import resolve_model_path
    from resrl_agent.rollout.chat import ChatFormatter
    from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, env_thread_safe, run_episodes

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(resolve_model_path(args.model))
    engine, formatter = HFEngine(model, tokenizer), ChatFormatter(tokenizer)
    env = gym.make(args.env)
    task_ids = list(env.unwrapped.task_ids())[: args.tasks]
    env.close()
    tasks = [TaskSpec(t, f"it0/{t}", g, 1000 + k) for k, t in enumerate(task_ids) for g in range(args.group)]
    prompts = _alfworld_prompts() if args.env == "resrl/ALFWorld-v0" else envs.load_module(args.env, "prompts").PROMPTS
    sampling = SamplingParams(max_new_tokens=args.new_tokens)
    base = {"max_turns": args.turns, "max_context_tokens": 8192, "sampling": sampling, "seed": 0}
    modes = {
        "sequential": RolloutSettings(**base, sequential=True),  # type: ignore[arg-type]
        f"concurrent ({args.workers if env_thread_safe(args.env) else 'process'})": RolloutSettings(
            **base,  # type: ignore[arg-type]
            concurrency=len(tasks),
            env_workers=args.workers,
        ),
    }
    # warm-up: first-call costs (imports, env construction caches) out of the timings
    run_episodes(args.env, tasks[:1], engine, formatter, modes["sequential"], prompts=prompts)

    print(
        f"{args.env}: {len(task_ids)} tasks x G={args.group} = {len(tasks)} episodes, <= {args.turns} turns, "
        f"<= {args.new_tokens} new tokens/turn, torch threads {args.threads}, model {args.model}"
    )
    print(f"{'mode':<24}{'wall s':>9}{'episodes/s':>12}{'tokens/s':>11}{'turns/s':>10}")
    results = {}
    for name, settings in modes.items():
        start = time.perf_counter()
        episodes = run_episodes(args.env, tasks, engine, formatter, settings, prompts=prompts)
        wall = time.perf_counter() - start
        tokens = sum(len(t.response_ids) for e in episodes for t in e.turns)
        turns = sum(len(e.turns) for e in episodes)
        results[name] = (wall, episodes)
        print(f"{name:<24}{wall:>9.2f}{len(episodes) / wall:>12.2f}{tokens / wall:>11.0f}{turns / wall:>10.1f}")
    (seq_wall, seq_eps), (con_wall, con_eps) = results.values()
    same = [[t.response_ids for t in e.turns] for e in seq_eps] == [[t.response_ids for t in e.turns] for e in con_eps]
    stops: dict[str, int] = {}
    for e in con_eps:
        stops[e.stop_reason] = stops.get(e.stop_reason, 0) + 1
    print(
        f"ratio concurrent/sequential: {seq_wall / con_wall:.2f}x episodes/s; same sampled tokens: {same}; "
        f"stop reasons {stops}"
    )


if __name__ == "__main__":
    main()
