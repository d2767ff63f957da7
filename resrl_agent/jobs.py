"""The CLI's play jobs: ``rollout`` (training tasks, saved as JSONL) and ``eval`` (the held-out set, a report).

Both build their tasks, engine, settings and summaries through the run layer (:mod:`resrl_agent.run`) and
:mod:`resrl_agent.eval`, as the trainer does: ``resrl-agent eval`` of a run's checkpoint on the run's config plays
exactly the episodes the run's own held-out comparison played.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import envs
from resrl_agent.config import RunConfig
from resrl_agent.eval.report import EvalReport, build_report, write_report
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.loop import RolloutSettings, TaskSpec, run_episodes
from resrl_agent.run.engines import close_engine, play_engine
from resrl_agent.run.settings import rollout_settings
from resrl_agent.run.tasks import eval_tasks, train_tasks
from resrl_agent.seeding import seed_everything
from resrl_agent.types import Episode, write_episodes

logger = logging.getLogger(__name__)

__all__ = ["EvalResult", "eval_job", "play", "rollout_job"]


def play(
    config: RunConfig,
    tasks: list[TaskSpec],
    settings: RolloutSettings,
    *,
    engine: Any = None,
    formatter: ChatFormatter | None = None,
    policy_version: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[Episode]:
    """Play ``tasks`` with ``engine`` (default: the configured fixed policy, closed afterwards)."""
    seed_everything(config.seed)
    envs.load_module(config.env.id, "actions")  # fail early on an unknown env id
    owned = engine is None or formatter is None
    if owned:
        engine, formatter = play_engine(config)
    assert formatter is not None
    try:
        return run_episodes(
            config.env.id,
            tasks,
            engine,
            formatter,
            settings,
            env_kwargs=dict(config.env.kwargs),
            policy_version=policy_version,
            progress=progress,
        )
    finally:
        if owned:
            close_engine(engine)


def rollout_job(
    config: RunConfig,
    *,
    num_tasks: int | None = None,
    group_size: int | None = None,
    iteration: int = 0,
    engine: Any = None,
    formatter: ChatFormatter | None = None,
    settings: RolloutSettings | None = None,
    policy_version: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[Episode]:
    """G samples of ``num_tasks`` training tasks (iteration ``iteration``'s draw, as the trainer's) with the
    configured model: the ``rollout`` command."""
    tasks = train_tasks(
        config, iteration, num_tasks or config.rollout.tasks_per_iteration, group_size or config.rollout.group_size
    )
    return play(
        config,
        tasks,
        settings or rollout_settings(config),
        engine=engine,
        formatter=formatter,
        policy_version=policy_version,
        progress=progress,
    )


@dataclass(frozen=True)
class EvalResult:
    """What ``eval_job`` played and wrote."""

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
    """The held-out set (:func:`~resrl_agent.run.tasks.eval_tasks`: ``eval.num_tasks`` tasks x
    ``eval.samples_per_task`` samples) at the eval temperature and top-p (the paper: Avg@16 at T 0.6, top-p 0.95;
    Pass@k for k = 1..n): episodes, report JSON, Pass@k PNG."""
    tasks = eval_tasks(config, config.eval.num_tasks, config.eval.samples_per_task)
    settings = rollout_settings(config, evaluation=True)
    episodes = play(config, tasks, settings, engine=engine, formatter=formatter, policy_version=0, progress=progress)
    target = Path(out_dir) if out_dir is not None else config.resolved_run_dir / "eval"
    write_episodes(target / "eval_episodes.jsonl", episodes)
    report = build_report(episodes)
    paths = {"episodes": target / "eval_episodes.jsonl", **write_report(report, target, plot=plot)}
    return EvalResult(episodes, report, paths)
