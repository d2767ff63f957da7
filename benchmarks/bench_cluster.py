"""Remote env pools: rollout episodes/s with 1, 2 and 4 env-server processes, side by side in one run.

    .venv/bin/python benchmarks/bench_cluster.py                          # ALFWorld, 4 tasks x G=4, 4 turns
    .venv/bin/python benchmarks/bench_cluster.py --env resrl/WebShop-v0 --servers 1,2,4 --tasks 8

Each env server is a real ``python -m servers.env_server`` process with one env worker process on 127.0.0.1, so
with N servers N env processes step in parallel; the rollout loop (tiny model, HF engine) spreads its sessions over
them by load (``env.servers``). Servers start, and one warm-up rollout runs, before the timing. Prints episodes/s,
turns/s and the ratio to one server, and checks that every server count sampled the same tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


def _start(env_id: str) -> tuple[str, subprocess.Popen[bytes]]:
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "servers.env_server", "--envs", env_id, "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return url, proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"env server {url} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="resrl/ALFWorld-v0")
    parser.add_argument("--servers", default="1,2,4", help="server counts to compare")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()

    import gymnasium as gym
    import torch

    import envs
    from resrl_agent.inference.base import SamplingParams
    from resrl_agent.inference.hf import HFEngine, load_model_and_tokenizer
    from resrl_agent.inference.make_model import resolve_model_path
    from resrl_agent.rollout.chat import ChatFormatter
    from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
    from resrl_agent.rollout.remote_pool import RemotePoolSettings

    counts = [int(n) for n in args.servers.split(",")]
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(resolve_model_path("tiny"))
    engine, formatter = HFEngine(model, tokenizer), ChatFormatter(tokenizer)
    env = gym.make(args.env)
    task_ids = list(env.unwrapped.task_ids())[: args.tasks]
    env.close()
    tasks = [TaskSpec(t, f"it0/{t}", g, 1000 + k) for k, t in enumerate(task_ids) for g in range(args.group)]
    prompts = envs.load_module(args.env, "prompts").PROMPTS
    sampling = SamplingParams(max_new_tokens=args.new_tokens)
    servers = [_start(args.env) for _ in range(max(counts))]
    try:
        print(
            f"{args.env}: {len(task_ids)} tasks x G={args.group} = {len(tasks)} episodes, <= {args.turns} turns, "
            f"<= {args.new_tokens} new tokens/turn, each server 1 env worker process, {os.cpu_count()} CPUs"
        )
        print(f"{'servers':<9}{'wall s':>9}{'episodes/s':>12}{'turns/s':>10}{'ratio':>8}")
        results = {}
        for n in counts:
            urls = tuple(url for url, _ in servers[:n])
            settings = RolloutSettings(
                max_turns=args.turns,
                max_context_tokens=8192,
                sampling=sampling,
                concurrency=len(tasks),
                remote=RemotePoolSettings(urls, request_timeout_s=120),
            )
            run_episodes(args.env, tasks[: n * 2], engine, formatter, settings, prompts=prompts)  # warm-up
            start = time.perf_counter()
            episodes = run_episodes(args.env, tasks, engine, formatter, settings, prompts=prompts)
            wall = time.perf_counter() - start
            results[n] = (wall, episodes)
            turns = sum(len(e.turns) for e in episodes)
            ratio = results[counts[0]][0] / wall
            print(f"{n:<9}{wall:>9.2f}{len(episodes) / wall:>12.2f}{turns / wall:>10.1f}{ratio:>7.2f}x")
        tokens = [[[t.response_ids for t in e.turns] for e in eps] for _, eps in results.values()]
        errors = sum(e.stop_reason == "env_error" for _, eps in results.values() for e in eps)
        print(f"same sampled tokens for every server count: {all(t == tokens[0] for t in tokens)}; env errors {errors}")
    finally:
        for _, proc in servers:
            proc.send_signal(signal.SIGTERM)
        for _, proc in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)


if __name__ == "__main__":
    main()
