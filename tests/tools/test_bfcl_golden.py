"""Golden traces: every BFCL ground-truth call, replayed on our backends, gives the original result and state.

The traces (tests/data/bfcl/golden/, derived from the upstream backends, see its README) hold 600 tasks: every
call's exact result string and every backend's public state after every turn. Each mismatch is a bug.
"""

from __future__ import annotations

import pytest
from bfcl_golden_data import golden, replay, tasks

# category: (tasks, calls, states incl. the initial one) in the golden files
EXPECTED_COUNTS = {
    "base": (150, 852, 700),
    "miss_func": (150, 850, 850),
    "miss_param": (150, 850, 850),
    "long_context": (150, 913, 700),
}


@pytest.mark.parametrize("category", list(EXPECTED_COUNTS))
def test_golden_traces_replay_exactly(category: str) -> None:
    task_by_id = tasks(category)
    totals = {"tasks": 0, "calls": 0, "calls_ok": 0, "states": 0, "states_ok": 0}
    failures = []
    for trace in golden(category):
        report = replay(trace, task_by_id[trace["id"]])
        totals["tasks"] += 1
        for key in ("calls", "calls_ok", "states", "states_ok"):
            totals[key] += report[key]
        if report["mismatches"]:
            failures.append((trace["id"], report["mismatches"][:3]))
    assert (totals["tasks"], totals["calls"], totals["states"]) == EXPECTED_COUNTS[category]
    assert not failures, f"{len(failures)} tasks mismatch, first: {failures[:3]}"
    assert totals["calls_ok"] == totals["calls"]
    assert totals["states_ok"] == totals["states"]
