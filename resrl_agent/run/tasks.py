"""Which tasks a job plays: training groups per iteration and one fixed held-out set, for every job.

Training draws come from ``env.train_split`` without replacement inside an iteration (so two groups never share a
task, and so a group id). The held-out set is ``num_tasks`` of a seeded shuffle of :func:`held_out_split` with
reset and sampling seeds from ``eval.seed`` (else the run's seed): the trainer's held-out comparison,
``resrl-agent eval`` and the benchmarks all call :func:`eval_tasks`, so they score the very same episodes.
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import gymnasium as gym

from resrl_agent.config import RunConfig
from resrl_agent.rollout.loop import TaskSpec
from resrl_agent.seeding import derive_seed
from resrl_agent.types import make_group_id

__all__ = ["eval_tasks", "held_out_split", "split_task_ids", "train_tasks"]


def split_task_ids(config: RunConfig, split: str | None) -> list[str]:
    """The env's task ids of ``split`` (comma-separated splits: their union; all ids if None), sorted."""
    env: Any = gym.make(config.env.id, **config.env.kwargs)
    try:
        task_ids = getattr(env.unwrapped, "task_ids", None)
        if task_ids is None:
            return []
        if split is not None and "split" in inspect.signature(task_ids).parameters:
            # "valid_seen,valid_unseen": the union of several splits (ALFWorld's held-out games are in two)
            return sorted({t for part in split.split(",") for t in task_ids(split=part.strip())})
        return sorted(task_ids())
    finally:
        env.close()


def train_tasks(
    config: RunConfig, iteration: int, num_tasks: int, group_size: int, task_ids: list[str] | None = None
) -> list[TaskSpec]:
    """G copies of ``num_tasks`` distinct tasks for ``iteration`` (a group shares the task and its reset seed)."""
    ids = split_task_ids(config, config.env.train_split) if task_ids is None else task_ids
    rng = random.Random(derive_seed(config.seed, "train-tasks", iteration))
    order = rng.sample(ids, len(ids)) if ids else []
    specs = []
    for k in range(num_tasks):
        seed = derive_seed(config.seed, "task", iteration, k)
        task_id = order[k % len(order)] if order else None
        suffix = f"#{k // len(order)}" if order and k >= len(order) else ""
        group_id = make_group_id((task_id or f"seed{seed}") + suffix, iteration)
        specs.extend(TaskSpec(task_id, group_id, g, seed) for g in range(group_size))
    return specs


def held_out_split(config: RunConfig) -> str | None:
    """The split the held-out set is drawn from: ``eval.split`` (an evaluation's own override), else
    ``env.eval_split``; None: every task id the env lists."""
    return config.eval.split if config.eval.split is not None else config.env.eval_split


def eval_tasks(config: RunConfig, num_tasks: int, samples: int = 1) -> list[TaskSpec]:
    """The held-out set: the same tasks and reset/sampling seeds at every evaluation of the run (and of every run
    with the same ``eval.seed``, whatever its own seed)."""
    ids = split_task_ids(config, held_out_split(config))
    base = config.eval_seed
    rng = random.Random(derive_seed(base, "eval-tasks"))
    chosen = rng.sample(ids, min(num_tasks, len(ids))) if ids else [None] * num_tasks  # type: ignore[list-item]
    specs = []
    for k, task_id in enumerate(chosen):
        seed = derive_seed(base, "eval", k)
        group_id = make_group_id(task_id or f"seed{seed}", -1)
        specs.extend(TaskSpec(task_id, group_id, s, seed) for s in range(samples))
    return specs
