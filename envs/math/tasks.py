"""Math task sets: problems the project generates (arithmetic and algebra) and the paper's real benchmarks.

A task is a :class:`MathTask` (id, problem text, reference answer in LaTeX). Task ids name their set, so any env
instance can reset to any task: ``gen-train-00042`` / ``gen-test-00007`` (generated on demand from the index,
deterministic across machines), ``math500-17``, ``aime2024-3``, ``aime2025-0``, ``amc2023-5``, ``olympiadbench-9``,
``gsm8k-100`` (shipped under ``data/``, each folder with its LICENSE and SOURCE.md) and ``minerva-4`` (Minerva Math
is CC BY-NC-SA, so it is not shipped: pass ``minerva_path`` pointing at its ``test.jsonl``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path

import numpy as np

from envs.base import EnvError

__all__ = [
    "BENCHMARKS",
    "GENERATED_KINDS",
    "TASK_SETS",
    "MathTask",
    "benchmark_tasks",
    "generated_task",
    "last_boxed",
    "load_task",
    "task_ids",
]

DATA_DIR = Path(__file__).parent / "data"
BENCHMARKS = ("math500", "aime2024", "aime2025", "amc2023", "olympiadbench", "gsm8k", "minerva")
TASK_SETS = ("generated", *BENCHMARKS)
GENERATED_KINDS = ("add", "sub", "mul", "linear", "fraction", "remainder", "quadratic")
GENERATED_SPLITS = ("train", "test")


@dataclass(frozen=True, slots=True)
class MathTask:
    task_id: str
    problem: str
    answer: str  # reference answer, LaTeX without the \boxed{} wrapper
    source: str  # "generated" or the benchmark name
    meta: dict[str, str] = field(default_factory=dict)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces matched; None if none."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    start = starts[-1]
    depth = 1
    for pos in range(start, len(text)):
        char = text[pos]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:pos].strip()
    return None  # unbalanced: the box was never closed


def _rng(split: str, index: int) -> np.random.Generator:
    digest = hashlib.blake2b(f"resrl-math/{split}/{index}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _frac_latex(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def generated_task(split: str, index: int) -> MathTask:
    """Problem ``index`` of a generated split: the kind and the numbers come from a hash of (split, index)."""
    if split not in GENERATED_SPLITS:
        raise EnvError(f"generated split {split!r} is unknown", hint=f"use one of {list(GENERATED_SPLITS)}")
    if index < 0:
        raise EnvError(f"generated task index {index} must be >= 0")
    rng = _rng(split, index)
    kind = GENERATED_KINDS[int(rng.integers(len(GENERATED_KINDS)))]

    def num(low: int, high: int) -> int:
        return int(rng.integers(low, high + 1))

    if kind == "add":
        a, b = num(10, 9999), num(10, 9999)
        problem, answer = f"What is {a} + {b}?", str(a + b)
    elif kind == "sub":
        a, b = num(10, 9999), num(10, 9999)
        problem, answer = f"What is {a} - {b}?", str(a - b)
    elif kind == "mul":
        a, b = num(11, 99), num(11, 999)
        problem, answer = f"What is {a} \\times {b}?", str(a * b)
    elif kind == "linear":
        x, a, b = num(-20, 20), num(2, 12), num(-50, 50)
        c = a * x + b
        sign = "+" if b >= 0 else "-"
        problem, answer = f"Solve for $x$: ${a}x {sign} {abs(b)} = {c}$.", str(x)
    elif kind == "fraction":
        p, q, r, s = num(1, 9), num(2, 12), num(1, 9), num(2, 12)
        problem = f"Compute $\\frac{{{p}}}{{{q}}} + \\frac{{{r}}}{{{s}}}$ as a fraction in lowest terms."
        answer = _frac_latex(Fraction(p, q) + Fraction(r, s))
    elif kind == "remainder":
        a, m = num(100, 99999), num(3, 97)
        problem, answer = f"What is the remainder when {a} is divided by {m}?", str(a % m)
    else:  # quadratic with integer roots
        r1, r2 = num(-12, 12), num(-12, 12)
        b, c = -(r1 + r2), r1 * r2
        poly = (
            "x^2"
            + (f" {'+' if b >= 0 else '-'} {abs(b)}x" if b else "")
            + (f" {'+' if c >= 0 else '-'} {abs(c)}" if c else "")
        )
        problem, answer = f"Find the larger root of ${poly} = 0$.", str(max(r1, r2))
    return MathTask(f"gen-{split}-{index:05d}", problem, answer, "generated", {"kind": kind, "split": split})


def _strip_dollars(text: str) -> str:
    text = text.strip()
    while text.startswith("$") and text.endswith("$") and len(text) >= 2:
        text = text[1:-1].strip()
    return text


def _record_task(name: str, index: int, record: dict[str, object]) -> MathTask:
    """One benchmark record -> task, with the reference-answer field each SOURCE.md names."""
    task_id = f"{name}-{index}"
    meta: dict[str, str] = {}
    if name == "math500":
        problem, answer = str(record["problem"]), str(record["answer"])
        meta = {"subject": str(record.get("subject", "")), "level": str(record.get("level", ""))}
    elif name in ("aime2024", "aime2025", "amc2023"):
        problem, answer = str(record["problem"]), str(record["answer"])
        if name == "amc2023":
            value = float(str(answer))
            answer = str(int(value)) if value.is_integer() else str(value)
    elif name == "olympiadbench":
        problem = str(record["question"])
        final = record["final_answer"]
        answer = _strip_dollars(str(final[0] if isinstance(final, list) else final))
        meta = {"subfield": str(record.get("subfield", ""))}
    elif name == "gsm8k":
        problem = str(record["question"])
        answer = str(record["answer"]).rsplit("####", 1)[-1].strip().replace(",", "")
    elif name == "minerva":
        problem = str(record["problem"])
        boxed = last_boxed(str(record["solution"]))
        if boxed is None:
            raise EnvError(f"minerva record {index} has no \\boxed{{}} answer in its solution")
        answer = boxed
        meta = {"course": str(record.get("type", ""))}
    else:  # pragma: no cover - guarded by the callers
        raise EnvError(f"unknown benchmark {name!r}")
    return MathTask(task_id, problem, answer, name, meta)


@cache
def _benchmark_cached(name: str, path: str) -> tuple[MathTask, ...]:
    file = Path(path)
    if not file.is_file():
        raise EnvError(f"no benchmark file at {file}")
    with file.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return tuple(_record_task(name, i, r) for i, r in enumerate(records))


def benchmark_tasks(name: str, *, minerva_path: str | None = None) -> tuple[MathTask, ...]:
    """Every task of a benchmark, in file order."""
    if name not in BENCHMARKS:
        raise EnvError(f"benchmark {name!r} is unknown", hint=f"use one of {list(BENCHMARKS)}")
    if name == "minerva":
        if not minerva_path:
            raise EnvError(
                "Minerva Math is CC BY-NC-SA and not shipped with resrl-agent",
                hint="pass minerva_path=/path/to/minerva_math/test.jsonl in env.kwargs",
            )
        return _benchmark_cached(name, str(Path(minerva_path).expanduser()))
    return _benchmark_cached(name, str(DATA_DIR / name / "test.jsonl"))


def task_ids(
    task_set: str, *, split: str = "train", num_generated: int = 5000, minerva_path: str | None = None
) -> list[str]:
    if task_set == "generated":
        if split not in GENERATED_SPLITS:
            raise EnvError(f"generated split {split!r} is unknown", hint=f"use one of {list(GENERATED_SPLITS)}")
        width = max(5, math.ceil(math.log10(max(num_generated, 2))))
        return [f"gen-{split}-{i:0{width}d}" for i in range(num_generated)]
    return [t.task_id for t in benchmark_tasks(task_set, minerva_path=minerva_path)]


_ID_RE = re.compile(r"^(?:gen-(train|test)-(\d+)|([a-z0-9]+)-(\d+))$")


def load_task(task_id: str, *, minerva_path: str | None = None) -> MathTask:
    """The task behind any task id (generated or benchmark)."""
    match = _ID_RE.match(task_id)
    if match is None:
        raise EnvError(
            f"unknown task_id {task_id!r} for resrl/Math-v0", hint="ids look like 'gen-train-00042' or 'math500-17'"
        )
    if match.group(1):
        return generated_task(match.group(1), int(match.group(2)))
    name, index = match.group(3), int(match.group(4))
    tasks = benchmark_tasks(name, minerva_path=minerva_path)
    if index >= len(tasks):
        raise EnvError(f"task_id {task_id!r}: {name} has {len(tasks)} tasks (0..{len(tasks) - 1})")
    return tasks[index]
