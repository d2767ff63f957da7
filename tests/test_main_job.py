"""The README's main job (configs/babyai_tiny.yaml), shortened: 2 RL iterations on a few layouts.

It asserts what the job produces (the held-out table, heldout.json with its p-values, the PNG, the checkpoints), not
its success numbers: those are measured in docs/training.md at full length.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resrl_agent.cli import app
from resrl_agent.eval.metrics import fisher_greater, wilson_interval
from resrl_agent.types import read_episodes

ROOT = Path(__file__).parents[1]
SHORT = [
    "trainer.iterations=2",
    "trainer.sft_tasks=6",
    "rollout.tasks_per_iteration=2",
    "rollout.group_size=4",
    "rollout.max_turns=6",
    "env.kwargs.max_steps=6",
    "eval.num_tasks=6",
]


@pytest.mark.slow
def test_main_job_short(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = str(ROOT / "configs" / "babyai_tiny.yaml")
    result = CliRunner().invoke(app, ["train", config, f"run_dir={run}", f"model.path={tiny_model_dir}", *SHORT])
    assert result.exit_code == 0, result.output
    assert "held-out success (6 tasks, same tasks and sampling)" in result.output
    heldout = json.loads((run / "heldout.json").read_text())
    assert heldout["env"] == "resrl/BabyAI-v0" and heldout["eval_split"] == "test"
    rows = heldout["rows"]
    assert [r["policy"] for r in rows] == ["untrained", "sft", "rl"]
    for k, row in enumerate(rows):
        episodes = read_episodes(run / f"eval_{row['policy']}.jsonl")
        assert row["total"] == len(episodes) == 6
        assert row["won"] == sum(e.won for e in episodes)
        assert all(e.task_id is not None and e.task_id.startswith("test-") for e in episodes)  # held-out layouts
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(row["won"], 6))
        if k == 0:
            assert row["p_over_previous"] is None
        else:
            before = rows[k - 1]
            assert row["p_over_previous"] == pytest.approx(fisher_greater(before["won"], 6, row["won"], 6))
    # the three policies played the very same layouts with the same reset seeds
    plays = [[(e.task_id, e.seed) for e in read_episodes(run / f"eval_{r['policy']}.jsonl")] for r in rows]
    assert plays[0] == plays[1] == plays[2]
    png = run / "plots" / "heldout_success.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "checkpoints" / "sft.pt").is_file() and (run / "checkpoints" / "iter_00002.pt").is_file()
    rl = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"rl"' in line]
    assert [r["step"] for r in rl if r.get("phase") == "rl"] == [0, 1]
