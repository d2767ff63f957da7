"""Jobs behind the CLI that run rollouts with a config: task sampling, the HF engine, episode files, summaries."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

import envs
from resrl_agent.config import RunConfig
from resrl_agent.inference.base import SamplingParams
from resrl_agent.inference.hf import HFEngine, load_model_and_tokenizer
from resrl_agent.inference.make_model import resolve_model_path
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.seeding import derive_seed, seed_everything
from resrl_agent.types import Episode, make_group_id

logger = logging.getLogger(__name__)

__all__ = ["RolloutSummary", "rollout_job", "sample_tasks", "summarize", "wilson_interval"]


def sample_tasks(config: RunConfig, iteration: int, num_tasks: int, group_size: int) -> list[TaskSpec]:
    """G copies of ``num_tasks`` tasks; every copy of a task shares its reset seed, so a group is one task."""
    env = gym.make(config.env.id, **config.env.kwargs)
    try:
        task_ids = list(env.unwrapped.task_ids()) if hasattr(env.unwrapped, "task_ids") else []
    finally:
        env.close()
    specs = []
    for k in range(num_tasks):
        seed = derive_seed(config.seed, "task", iteration, k)
        task_id = task_ids[seed % len(task_ids)] if task_ids else None
        group_id = make_group_id(task_id or f"seed{seed}", iteration)
        specs.extend(TaskSpec(task_id, group_id, g, seed) for g in range(group_size))
    return specs


def build_engine(config: RunConfig) -> tuple[HFEngine, ChatFormatter]:
    if config.engine.backend != "hf":
        raise NotImplementedError(
            f"engine.backend={config.engine.backend!r} lands with issue 9 (rollouts); use engine.backend=hf"
        )
    model_dir = resolve_model_path(config.model.path)
    model, tokenizer = load_model_and_tokenizer(
        model_dir,
        dtype=config.model.dtype,
        device=config.engine.device,
        attn_implementation=config.model.attn_implementation,
    )
    return HFEngine(model, tokenizer), ChatFormatter(tokenizer)


def rollout_settings(
    config: RunConfig, *, temperature: float | None = None, top_p: float | None = None
) -> RolloutSettings:
    r = config.rollout
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
    )


def rollout_job(
    config: RunConfig,
    *,
    num_tasks: int | None = None,
    group_size: int | None = None,
    iteration: int = 0,
    engine: Any = None,
    formatter: ChatFormatter | None = None,
) -> list[Episode]:
    """Sample tasks and play them with the configured model (the `rollout` command and the smoke job)."""
    seed_everything(config.seed)
    envs.load_module(config.env.id, "actions")  # fail early on an unknown env id
    if engine is None or formatter is None:
        engine, formatter = build_engine(config)
    tasks = sample_tasks(
        config, iteration, num_tasks or config.rollout.tasks_per_iteration, group_size or config.rollout.group_size
    )
    return run_episodes(
        config.env.id, tasks, engine, formatter, rollout_settings(config), env_kwargs=dict(config.env.kwargs)
    )


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


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
