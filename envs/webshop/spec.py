"""``resrl/WebShop-v0``: shopping on a generated catalogue; eval: mean score and success, per category."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envs.spec import EnvSpec, EpisodeOutcome


def episode_metrics(
    outcomes: Sequence[EpisodeOutcome], breakdown: Mapping[str, Mapping[str, float]], n: int
) -> dict[str, float]:
    """WebShop's mean score (the last ``info["score"]``, 0 for an episode that never bought) and success rate."""
    scores = [float(o.last("score") or 0.0) for o in outcomes]
    return {"webshop/score": sum(scores) / len(scores), "webshop/success": sum(o.won for o in outcomes) / len(outcomes)}


SPEC = EnvSpec(
    id="resrl/WebShop-v0",
    entry_point="envs.webshop.env:WebShopEnv",
    category_key="category",
    episode_metrics=episode_metrics,
    cli="envs.webshop.cli:app",
    cli_name="webshop",
    cli_help="WebShop: play in the terminal, inspect the catalogue.",
)
