"""The single-process trainer on Echo: deterministic resume reproduces the uninterrupted run; checkpoints; plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from resrl_agent.config import load_config
from resrl_agent.trainer.checkpoint import latest_checkpoint, load_checkpoint
from resrl_agent.trainer.loop import Trainer
from resrl_agent.trainer.metrics import plot_run, read_metrics

KEYS = ("loss/total", "loss/pg_loss", "rollout/tokens", "rollout/entropy", "optim/grad_norm", "adv/token_mean")


def _config(run_dir: Path, iterations: int) -> Any:
    return load_config(
        "configs/echo_tiny.yaml",
        [
            f"run_dir={run_dir}",
            f"trainer.iterations={iterations}",
            "trainer.deterministic=true",
            "trainer.save_every=1",
            "trainer.lr=1e-3",
            "trainer.warmup_steps=2",
            "trainer.mini_batches=2",
            "algo.advantage=w_reinforce",  # every failed sample has A = -1: a real gradient without any win
            "rollout.max_new_tokens=8",
            "rollout.max_turns=2",
            "rollout.tasks_per_iteration=2",
            "rollout.group_size=2",
        ],
    )


def _rl(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run_dir) if r["phase"] == "rl"]


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    torch.set_num_threads(1)
    straight = tmp_path / "straight"
    Trainer(_config(straight, 3)).run()
    resumed = tmp_path / "resumed"
    Trainer(_config(resumed, 1)).run()
    checkpoint = latest_checkpoint(resumed)
    assert checkpoint is not None and checkpoint.name == "iter_00001.pt"
    payload = load_checkpoint(checkpoint)
    assert payload["iteration"] == 1 and {"model", "optimizer", "scheduler", "generator"} <= set(payload["learner"])
    assert {"python", "numpy", "torch"} <= set(payload["rng"]) and payload["config"]["trainer"]["iterations"] == 1
    Trainer(_config(resumed, 3)).run(resume=True)
    a, b = _rl(straight), _rl(resumed)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2]
    for ra, rb in zip(a, b, strict=True):
        for key in KEYS:
            assert ra[key] == rb[key], (ra["step"], key, ra[key], rb[key])
    assert a[0]["loss/total"] != a[2]["loss/total"]  # the policy moved
    final_a = load_checkpoint(straight / "checkpoints" / "iter_00003.pt")["learner"]["model"]
    final_b = load_checkpoint(resumed / "checkpoints" / "iter_00003.pt")["learner"]["model"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    pngs = plot_run(straight)
    assert {p.name for p in pngs} >= {"rewards.png", "loss.png"} and all(p.stat().st_size > 1000 for p in pngs)


def test_sft_steps_are_reported_as_they_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The local trainer announces the SFT step count after collection, then reports every step live."""
    config = load_config(
        "configs/echo_tiny.yaml",
        [
            f"run_dir={tmp_path}",
            "trainer.iterations=0",
            "trainer.compare_eval=false",
            "trainer.sft_epochs=2",
            "trainer.sft_tasks=6",
            "trainer.sft_batch_rows=4",
        ],
    )
    seen: list[tuple[str, dict[str, float]]] = []
    trainer = Trainer(config, progress=lambda phase, metrics: seen.append((phase, dict(metrics))))
    sizes: list[int] = []
    original = trainer.learner.sft_step

    def step(*args: Any, **kwargs: Any) -> dict[str, float]:
        sizes.append(len([p for p, _ in seen if p == "sft"]))  # what had been reported when this step started
        return original(*args, **kwargs)

    trainer.learner.sft_step = step  # type: ignore[method-assign]
    history = trainer.run_sft()
    sft = [m for phase, m in seen if phase == "sft"]
    assert sft[0]["step"] == 0 and sft[0]["sft/total_steps"] == len(history) == 4 and sft[0]["sft/expert_episodes"] == 6
    assert [m["step"] for m in sft[1:]] == [1, 2, 3, 4]
    assert sizes == [1, 2, 3, 4]  # step k ran after steps 0..k-1 were reported: live, not at the end
    assert [r["step"] for r in read_metrics(tmp_path) if r["phase"] == "sft"] == [0, 1, 2, 3, 4]


def test_dagger_round_relabels_the_policys_turns_and_continues_the_sft_steps(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """After the SFT epochs, a DAgger round: the policy plays train tasks (every turn records the expert's action at
    its state), SFT runs on the relabelled turns plus replayed expert turns, and the steps number on."""
    from resrl_agent.trainer.sft import sft_step_count
    from resrl_agent.types import read_episodes

    overrides = [
        f"run_dir={tmp_path}",
        "trainer.iterations=0",
        "trainer.compare_eval=false",
        "rollout.context_mode=window",
        "trainer.sft_epochs=1",
        "trainer.sft_tasks=4",
        "trainer.sft_batch_rows=2",
        "trainer.dagger_rounds=1",
        "trainer.dagger_tasks=3",
        "trainer.dagger_replay=1.0",
    ]
    trainer = Trainer(load_config("configs/echo_tiny.yaml", overrides))
    history = trainer.run_sft()
    played = read_episodes(tmp_path / "dagger_0.jsonl")
    assert len(played) == 3 and {e.context_mode for e in played} == {"window"}
    words = {"echo-0": "apple", "echo-1": "river", "echo-2": "lamp", "echo-3": "stone"}
    # the rollout loop recorded the expert's action at each state the policy acted on: the task's word
    assert all(
        t.expert_action == words.get(e.task_id, t.expert_action) and t.expert_action for e in played for t in e.turns
    )
    turns = sum(len(e.turns) for e in played)
    rows = read_metrics(tmp_path)
    (dagger,) = [r for r in rows if r["phase"] == "dagger/0"]
    assert dagger["dagger/relabelled_turns"] == turns
    assert dagger["dagger/replay_turns"] == min(turns, 4)  # 4 expert episodes of one turn: as many as asked, or all
    expert_steps = sft_step_count(read_episodes(tmp_path / "sft_episodes.jsonl"), "window", epochs=1, batch_rows=2)
    round_steps = -(-int(turns + dagger["dagger/replay_turns"]) // 2)
    assert len(history) == expert_steps + round_steps == dagger["sft/total_steps"]
    sft_rows = [r for r in rows if r["phase"] == "sft"]
    assert [r["step"] for r in sft_rows] == list(range(len(history) + 1))  # 0 (the announcement), then every step
    assert [r.get("dagger/round") for r in sft_rows[1:]] == [None] * expert_steps + [0.0] * round_steps
    assert trainer.state.sft_done
    trainer.close()


def test_dagger_round_without_expert_actions_says_so(tmp_path: Path, tiny_model_dir: Path) -> None:
    import dataclasses

    import pytest

    from resrl_agent.errors import TrainerError

    overrides = [f"run_dir={tmp_path}", "rollout.context_mode=window", "trainer.dagger_tasks=2"]
    trainer = Trainer(load_config("configs/echo_tiny.yaml", overrides))
    original = trainer.rollout

    def no_expert(*args: Any, **kwargs: Any) -> Any:  # an env without an expert: no turn records one
        played = original(*args, **kwargs)
        return [
            dataclasses.replace(e, turns=[dataclasses.replace(t, expert_action=None) for t in e.turns]) for e in played
        ]

    trainer.rollout = no_expert  # type: ignore[method-assign]
    with pytest.raises(TrainerError, match=r"DAgger round 0: none of the policy's \d+ turns .* trainer.dagger_rounds"):
        trainer.run_dagger_round(0, [], first_step=1)
    trainer.close()


def test_dagger_needs_window_mode() -> None:
    import pytest
    from pydantic import ValidationError

    from resrl_agent.errors import ConfigError

    with pytest.raises((ConfigError, ValidationError), match="rollout.context_mode: window"):
        load_config("configs/echo_tiny.yaml", ["trainer.dagger_rounds=1"])


def test_rollouts_report_their_episodes_to_the_display_not_the_metrics(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Each finished episode of a rollout reaches the progress callback (phase "episodes"); the display draws it as
    a bar; metrics.jsonl holds no such record."""
    import io

    from rich.console import Console

    from resrl_agent.trainer.progress import progress_display

    config = load_config(
        "configs/echo_tiny.yaml",
        [f"run_dir={tmp_path}", "eval.num_tasks=3", "eval.samples_per_task=2", "trainer.compare_eval=false"],
    )
    seen: list[tuple[str, dict[str, float]]] = []
    trainer = Trainer(config, progress=lambda phase, metrics: seen.append((phase, dict(metrics))))
    result = trainer.evaluate("check")
    trainer.close()
    reports = [m for phase, m in seen if phase == "episodes"]
    assert [m["done"] for m in reports] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] and result.total == 6
    assert all(m["total"] == 6.0 and m["evaluation"] == 1.0 for m in reports)
    assert {r["phase"] for r in read_metrics(tmp_path)} == {"eval/check"}
    out = io.StringIO()
    with progress_display(config, Console(file=out, width=100, force_terminal=False)) as on_metrics:
        for phase, metrics in seen:
            on_metrics(phase, metrics)
    assert "eval" in out.getvalue() and "6/6" in out.getvalue()
