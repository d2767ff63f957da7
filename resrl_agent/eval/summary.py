"""The one summary of a list of episodes: counts, success, return, turns, format and action validity, tokens.

``resrl-agent rollout`` prints it, the trainer logs it as ``rollout/*`` metrics, the eval report and the held-out
comparison take their success and return from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from resrl_agent.eval.metrics import wilson_interval
from resrl_agent.types import Episode

__all__ = ["RolloutSummary", "summarize"]


@dataclass(frozen=True)
class RolloutSummary:
    episodes: int
    groups: int
    won: int
    mean_return: float
    mean_turns: float
    invalid_format_rate: float  # of turns: the reply did not parse
    invalid_action_rate: float  # of turns: the env did not accept the action (unparsed ones included)
    env_errors: int  # episodes that ended on an env error
    tokens: int  # prompt and response tokens of every episode
    response_tokens: int
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


def summarize(episodes: Sequence[Episode]) -> RolloutSummary:
    """Sums and means over ``episodes`` (zeros for none)."""
    turns = [t for e in episodes for t in e.turns]
    stops: dict[str, int] = {}
    for e in episodes:
        stops[e.stop_reason] = stops.get(e.stop_reason, 0) + 1
    n = max(len(episodes), 1)
    per_turn = max(len(turns), 1)
    return RolloutSummary(
        episodes=len(episodes),
        groups=len({e.group_id for e in episodes}),
        won=sum(e.won for e in episodes),
        mean_return=math.fsum(e.total_return for e in episodes) / n,
        mean_turns=len(turns) / n,
        invalid_format_rate=sum(not t.format_valid for t in turns) / per_turn,
        invalid_action_rate=sum(not t.action_valid for t in turns) / per_turn,
        env_errors=stops.get("env_error", 0),
        tokens=sum(e.num_tokens for e in episodes),
        response_tokens=sum(len(t.response_ids) for t in turns),
        stop_reasons=stops,
    )
