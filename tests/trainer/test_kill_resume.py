"""`resrl-agent train` killed with SIGKILL at random points (mid-iteration, mid-checkpoint-write), several times,
then `--resume`: the run always continues and loses at most the iteration in progress."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resrl_agent.trainer.checkpoint import load_checkpoint, loadable_checkpoints
from resrl_agent.trainer.metrics import read_metrics

ROOT = Path(__file__).parents[2]
ITERATIONS = 8


def _rl_steps(run: Path) -> list[int]:
    if not (run / "metrics.jsonl").is_file():
        return []
    return [int(r["step"]) for r in read_metrics(run) if r.get("phase") == "rl"]


def _checkpointed(run: Path) -> int:
    """The iteration of the newest checkpoint that loads (0: none)."""
    for file in loadable_checkpoints(run):
        try:
            return int(load_checkpoint(file)["iteration"])
        except Exception:
            continue
    return 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_always_continues(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cli = Path(sys.executable).with_name("resrl-agent")
    config = str(ROOT / "configs" / "echo_tiny.yaml")
    args = [str(cli), "train", config, f"run_dir={run}", f"model.path={tiny_model_dir}",
            f"trainer.iterations={ITERATIONS}", "trainer.save_every=1", "rollout.max_new_tokens=4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(20261203)
    kills = 0
    for round_ in range(4):
        target = len(_rl_steps(run)) + 1  # let the run log one more iteration, then kill it soon after
        proc = subprocess.Popen([*args, *(["--resume"] if round_ else [])], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 240
        while len(_rl_steps(run)) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # the checkpoint is written right after the metrics line: often mid-write
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        logged, saved = len(_rl_steps(run)), _checkpointed(run)
        assert logged - saved <= 1, (round_, logged, saved)  # at most the iteration in progress is lost
    assert kills >= 2

    final = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
    assert _rl_steps(run) == list(range(ITERATIONS))  # every iteration once, in order, none lost or repeated
    assert _checkpointed(run) == ITERATIONS
    # a kill mid-write leaves a temp file (never a torn checkpoint); the next save removes it
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
