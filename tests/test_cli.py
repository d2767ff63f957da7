"""The resrl-agent command, run in-process with typer's runner on the embedded default (tiny model, echo env)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resrl_agent.cli import app
from resrl_agent.types import read_episodes

ROOT = Path(__file__).parents[1]
runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [[], ["train"], ["eval"], ["rollout"], ["make-model"], ["export"], ["plot"], ["serve", "env"], ["serve", "tools"]],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_make_model_then_train_smoke_and_rollout(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["make-model", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "config.json").is_file()
    config = str(ROOT / "configs" / "echo_tiny.yaml")
    result = runner.invoke(app, ["train", config, f"run_dir={tmp_path / 'run'}", f"model.path={tiny_model_dir}"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "config.yaml").is_file()
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    iterations = [m for m in metrics if "rollout/episodes" in m]
    assert len(iterations) == 2 and all(m["rollout/episodes"] == 8 for m in iterations)
    assert any((tmp_path / "run" / "checkpoints").iterdir())
    out = tmp_path / "eps.jsonl"
    result = runner.invoke(
        app,
        [
            "rollout",
            config,
            f"model.path={tiny_model_dir}",
            "rollout.group_size=2",
            "--out",
            str(out),
            "--num-tasks",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    episodes = read_episodes(out)
    assert len(episodes) == 6 and len({e.group_id for e in episodes}) == 3

    # a training checkpoint -> a Hugging Face checkpoint with those weights; eval --checkpoint plays it
    import torch
    from transformers import AutoModelForCausalLM

    checkpoint = tmp_path / "run" / "checkpoints" / "iter_00002.pt"
    result = runner.invoke(app, ["export", str(checkpoint), str(tmp_path / "hf"), "--base", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    trained = torch.load(checkpoint, map_location="cpu", weights_only=False)["learner"]["model"]
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(exported[k], v) for k, v in trained.items())
    assert any(not torch.equal(base[k], v) for k, v in trained.items())  # training moved the weights
    options = ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "ev"), "--no-plot"]
    result = runner.invoke(app, ["eval", config, f"model.path={tiny_model_dir}", "eval.num_tasks=2", *options])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ev" / "policy" / "config.json").is_file() and (tmp_path / "ev" / "eval_report.json").is_file()
    torch.save({"learner": {}}, tmp_path / "empty.pt")
    result = runner.invoke(app, ["export", str(tmp_path / "empty.pt"), str(tmp_path / "x")])
    assert result.exit_code == 2 and "holds no model weights" in result.output


def test_config_errors_exit_2_with_the_key(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(ROOT / "configs" / "echo_tiny.yaml"), "trainer.lrr=1"])
    assert result.exit_code == 2
    assert "unknown config key 'trainer.lrr'" in result.output
    result = runner.invoke(app, ["rollout", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "not found" in result.output


def test_sft_then_train_prints_the_held_out_comparison(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`sft` (under its progress bar) writes sft.pt; `train` ends with untrained -> sft -> rl, each row's p-value over
    the row above (one-sided Fisher exact) recomputed here from the run's own eval episodes."""
    from resrl_agent.eval.metrics import fisher_greater

    config = str(ROOT / "configs" / "echo_tiny.yaml")
    common = [f"model.path={tiny_model_dir}", "trainer.sft_tasks=6", "trainer.sft_batch_rows=4"]
    result = runner.invoke(app, ["sft", config, f"run_dir={tmp_path / 'sft'}", *common])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sft" / "checkpoints" / "sft.pt").is_file()
    assert "sft: 2 steps, nll" in result.output  # 6 expert episodes x 1 turn... in rows of 4: 2 steps
    run = tmp_path / "train"
    options = ["trainer.sft_epochs=1", "trainer.iterations=1", "trainer.compare_eval=true", "eval.num_tasks=3"]
    result = runner.invoke(app, ["train", config, f"run_dir={run}", *common, *options, "eval.samples_per_task=2"])
    assert result.exit_code == 0, result.output
    assert "held-out success (3 tasks x 2 samples, same tasks and sampling)" in result.output
    assert "one-sided Fisher exact" in result.output
    table = [line for line in result.output.splitlines() if line.startswith("│")]  # the table's body rows
    rows = [line for line in table if line.strip("│ ").split(" ")[0] in ("untrained", "sft", "rl")]
    assert [line.strip("│ ").split(" ")[0] for line in rows] == ["untrained", "sft", "rl"]
    won = [sum(e.won for e in read_episodes(run / f"eval_{label}.jsonl")) for label in ("untrained", "sft", "rl")]
    assert [f"{w}/6" in line for w, line in zip(won, rows, strict=True)] == [True, True, True]
    assert rows[0].rstrip("│ ").endswith("-")  # the first row has nothing above it
    for k in (1, 2):
        assert rows[k].rstrip("│ ").endswith(f"{fisher_greater(won[k - 1], 6, won[k], 6):.3g}")


def test_serve_refuses_a_public_bind_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both servers, from the CLI: a non-loopback address without a token stops before anything binds."""
    from typer.testing import CliRunner

    from resrl_agent.cli import app

    for var in ("RESRL_ENV_SERVER_TOKEN", "RESRL_ENV_SERVER_TOKEN_FILE", "RESRL_TOOL_SERVER_TOKEN",
                "RESRL_TOOL_SERVER_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    for command in (["serve", "env", "--envs", "resrl/Echo-v0"], ["serve", "tools"]):
        result = CliRunner().invoke(app, [*command, "--host", "0.0.0.0", "--port", "1"])
        assert result.exit_code == 2, result.output
        assert "--insecure-no-auth-on-public-bind" in result.output
