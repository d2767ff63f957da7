"""The held-out comparison of a run: each policy's success on the same held-out episodes, with its Wilson interval
and the one-sided Fisher exact p-value of its success over the row before it (untrained, SFT, SFT + RL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resrl_agent.eval.metrics import fisher_greater, wilson_interval
from resrl_agent.eval.summary import summarize
from resrl_agent.types import Episode

__all__ = ["HeldOutResult", "heldout_rows"]


@dataclass(frozen=True)
class HeldOutResult:
    """One policy's score on the held-out set."""

    label: str
    won: int
    total: int
    mean_return: float

    @classmethod
    def of(cls, label: str, episodes: Sequence[Episode]) -> HeldOutResult:
        s = summarize(episodes)
        return cls(label, s.won, s.episodes, s.mean_return)

    @property
    def success(self) -> float:
        return self.won / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.won, self.total)

    def line(self) -> str:
        lo, hi = self.interval
        return (
            f"{self.label:>10}: success {self.success:.3f} ({self.won}/{self.total}, 95% CI {lo:.3f}-{hi:.3f}), "
            f"mean return {self.mean_return:.3f}"
        )


def heldout_rows(results: Sequence[HeldOutResult]) -> list[dict[str, Any]]:
    """The comparison as records: success, Wilson interval, mean return and the p-value over the previous row
    (None for the first row)."""
    rows = []
    for k, result in enumerate(results):
        lo, hi = result.interval
        before = results[k - 1] if k else None
        rows.append(
            {
                "policy": result.label,
                "won": result.won,
                "total": result.total,
                "success": result.success,
                "ci_low": lo,
                "ci_high": hi,
                "mean_return": result.mean_return,
                "p_over_previous": None
                if before is None
                else fisher_greater(before.won, before.total, result.won, result.total),
            }
        )
    return rows
