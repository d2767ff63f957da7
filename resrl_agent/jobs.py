"""Jobs behind the CLI: task sampling, the configured engine, rollouts, evaluation reports, episode files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

import envs
from resrl_agent.config import RunConfig
from resrl_agent.errors import ConfigError
from resrl_agent.eval.metrics import wilson_interval
from resrl_agent.inference.base import InferenceEngine, SamplingParams
from resrl_agent.inference.hf import HFEngine, load_model_and_tokenizer
from resrl_agent.inference.make_model import resolve_model_path
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.rollout.remote_pool import RemotePoolSettings
from resrl_agent.rollout.workers import WorkerKind
from resrl_agent.seeding import derive_seed, seed_everything
from resrl_agent.types import Episode, make_group_id, write_episodes

if TYPE_CHECKING:
    from resrl_agent.eval.report import EvalReport

logger = logging.getLogger(__name__)

__all__ = [
    "EvalResult",
    "RolloutSummary",
    "build_engine",
    "eval_job",
    "remote_pool_settings",
    "rollout_job",
    "rollout_settings",
    "sample_tasks",
    "summarize",
    "wilson_interval",
]


def sample_tasks(
    config: RunConfig,
    iteration: int,
    num_tasks: int,
    group_size: int,
    *,
    split: str | None = None,
    distinct: bool = False,
) -> list[TaskSpec]:
    """G copies of ``num_tasks`` tasks; every copy of a task shares its reset seed, so a group is one task.

    ``split`` is passed to the env's ``task_ids(split)``; ``distinct=True`` (evaluation) draws tasks without
    replacement from a seeded permutation (all of them when ``num_tasks`` is at least the number of tasks).
    """
    env = gym.make(config.env.id, **config.env.kwargs)
    try:
        lister = getattr(env.unwrapped, "task_ids", None)
        task_ids = (list(lister(split)) if split is not None else list(lister())) if lister is not None else []
    finally:
        env.close()
    if distinct and task_ids:
        order = np.random.default_rng(derive_seed(config.seed, "eval-order", iteration)).permutation(len(task_ids))
        chosen: list[str | None] = [task_ids[int(i)] for i in order[:num_tasks]]
    else:
        chosen = []
        for k in range(num_tasks):
            seed = derive_seed(config.seed, "task", iteration, k)
            chosen.append(task_ids[seed % len(task_ids)] if task_ids else None)
    specs = []
    for k, task_id in enumerate(chosen):
        seed = derive_seed(config.seed, "task", iteration, k)
        group_id = make_group_id(task_id or f"seed{seed}", iteration)
        specs.extend(TaskSpec(task_id, group_id, g, seed) for g in range(group_size))
    return specs


def build_engine(config: RunConfig) -> tuple[InferenceEngine, ChatFormatter]:
    """The configured backend and the chat formatter of the model's tokenizer.

    ``hf`` loads the model in process; ``vllm`` starts a vLLM offline engine on ``model.path``; ``openai`` talks to
    the server at ``engine.url`` (``model.path`` must hold the same tokenizer: prompts are rendered here).
    """
    model_dir = resolve_model_path(config.model.path)
    backend = config.engine.backend
    if backend == "hf":
        model, tokenizer = load_model_and_tokenizer(
            model_dir,
            dtype=config.model.dtype,
            device=config.engine.device,
            attn_implementation=config.model.attn_implementation,
        )
        return HFEngine(model, tokenizer), ChatFormatter(tokenizer)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if backend == "vllm":
        from resrl_agent.trainer.engines import vllm_engine

        engine: InferenceEngine = vllm_engine(config, tokenizer)
    elif backend == "openai":
        from resrl_agent.inference.openai_http import OpenAIEngine

        assert config.engine.url is not None  # checked by EngineConfig
        engine = OpenAIEngine(config.engine.url, tokenizer=tokenizer, concurrency=config.rollout.concurrency)
    else:  # pragma: no cover - the config's Literal rules it out
        raise ConfigError(f"engine.backend={backend!r} is unknown; use hf, vllm or openai")
    return engine, ChatFormatter(tokenizer)


def rollout_settings(
    config: RunConfig,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    sequential: bool = False,
    env_workers: WorkerKind | None = None,
    evaluation: bool = False,
) -> RolloutSettings:
    """The loop's settings from the config; ``env_workers`` (a CLI flag) overrides ``rollout.env_workers``.

    ``evaluation``: the held-out play's settings, the eval's temperature and top-p (unless given) and its sampling
    seed (``eval.seed``, else the run's), so runs of different seeds can be scored on the same samples."""
    r = config.rollout
    if evaluation:
        temperature = config.eval.temperature if temperature is None else temperature
        top_p = config.eval.top_p if top_p is None else top_p
    sampling = SamplingParams(
        temperature=r.temperature if temperature is None else temperature,
        top_p=r.top_p if top_p is None else top_p,
        top_k=r.top_k,
        max_new_tokens=r.max_new_tokens,
        stop=tuple(r.stop),
    )
    return RolloutSettings(
        context_mode=r.context_mode,
        window_turns=r.window_turns,
        max_turns=r.max_turns,
        max_context_tokens=r.max_context_tokens,
        sampling=sampling,
        concurrency=r.concurrency,
        env_workers=env_workers or r.env_workers,
        step_timeout_s=r.step_timeout_s,
        max_env_processes=r.max_env_processes,
        seed=config.eval_seed if evaluation else config.seed,
        sequential=sequential,
        remote=remote_pool_settings(config),
    )


def remote_pool_settings(config: RunConfig) -> RemotePoolSettings | None:
    """``env.servers`` and ``env.remote`` as the rollout loop's pool settings; None when envs run locally."""
    if not config.env.servers:
        return None
    r = config.env.remote
    return RemotePoolSettings(
        servers=tuple(config.env.servers),
        token_file=r.token_file,
        token_env=r.token_env,
        transport=r.transport,
        request_timeout_s=r.request_timeout_s,
        retries=r.retries,
        health_interval_s=r.health_interval_s,
        probe_timeout_s=r.probe_timeout_s,
        max_reruns=r.max_reruns,
        wait_for_server_s=r.wait_for_server_s,
    )


def rollout_job(
    config: RunConfig,
    *,
    num_tasks: int | None = None,
    group_size: int | None = None,
    iteration: int = 0,
    engine: Any = None,
    formatter: ChatFormatter | None = None,
    split: str | None = None,
    distinct: bool = False,
    settings: RolloutSettings | None = None,
    policy_version: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[Episode]:
    """Sample tasks and play them with the configured model (the `rollout` command and the smoke job)."""
    seed_everything(config.seed)
    envs.load_module(config.env.id, "actions")  # fail early on an unknown env id
    if engine is None or formatter is None:
        engine, formatter = build_engine(config)
    tasks = sample_tasks(
        config,
        iteration,
        num_tasks or config.rollout.tasks_per_iteration,
        group_size or config.rollout.group_size,
        split=split if split is not None else config.env.train_split,
        distinct=distinct,
    )
    return run_episodes(
        config.env.id,
        tasks,
        engine,
        formatter,
        settings or rollout_settings(config),
        env_kwargs=dict(config.env.kwargs),
        policy_version=policy_version,
        progress=progress,
    )


@dataclass(frozen=True)
class EvalResult:
    episodes: list[Episode]
    report: EvalReport
    paths: dict[str, Path]


def eval_job(
    config: RunConfig,
    *,
    engine: Any = None,
    formatter: ChatFormatter | None = None,
    out_dir: str | Path | None = None,
    plot: bool = True,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """``eval.num_tasks`` distinct tasks x ``eval.samples_per_task`` samples at the eval temperature and top-p
    (the paper: Avg@16 at T 0.6, top-p 0.95; Pass@k for k = 1..n): episodes, report JSON, Pass@k PNG."""
    from resrl_agent.eval.report import build_report, write_report

    settings = rollout_settings(config, evaluation=True)
    split = config.eval.split if config.eval.split is not None else config.env.eval_split
    episodes = rollout_job(
        config,
        num_tasks=config.eval.num_tasks,
        group_size=config.eval.samples_per_task,
        iteration=-1,
        engine=engine,
        formatter=formatter,
        split=split,
        distinct=True,
        settings=settings,
        progress=progress,
    )
    target = Path(out_dir) if out_dir is not None else config.resolved_run_dir / "eval"
    write_episodes(target / "eval_episodes.jsonl", episodes)
    report = build_report(episodes)
    paths = {"episodes": target / "eval_episodes.jsonl", **write_report(report, target, plot=plot)}
    return EvalResult(episodes, report, paths)


@dataclass(frozen=True)
class RolloutSummary:
    episodes: int
    groups: int
    won: int
    mean_return: float
    mean_turns: float
    invalid_format_rate: float
    tokens: int
    stop_reasons: dict[str, int]

    @property
    def success_rate(self) -> float:
        return self.won / self.episodes if self.episodes else 0.0

    def rows(self) -> list[tuple[str, str]]:
        low, high = wilson_interval(self.won, self.episodes)
        return [
            ("episodes", str(self.episodes)),
            ("groups", str(self.groups)),
            ("success", f"{self.success_rate:.3f} (95% CI {low:.3f}-{high:.3f})"),
            ("mean return", f"{self.mean_return:.3f}"),
            ("mean turns", f"{self.mean_turns:.2f}"),
            ("invalid format rate", f"{self.invalid_format_rate:.3f}"),
            ("tokens", str(self.tokens)),
            ("stop reasons", ", ".join(f"{k}={v}" for k, v in sorted(self.stop_reasons.items()))),
        ]


def summarize(episodes: list[Episode]) -> RolloutSummary:
    turns = [t for e in episodes for t in e.turns]
    stops: dict[str, int] = {}
    for e in episodes:
        stops[e.stop_reason] = stops.get(e.stop_reason, 0) + 1
    n = max(len(episodes), 1)
    return RolloutSummary(
        episodes=len(episodes),
        groups=len({e.group_id for e in episodes}),
        won=sum(e.won for e in episodes),
        mean_return=sum(e.total_return for e in episodes) / n,
        mean_turns=len(turns) / n,
        invalid_format_rate=sum(not t.format_valid for t in turns) / max(len(turns), 1),
        tokens=sum(e.num_tokens for e in episodes),
        stop_reasons=stops,
    )


def default_episode_path(config: RunConfig, name: str) -> Path:
    return config.resolved_run_dir / name
