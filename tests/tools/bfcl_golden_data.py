"""Test helpers: load the copied BFCL data (tasks, answers, golden traces) from the repo."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "tests" / "data" / "bfcl" / "golden"
TASK_DIR = REPO / "envs" / "function_calling" / "data"
CATEGORIES = ("base", "miss_func", "miss_param", "long_context")


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def golden(category: str) -> list[dict[str, Any]]:
    return read_jsonl_gz(GOLDEN_DIR / f"multi_turn_{category}.jsonl.gz")


def tasks(category: str) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in read_jsonl_gz(TASK_DIR / f"BFCL_v4_multi_turn_{category}.json.gz")}


def replay(trace: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """Replay one golden trace on our backends; count matching results and states, list the first mismatches."""
    from tools.bfcl import BFCLSession

    session = BFCLSession(task["initial_config"], trace["involved_classes"], long_context=trace["long_context"])
    report: dict[str, Any] = {"calls": 0, "calls_ok": 0, "states": 1, "states_ok": 0, "mismatches": []}
    if session.state() == trace["initial_state"]:
        report["states_ok"] += 1
    else:
        report["mismatches"].append(("initial_state", _diff(session.state(), trace["initial_state"])))
    for turn_idx, turn in enumerate(trace["turns"]):
        for call, expected in zip(turn["calls"], turn["results"], strict=True):
            got = session.execute(call)
            report["calls"] += 1
            if got == expected:
                report["calls_ok"] += 1
            else:
                report["mismatches"].append((f"turn {turn_idx} {call[:80]}", got[:300], expected[:300]))
        report["states"] += 1
        state = session.state()
        if state == turn["state"]:
            report["states_ok"] += 1
        else:
            report["mismatches"].append((f"turn {turn_idx} state", _diff(state, turn["state"])))
    return report


def _diff(got: Any, expected: Any, path: str = "") -> str:
    if isinstance(got, dict) and isinstance(expected, dict):
        if list(got) != list(expected):
            return f"{path}: keys {list(got)[:8]} != {list(expected)[:8]}"
        for key in got:
            if got[key] != expected[key]:
                return _diff(got[key], expected[key], f"{path}/{key}")
    if isinstance(got, list) and isinstance(expected, list) and len(got) == len(expected):
        for idx, (a, b) in enumerate(zip(got, expected, strict=True)):
            if a != b:
                return _diff(a, b, f"{path}[{idx}]")
    return f"{path}: {str(got)[:200]} != {str(expected)[:200]}"
