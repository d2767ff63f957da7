"""Eval reports from hand-built episodes (numbers worked by hand) and the eval job end to end on Math."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from resrl_agent.eval.report import build_report, report_rows, write_report
from resrl_agent.types import Episode, Turn


def _episode(
    env_id: str, task: str, sample: int, won: bool, ids: list[int], info: dict[str, Any] | None = None
) -> Episode:
    turn = Turn([1, 2], ids, [-0.5] * len(ids), reward=1.0 if won else 0.0, terminated=True, info=info or {})
    return Episode(task, f"it-1/{task}", sample, env_id, [turn], won=won)


def test_pass_at_k_avg_and_diversity_by_hand(tmp_path: Path) -> None:
    # task a: 2 of 4 correct; task b: 0 of 4; task c: 4 of 4
    flags = {"a": [1, 0, 1, 0], "b": [0, 0, 0, 0], "c": [1, 1, 1, 1]}
    episodes = [
        _episode("resrl/Math-v0", f"gen-train-0000{i}", s, bool(f), [10 + s, 20, 30], {"source": "generated"})
        for i, (_, fl) in enumerate(flags.items())
        for s, f in enumerate(fl)
    ]
    report = build_report(episodes)
    assert (report.num_tasks, report.samples_per_task, report.num_episodes) == (3, 4, 12)
    assert report.avg_at_n == pytest.approx(6 / 12)
    # Pass@1 = mean c/n = (0.5 + 0 + 1) / 3; Pass@2 for a: 1 - C(2,2)/C(4,2) = 5/6; Pass@4 for a: 1
    assert report.pass_at_k[1] == pytest.approx(0.5)
    assert report.pass_at_k[2] == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert report.pass_at_k[4] == pytest.approx(2 / 3)
    assert sorted(report.pass_at_k) == [1, 2, 3, 4]
    # each sample is [10+s, 20, 30]: bigrams (10+s, 20) differ, (20, 30) repeats -> 5 distinct of 8 per task
    assert report.distinct_2 == pytest.approx(5 / 8)
    # every pair differs in one of 3 tokens -> similarity 2/3
    assert report.edit_similarity == pytest.approx(2 / 3)
    assert report.breakdown["generated"]["success"] == pytest.approx(0.5)
    assert report.env_metrics == {"math/avg@4/generated": pytest.approx(0.5)}
    paths = write_report(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["pass_at_k"]["2"] == pytest.approx(report.pass_at_k[2]) and data["samples_per_task"] == 4
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = [name for name, _ in report_rows(report)]
    assert names[:5] == ["env", "tasks x samples", "Avg@4", "Pass@1", "Pass@2"]


def test_env_breakdowns() -> None:
    alf = [
        _episode(
            "resrl/ALFWorld-v0", "t1", 0, True, [5], {"task_type": "pick_and_place", "goal_condition_success": 1.0}
        ),
        _episode("resrl/ALFWorld-v0", "t2", 0, False, [5], {"task_type": "look_at_obj", "goal_condition_success": 0.5}),
    ]
    report = build_report(alf)
    assert report.env_metrics["alfworld/success/pick_and_place"] == 1.0
    assert report.env_metrics["alfworld/success/look_at_obj"] == 0.0
    assert report.env_metrics["alfworld/goal_condition"] == pytest.approx(0.75)
    assert math.isnan(report.edit_similarity) and report.to_dict()["edit_similarity"] is None
    shop = [
        _episode("resrl/WebShop-v0", "w1", 0, False, [5], {"score": 0.5}),
        _episode("resrl/WebShop-v0", "w1", 1, True, [6], {"score": 1.0}),
    ]
    assert build_report(shop).env_metrics == {"webshop/score": 0.75, "webshop/success": 0.5}
    calls = [_episode("resrl/FunctionCalling-v0", "f", s, s == 0, [5]) for s in range(4)]
    assert build_report(calls).env_metrics == {"bfcl/multi_turn_accuracy": 0.25}


def test_eval_job_on_math(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    from resrl_agent.config import load_config
    from resrl_agent.jobs import eval_job

    torch.set_num_threads(1)
    cfg = load_config(
        None,
        [
            "env.id=resrl/Math-v0",
            "env.kwargs={task_set: gsm8k}",
            f"model.path={tiny_model_dir}",
            "rollout.max_turns=1",
            "rollout.max_new_tokens=8",
            "rollout.max_context_tokens=512",
            "eval.num_tasks=3",
            "eval.samples_per_task=4",
        ],
    )
    result = eval_job(cfg, out_dir=tmp_path)
    report = result.report
    assert (report.num_tasks, report.samples_per_task) == (3, 4)
    assert len({e.task_id for e in result.episodes}) == 3 and all(
        e.task_id.startswith("gsm8k-") for e in result.episodes
    )
    assert all(len(e.turns) == 1 for e in result.episodes)
    assert report.breakdown["gsm8k"]["tasks"] == 3.0
    assert {p.name for p in tmp_path.iterdir()} == {"eval_episodes.jsonl", "eval_report.json", "pass_at_k.png"}
