"""``resrl/FunctionCalling-v0``: BFCL multi-turn function calling; eval: accuracy, success per BFCL category."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envs.spec import EnvSpec, EpisodeOutcome


def episode_metrics(
    outcomes: Sequence[EpisodeOutcome], breakdown: Mapping[str, Mapping[str, float]], n: int
) -> dict[str, float]:
    """BFCL's multi-turn accuracy: the share of episodes whose every turn passed its checks (``won``)."""
    return {"bfcl/multi_turn_accuracy": sum(o.won for o in outcomes) / len(outcomes)}


SPEC = EnvSpec(
    id="resrl/FunctionCalling-v0",
    entry_point="envs.function_calling.env:FunctionCallingEnv",
    category_key="category",
    episode_metrics=episode_metrics,
)
