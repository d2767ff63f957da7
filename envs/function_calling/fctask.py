"""One multi-turn function-calling task (BFCL's or a generated one), a leaf both sources build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FCTask"]


@dataclass(frozen=True)
class FCTask:
    """One multi-turn task: user turns, backends' initial config and the ground-truth calls of each turn.

    ``missed_functions`` maps a turn index to the functions withheld from the tool list until that turn
    (BFCL's miss_func category); that turn's user message is :data:`MISSED_FUNCTIONS_MESSAGE`.
    """

    task_id: str
    task_set: str
    user_turns: list[str]
    initial_config: dict[str, Any]
    involved_classes: list[str]
    ground_truth: list[list[str]]
    missed_functions: dict[int, list[str]] = field(default_factory=dict)
    long_context: bool = False

    @property
    def num_turns(self) -> int:
        return len(self.ground_truth)
