"""Function-calling tasks: BFCL multi-turn data (evaluation) and our own generated tasks (training)."""

from __future__ import annotations

import gzip
import json
from functools import cache
from importlib import resources
from typing import Any

from envs.base import EnvError
from envs.function_calling.fctask import FCTask

__all__ = ["BFCL_TASK_SETS", "TASK_SETS", "FCTask", "load_task", "task_ids"]

# task set -> BFCL data category
BFCL_TASK_SETS = {
    "bfcl_base": "base",
    "bfcl_miss_func": "miss_func",
    "bfcl_miss_param": "miss_param",
    "bfcl_long_context": "long_context",
}
TASK_SETS = (*BFCL_TASK_SETS, "generated")
MISSED_FUNCTIONS_MESSAGE = "I have updated some more functions you can choose from. What about now?"


def _read_gz(name: str) -> list[dict[str, Any]]:
    raw = resources.files("envs.function_calling").joinpath(f"data/{name}").read_bytes()
    return [json.loads(line) for line in gzip.decompress(raw).decode("utf-8").splitlines() if line.strip()]


@cache
def _bfcl_tasks(category: str) -> dict[str, FCTask]:
    answers = {row["id"]: row["ground_truth"] for row in _read_gz(f"possible_answer_{category}.json.gz")}
    tasks: dict[str, FCTask] = {}
    task_set = next(name for name, cat in BFCL_TASK_SETS.items() if cat == category)
    for row in _read_gz(f"BFCL_v4_multi_turn_{category}.json.gz"):
        missed = {int(turn): list(names) for turn, names in row.get("missed_function", {}).items()}
        user_turns = []
        for turn_idx, messages in enumerate(row["question"]):
            if not messages and turn_idx in missed:
                user_turns.append(MISSED_FUNCTIONS_MESSAGE)
            else:
                user_turns.append("\n".join(message["content"] for message in messages if message["role"] == "user"))
        tasks[row["id"]] = FCTask(
            task_id=row["id"],
            task_set=task_set,
            user_turns=user_turns,
            initial_config=row["initial_config"],
            involved_classes=list(row["involved_classes"]),
            ground_truth=answers[row["id"]],
            missed_functions=missed,
            long_context=category == "long_context",
        )
    return tasks


def task_ids(task_set: str, *, num_generated: int = 2000) -> list[str]:
    """Every task id of a task set (``generated`` has ``num_generated`` ids, ``gen_0`` ...)."""
    if task_set == "generated":
        return [f"gen_{index}" for index in range(num_generated)]
    if task_set not in BFCL_TASK_SETS:
        raise EnvError(f"unknown task set {task_set!r}", hint=f"choose one of {', '.join(TASK_SETS)}")
    return list(_bfcl_tasks(BFCL_TASK_SETS[task_set]))


def load_task(task_id: str) -> FCTask:
    """The task with this id: ``multi_turn_<category>_<n>`` (BFCL) or ``gen_<n>`` (generated)."""
    if task_id.startswith("gen_") and task_id[4:].isdigit():
        from envs.function_calling.generator import generate_task

        return generate_task(int(task_id[4:]))
    category = task_id.removeprefix("multi_turn_").rpartition("_")[0]
    if category not in BFCL_TASK_SETS.values() or task_id not in _bfcl_tasks(category):
        raise EnvError(
            f"unknown task id {task_id!r}",
            hint="ids look like 'multi_turn_base_0', 'multi_turn_miss_func_3' or 'gen_12'",
        )
    return _bfcl_tasks(category)[task_id]
