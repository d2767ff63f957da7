"""``resrl/Math-v0``: single-turn verifiable math; eval: Avg@n per source (benchmark or generated kind)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envs.spec import EnvSpec, EpisodeOutcome


def category_of_task(task_id: str) -> str:
    """A task id's source where the info names none: its benchmark prefix (``gsm8k-12``), ``generated`` for
    ``gen-*``."""
    prefix = task_id.split("-", 1)[0]
    return "generated" if prefix == "gen" else prefix


def episode_metrics(
    outcomes: Sequence[EpisodeOutcome], breakdown: Mapping[str, Mapping[str, float]], n: int
) -> dict[str, float]:
    """Avg@n of every source."""
    return {f"math/avg@{n}/{k}": v["success"] for k, v in breakdown.items()}


SPEC = EnvSpec(
    id="resrl/Math-v0",
    entry_point="envs.math.env:MathEnv",
    category_key="source",
    category_of_task=category_of_task,
    episode_metrics=episode_metrics,
    example_kwargs={"task_set": "math500"},
)
