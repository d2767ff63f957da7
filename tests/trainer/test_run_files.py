"""Run files are safe: a run dir that holds a run is not overwritten unasked, nothing is written before the config
and the env are valid, evals and rollouts never overwrite each other's files, checkpoints load without running
code, and a crash (torn JSONL line, cut-off checkpoint) costs at most what was being written."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from resrl_agent.cli import app
from resrl_agent.config import load_config
from resrl_agent.errors import ConfigError, RecordError, TrainerError
from resrl_agent.trainer.checkpoint import (
    convert_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    loadable_checkpoints,
    save_checkpoint,
)
from resrl_agent.trainer.metrics import read_metrics
from resrl_agent.types import read_episodes, write_episodes

ROOT = Path(__file__).parents[2]
ECHO = str(ROOT / "configs" / "echo_tiny.yaml")


def _short(run: Path, model: Path, iterations: int = 1) -> list[str]:
    return [
        f"run_dir={run}",
        f"model.path={model}",
        f"trainer.iterations={iterations}",
        "rollout.tasks_per_iteration=2",
        "rollout.group_size=2",
        "rollout.max_new_tokens=4",
    ]


def _rl_steps(run: Path) -> list[int]:
    return [int(r["step"]) for r in read_metrics(run) if r.get("phase") == "rl"]


@pytest.mark.slow
def test_a_run_dir_that_holds_a_run_is_refused_without_resume_or_force(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["train", ECHO, *_short(run, tiny_model_dir)])
    assert first.exit_code == 0, first.output
    before = {
        p.name: p.read_bytes() for p in [run / "metrics.jsonl", run / "config.yaml", run / "checkpoints" / "latest"]
    }

    tree = sorted(p.relative_to(run) for p in run.rglob("*"))
    again = runner.invoke(app, ["train", ECHO, *_short(run, tiny_model_dir, 2)])
    assert again.exit_code == 2
    assert "already holds a run" in again.output and "--resume" in again.output and "--force" in again.output
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == tree  # no file added either (tb/, temp files)
    assert {
        p.name: p.read_bytes() for p in [run / "metrics.jsonl", run / "config.yaml", run / "checkpoints" / "latest"]
    } == before

    both = runner.invoke(app, ["train", ECHO, *_short(run, tiny_model_dir, 2), "--resume", "--force"])
    assert both.exit_code == 2 and "pass one of them" in both.output

    resumed = runner.invoke(app, ["train", ECHO, *_short(run, tiny_model_dir, 2), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert _rl_steps(run) == [0, 1]  # continued: no step twice (was 0, 0, 1)

    forced = runner.invoke(app, ["train", ECHO, *_short(run, tiny_model_dir, 1), "--force"])
    assert forced.exit_code == 0, forced.output
    assert _rl_steps(run) == [0]  # started over
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["iter_00001.pt"]


def test_a_bad_env_id_or_kwarg_fails_at_load_and_writes_nothing(tmp_path: Path) -> None:
    run = tmp_path / "never"
    with pytest.raises(
        ConfigError, match=r"env\.id: no env 'resrl/BabyAi-v0' is registered; did you mean 'resrl/BabyAI-v0'"
    ):
        load_config(None, ["env.id=resrl/BabyAi-v0"])
    with pytest.raises(ConfigError, match=r"env\.kwargs\.levle: BabyAIEnv .* takes no 'levle'; did you mean 'level'"):
        load_config(None, ["env.id=resrl/BabyAI-v0", "env.kwargs.levle=GoToObj"])
    result = CliRunner().invoke(app, ["train", ECHO, f"run_dir={run}", "env.kwargs.max_step=3"])
    assert result.exit_code == 2 and "did you mean 'max_steps'" in result.output
    assert not run.exists()  # no config.yaml, no run dir: nothing was written


@pytest.mark.slow
def test_evals_of_two_checkpoints_and_rollouts_never_overwrite(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(app, ["train", ECHO, *_short(run, tiny_model_dir, 2), "trainer.save_every=1"])
    assert trained.exit_code == 0, trained.output
    evals = ["eval.num_tasks=2", "rollout.max_new_tokens=4", "--no-plot"]
    for name in ("iter_00001", "iter_00002"):
        done = runner.invoke(
            app,
            [
                "eval",
                ECHO,
                *_short(run, tiny_model_dir),
                *evals,
                "--checkpoint",
                str(run / "checkpoints" / f"{name}.pt"),
            ],
        )
        assert done.exit_code == 0, done.output
    assert {p.name for p in (run / "eval").iterdir()} == {"iter_00001", "iter_00002"}
    assert all((run / "eval" / n / "eval_report.json").is_file() for n in ("iter_00001", "iter_00002"))

    out = tmp_path / "mine.jsonl"
    out.write_text("my notes\n")
    refused = runner.invoke(app, ["rollout", ECHO, *_short(run, tiny_model_dir), "--out", str(out)])
    assert refused.exit_code == 2 and "exists; pass --force" in refused.output
    assert out.read_text() == "my notes\n"
    forced = runner.invoke(app, ["rollout", ECHO, *_short(run, tiny_model_dir), "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(read_episodes(out)) == 4


class _Payload:
    """Unpickling this runs a shell command (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"learner": {"model": {}}, "x": _Payload(marker)}, evil)
    with pytest.raises(TrainerError, match="holds more than tensors and plain values, so it is not loaded"):
        load_checkpoint(evil)
    result = CliRunner().invoke(app, ["export", str(evil), str(tmp_path / "out")])
    assert result.exit_code == 2 and "not loaded" in result.output
    assert not marker.exists()


def test_an_old_checkpoint_is_refused_with_the_converter_named_and_converts(tmp_path: Path) -> None:
    old = tmp_path / "old.pt"
    state = np.random.get_state()
    torch.save({"learner": {"model": {"w": torch.ones(2)}}, "iteration": 1, "rng": {"numpy": state}}, old)
    with pytest.raises(TrainerError, match="resrl-agent convert-checkpoint"):
        load_checkpoint(old)
    convert_checkpoint(old)
    payload = load_checkpoint(old)
    assert payload["iteration"] == 1 and torch.equal(payload["learner"]["model"]["w"], torch.ones(2))
    assert payload["rng"]["numpy"][1] == [int(k) for k in state[1]]
    assert old.with_suffix(".pt.bak").is_file()


def test_a_torn_last_line_is_skipped_and_any_other_bad_line_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, episode_factory: Any
) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"phase": "rl", "step": 0}\n{"phase": "rl", "step": 1}\n{"phase": "rl", "st')
    with caplog.at_level(logging.WARNING):
        assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1]
    assert f"{metrics}:3: the last line is incomplete" in caplog.text
    metrics.write_text('{"phase": "rl", "step": 0}\nnot json\n{"phase": "rl", "step": 2}\n')
    with pytest.raises(RecordError, match=rf"{metrics}:2: not valid JSON"):
        read_metrics(metrics)
    metrics.write_text('{"phase": "rl", "step": 0}\n[1, 2]\n')
    with pytest.raises(RecordError, match=rf"{metrics}:2: a list, not a JSON object"):
        read_metrics(metrics)

    episodes = tmp_path / "episodes.jsonl"
    write_episodes(episodes, episode_factory(num_groups=1, group_size=2))
    whole = episodes.read_bytes()
    episodes.write_bytes(whole + whole[: len(whole) // 3])  # a third episode cut off mid-append
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(read_episodes(episodes)) == 2
    assert f"{episodes}:3: the last line is incomplete" in caplog.text


def test_resume_falls_back_past_a_cut_off_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = save_checkpoint(tmp_path, "iter_00001", {"learner": {}, "iteration": 1})
    bad = save_checkpoint(tmp_path, "iter_00002", {"learner": {}, "iteration": 2})
    bad.write_bytes(bad.read_bytes()[:100])  # a crash mid-write of a (non-atomic) copy
    os.utime(good, ns=(1, 1))
    assert latest_checkpoint(tmp_path) == bad and loadable_checkpoints(tmp_path) == [bad, good]
    with pytest.raises(TrainerError, match=rf"checkpoint {bad} cannot be read .*truncated"):
        load_checkpoint(bad)
    empty = tmp_path / "checkpoints" / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(TrainerError, match=rf"checkpoint {empty} is empty"):
        load_checkpoint(empty)
    for leftover in (tmp_path / "checkpoints").iterdir():
        assert not leftover.name.startswith(".")  # no temp file survives a write
