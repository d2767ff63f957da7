"""One held-out set for every job: ``resrl-agent eval`` of a run's checkpoint on the run's config plays exactly the
episodes the run's own held-out comparison played, and a comma list of splits (ALFWorld's held-out games are in
two) is read as their union by every job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resrl_agent.cli import app
from resrl_agent.config import load_config
from resrl_agent.run.tasks import eval_tasks
from resrl_agent.types import read_episodes

ROOT = Path(__file__).parents[1]
SHORT = [
    "trainer.iterations=1",
    "trainer.sft_tasks=4",
    "trainer.sft_epochs=1",
    "trainer.deterministic=true",  # one request per engine call: the samples cannot depend on batch composition
    "rollout.tasks_per_iteration=2",
    "rollout.group_size=2",
    "rollout.max_turns=8",
    "env.kwargs.max_steps=8",
    "eval.num_tasks=5",
    "eval.samples_per_task=2",
]


def _played(path: Path) -> list[tuple[object, ...]]:
    return [
        (e.task_id, e.group_id, e.sample_idx, e.seed, e.won, e.total_return, [t.response_ids for t in e.turns])
        for e in read_episodes(path)
    ]


@pytest.mark.slow
def test_eval_of_a_runs_checkpoint_plays_the_runs_own_held_out_episodes(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = str(ROOT / "configs" / "babyai_tiny.yaml")
    common = [f"run_dir={run}", f"model.path={tiny_model_dir}", *SHORT]
    trained = CliRunner().invoke(app, ["train", config, *common])
    assert trained.exit_code == 0, trained.output
    rows = {r["policy"]: r for r in json.loads((run / "heldout.json").read_text())["rows"]}

    out = tmp_path / "eval"
    checkpoint = run / "checkpoints" / "iter_00001.pt"
    evaluated = CliRunner().invoke(app, ["eval", config, *common, "--checkpoint", str(checkpoint), "--out", str(out)])
    assert evaluated.exit_code == 0, evaluated.output

    mine, runs = _played(out / "eval_episodes.jsonl"), _played(run / "eval_rl.jsonl")
    assert len(mine) == 10 and all(str(t[0]).startswith("test-") for t in mine)  # env.eval_split: test
    assert mine == runs  # same tasks, groups, samples, seeds, every sampled token and outcome
    report = json.loads((out / "eval_report.json").read_text())
    assert report["avg_at_n"] == pytest.approx(rows["rl"]["success"])
    # the SFT checkpoint scores what the comparison's "sft" row says
    sft_out = tmp_path / "eval_sft"
    sft = run / "checkpoints" / "sft.pt"
    evaluated = CliRunner().invoke(app, ["eval", config, *common, "--checkpoint", str(sft), "--out", str(sft_out)])
    assert evaluated.exit_code == 0, evaluated.output
    assert _played(sft_out / "eval_episodes.jsonl") == _played(run / "eval_sft.jsonl")


def test_a_comma_list_of_splits_is_their_union_for_every_job() -> None:
    """configs/alfworld_tiny.yaml holds out ``valid_seen,valid_unseen``: the held-out games come from both, none
    from train (``resrl-agent eval`` used to fall back to train games here)."""
    config = load_config(ROOT / "configs" / "alfworld_tiny.yaml", ["eval.num_tasks=40"])
    ids = [t.task_id for t in eval_tasks(config, config.eval.num_tasks)]
    assert len(ids) == len(set(ids)) == 40  # all 20 + 20 held-out games, each once
    assert {str(i).rsplit("-", 2)[-2] for i in ids} == {"valid_seen", "valid_unseen"}
    assert sum("valid_seen" in str(i) for i in ids) == 20
