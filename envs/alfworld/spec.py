"""``resrl/ALFWorld-v0``: the real alfworld engine; eval: success per task type and goal-condition success."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from envs.spec import EnvSpec, EpisodeOutcome


def episode_metrics(
    outcomes: Sequence[EpisodeOutcome], breakdown: Mapping[str, Mapping[str, float]], n: int
) -> dict[str, float]:
    """Success, the mean goal-condition success (the last ``info["goal_condition_success"]``) and success per task
    type (the breakdown's categories)."""
    gcs = [float(o.last("goal_condition_success") or 0.0) for o in outcomes]
    metrics = {
        "alfworld/success": sum(o.won for o in outcomes) / len(outcomes),
        "alfworld/goal_condition": math.fsum(gcs) / len(gcs),
    }
    metrics.update({f"alfworld/success/{k}": v["success"] for k, v in breakdown.items()})
    return metrics


SPEC = EnvSpec(
    id="resrl/ALFWorld-v0",
    entry_point="envs.alfworld.env:AlfworldEnv",
    category_key="task_type",
    episode_metrics=episode_metrics,
    cli="envs.alfworld.cli:app",
    cli_name="alfworld",
    cli_help="ALFWorld: generate games for the real engine.",
)
