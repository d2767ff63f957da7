"""BFCL's multi-turn checks for one turn: decodable calls, the backends' state, and the ground truth's responses.

As in BFCL's ``multi_turn_checker``: a turn whose ground truth is empty is not checked; otherwise the model must
have made at least one call in the turn, every backend's public attributes must equal the ground truth's
(``==`` on live values, so private fields like the current directory are not compared), and the multiset of the
ground truth's result strings for this turn must be contained in the model's result strings of all turns so far.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tools.bfcl import BFCLSession

__all__ = ["TurnCheck", "check_turn"]


@dataclass(frozen=True, slots=True)
class TurnCheck:
    passed: bool
    reason: str = ""


def check_turn(
    model: BFCLSession,
    truth: BFCLSession,
    *,
    model_turn_calls: int,
    truth_turn_results: list[str],
    model_results_so_far: list[str],
) -> TurnCheck:
    if not truth_turn_results:
        return TurnCheck(True, "empty ground truth: not checked")
    if model_turn_calls == 0:
        return TurnCheck(False, "no function call in a turn that needs one")
    model_state, truth_state = model.raw_state(), truth.raw_state()
    for class_name, truth_attrs in truth_state.items():
        for attr, expected in truth_attrs.items():
            if model_state[class_name].get(attr) != expected:
                return TurnCheck(False, f"state mismatch: {class_name}.{attr}")
    missing = Counter(truth_turn_results) - Counter(model_results_so_far)
    if missing:
        return TurnCheck(False, f"missing {sum(missing.values())} expected result(s)")
    return TurnCheck(True)
