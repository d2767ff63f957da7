"""resrl/Math-v0: generated tasks, shipped benchmarks, boxed-answer parsing, math-verify checking."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import EnvError, check_info
from envs.math.actions import parse_action
from envs.math.env import MathEnv
from envs.math.prompts import corpus_texts
from envs.math.tasks import BENCHMARKS, DATA_DIR, benchmark_tasks, generated_task, last_boxed, load_task, task_ids


def test_registered_and_check_env() -> None:
    assert "resrl/Math-v0" in envs.env_ids()
    env = gym.make("resrl/Math-v0")
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize(
    ("text", "action", "valid"),
    [
        ("so the answer is \\boxed{42}.", "42", True),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", True),
        ("nested \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("\\fbox{7}", "7", True),
        ("the answer is 42", None, False),
        ("\\boxed{}", None, False),
        ("\\boxed{12", None, False),
    ],
)
def test_parse_action(text: str, action: str | None, valid: bool) -> None:
    parsed = parse_action(text)
    assert parsed.action == action and parsed.format_valid is valid
    if not valid:
        assert "\\boxed{}" in parsed.feedback


def test_generated_tasks_are_deterministic_and_correct() -> None:
    # hand-checked problems of the train split
    first = [generated_task("train", i) for i in range(200)]
    assert first == [generated_task("train", i) for i in range(200)]
    assert {t.meta["kind"] for t in first} == {"add", "sub", "mul", "linear", "fraction", "remainder", "quadratic"}
    assert generated_task("train", 0) != generated_task("test", 0)
    for task in first:
        if task.meta["kind"] == "add":
            a, b = (int(x) for x in task.problem.removeprefix("What is ").removesuffix("?").split(" + "))
            assert int(task.answer) == a + b
        if task.meta["kind"] == "remainder":
            words = task.problem.split()
            assert int(task.answer) == int(words[5]) % int(words[9].rstrip("?"))
    assert task_ids("generated", split="test", num_generated=3) == [
        "gen-test-00000",
        "gen-test-00001",
        "gen-test-00002",
    ]
    with pytest.raises(EnvError, match="split"):
        generated_task("dev", 1)


def test_the_expert_answer_wins_and_a_wrong_one_loses() -> None:
    env = MathEnv(num_generated=50)
    for index in range(30):
        task = generated_task("train", index)
        obs, info = env.reset(options={"task_id": task.task_id})
        check_info(info)
        assert obs == task.problem and info["expert_action"] == task.answer
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        check_info(info)
        assert (reward, terminated, truncated, info["won"]) == (1.0, True, False, True)
        env.reset(options={"task_id": task.task_id})
        assert env.step("123456789")[1] == 0.0
    with pytest.raises(EnvError, match="finished"):
        env.step("1")


@pytest.mark.parametrize(
    ("task_id", "reference", "equivalent"),
    [
        ("math500-0", "\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
        ("aime2024-0", "204", "204"),
        ("aime2025-0", "70", "70"),
        ("amc2023-0", "27", "27.0"),
        ("gsm8k-0", "18", "18"),
        ("olympiadbench-1", "\\frac{1}{2 n+2}", "\\frac{1}{2(n+1)}"),
    ],
)
def test_benchmarks_ship_and_check(task_id: str, reference: str, equivalent: str) -> None:
    task = load_task(task_id)
    assert task.answer == reference
    env = MathEnv(task_set=task.source)
    env.reset(options={"task_id": task_id})
    assert env.step(equivalent)[1] == 1.0
    env.reset(options={"task_id": task_id})
    assert env.step("-1")[1] == 0.0


def test_benchmark_sizes_licences_and_minerva_by_path(tmp_path: Path) -> None:
    sizes = {name: len(benchmark_tasks(name)) for name in BENCHMARKS if name != "minerva"}
    assert sizes == {"math500": 500, "aime2024": 30, "aime2025": 30, "amc2023": 40, "olympiadbench": 675, "gsm8k": 1319}
    for name in sizes:
        folder = DATA_DIR / name
        assert (folder / "SOURCE.md").is_file() and any(p.name.startswith("LICENSE") for p in folder.iterdir())
    assert not (DATA_DIR / "minerva_math").exists() and not (DATA_DIR / "minerva").exists()
    with pytest.raises(EnvError, match="not shipped"):
        MathEnv(task_set="minerva")
    record = {"problem": "Find $2+2$ in m.", "solution": "Thus \\boxed{4} m.", "type": "t", "idx": 0}
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    env = MathEnv(task_set="minerva", minerva_path=str(path))
    assert env.task_ids() == ["minerva-0"]
    env.reset(options={"task_id": "minerva-0"})
    assert env.step("4")[1] == 1.0


def test_unknown_ids_and_corpus() -> None:
    with pytest.raises(EnvError, match="unknown task_id"):
        load_task("what")
    with pytest.raises(EnvError, match="has 30 tasks"):
        load_task("aime2024-30")
    texts = corpus_texts()
    assert len(texts) > 200 and any("\\boxed{" in t for t in texts)
    assert last_boxed("a \\boxed{x^{2}} b") == "x^{2}"
