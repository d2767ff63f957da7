"""Multi-host on one machine: four network namespaces as hosts (Ray head, Ray worker, two env servers).

The Ray head runs with no CPUs, so the learner, inference and rollout worker actors all land on the worker host;
the rollout workers open their env sessions on the two env-server hosts (``env.servers``). A short training runs
with the Ray driver; mid-run, one env-server host's cable is pulled (its switch port goes down: packets dropped,
connections hang). The run must still complete, every iteration's groups whole (all G sample indices, each once).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from netns import Fabric, namespaces_available

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ITERATIONS = 4
GROUP_SIZE = 4


@pytest.fixture()
def fabric() -> Any:
    reason = namespaces_available()
    if reason is not None:
        pytest.skip(f"multi-host test skipped: {reason}")
    fabric = Fabric()
    try:
        yield fabric
    finally:
        fabric.close()
        shutil.rmtree(fabric.scratch, ignore_errors=True)


def _wait_healthy(url: str, proc: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{what} did not answer {url}/healthz in {timeout:.0f} s"
        time.sleep(0.2)


def _wait_port(host: str, port: int, proc: Any, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{_tail(log)}"
        assert time.monotonic() < deadline, f"{host}:{port} not open in {timeout:.0f} s:\n{_tail(log)}"
        time.sleep(0.2)


TOKEN = "multihost-test-token"  # the env servers listen on namespace addresses, not loopback: they need one


def _steps(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=2, headers={"Authorization": f"Bearer {TOKEN}"}).text
    return int(sum(float(v) for v in re.findall(r"^resrl_env_steps_total\{[^}]*\} (\S+)$", text, re.M)))


def _netns_inode(fabric: Fabric, host: str) -> str:
    return f"net:[{os.stat(f'/run/netns/{fabric.ns(host)}').st_ino}]"


def test_training_survives_an_env_server_host_cut_off_mid_run(
    fabric: Fabric, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Ray's socket paths must stay under 108 bytes: its temp dirs go in a short scratch dir, not tmp_path
    fabric.scratch = tempfile.mkdtemp(prefix="rr", dir="/tmp")
    head, worker = fabric.add_host("head"), fabric.add_host("worker")
    env1, env2 = fabric.add_host("env1"), fabric.add_host("env2")
    fabric.attach_root()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",  # a closed test network; real clusters keep Ray's token auth
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "RESRL_ENV_SERVER_TOKEN": TOKEN,  # the servers' token, and the rollout workers' (env.remote.token_env)
    }
    env.pop("RAY_ADDRESS", None)
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(host: str, name: str, command: list[str]) -> Any:
        out = (logs / f"{name}.log").open("wb")
        return fabric.popen(host, command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    servers = []
    for host, address in (("env1", env1), ("env2", env2)):
        command = [sys.executable, "-m", "servers.env_server", "--envs", "resrl/Echo-v0", "--host", address]
        command += ["--port", "8000", "--workers", "1", "--isolation", "thread", "--test-knobs"]
        servers.append((f"http://{address}:8000", start(host, host, command)))
    ray_cli = str(VENV_BIN / "ray")
    common = ["--block", "--disable-usage-stats", "--object-store-memory=100000000"]
    ray_head = start(
        "head",
        "ray-head",
        [
            *(ray_cli, "start", "--head", f"--node-ip-address={head}", "--port=6379", "--num-cpus=0"),
            *("--include-dashboard=false", f"--temp-dir={fabric.scratch}/h", *common),
        ],
    )
    _wait_port(head, 6379, ray_head, logs / "ray-head.log")
    ray_worker = start(
        "worker",
        "ray-worker",
        [
            *(ray_cli, "start", f"--address={head}:6379", f"--node-ip-address={worker}", "--num-cpus=2"),
            *(f"--temp-dir={fabric.scratch}/w", *common),
        ],
    )
    for url, proc in servers:
        _wait_healthy(url, proc, f"env server {url}")

    record = tmp_path / "record.jsonl"
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        "env.kwargs={max_steps: 3, step_sleep_s: 0.3}",
        f"env.servers=[{servers[0][0]}, {servers[1][0]}]",
        "env.remote.request_timeout_s=3",
        "env.remote.retries=1",
        "env.remote.health_interval_s=0.5",
        "env.remote.probe_timeout_s=1",
        "trainer.driver=ray",
        f"trainer.iterations={ITERATIONS}",
        "trainer.rollout_workers=2",
        f"rollout.group_size={GROUP_SIZE}",
        "rollout.tasks_per_iteration=2",
        "rollout.max_new_tokens=8",
    ]
    driver = start(
        "head",
        "driver",
        [
            *(sys.executable, str(Path(__file__).with_name("netns_driver.py")), f"{head}:6379", head, str(record)),
            *("configs/echo_tiny.yaml", *overrides),
        ],
    )

    # pull env2's cable while it is stepping the second iteration's episodes
    cut_at: int | None = None
    baseline: int | None = None
    deadline = time.monotonic() + 180
    while driver.poll() is None and time.monotonic() < deadline:
        for proc, name in ((ray_head, "ray-head"), (ray_worker, "ray-worker")):
            assert proc.poll() is None, f"{name} exited:\n{_tail(logs / f'{name}.log')}"
        if cut_at is None and _iterations_done(record) >= 1:
            steps = _steps(servers[1][0])
            baseline = steps if baseline is None else baseline
            if steps >= baseline + 2:  # the next iteration's episodes are stepping there
                time.sleep(0.1)
                fabric.cut("env2")
                cut_at = _iterations_done(record)
        time.sleep(0.05)
    if driver.poll() is None:
        pytest.fail(f"the run did not finish in 180 s; logs in {logs}: {_tail(logs / 'driver.log')}")
    assert driver.returncode == 0, f"driver failed:\n{_tail(logs / 'driver.log')}"
    assert cut_at is not None and cut_at < ITERATIONS, "env2 was never cut off during the run"

    lines = [json.loads(line) for line in record.read_text().splitlines()]
    placement = next(line for line in lines if "worker_netns" in line)
    assert placement["driver_netns"] == _netns_inode(fabric, "head")
    assert set(placement["worker_netns"]) == {_netns_inode(fabric, "worker")}  # rollouts ran on the worker host
    rollouts = [line for line in lines if "iteration" in line]
    assert [r["iteration"] for r in rollouts] == list(range(ITERATIONS))
    for r in rollouts:
        assert len(r["episodes"]) == len(r["tasks"]) == 2 * GROUP_SIZE
        assert [e[:3] for e in r["episodes"]] == r["tasks"]  # one episode per task, in order, none twice
        groups = Counter((e[0], e[2]) for e in r["episodes"])
        assert sorted(groups.values()) == [GROUP_SIZE, GROUP_SIZE]
        for key in groups:
            assert sorted(e[1] for e in r["episodes"] if (e[0], e[2]) == key) == list(range(GROUP_SIZE))
        assert all(e[3] != "env_error" for e in r["episodes"])
    reruns = sum(e[4] for r in rollouts for e in r["episodes"])
    assert reruns >= 1, "no episode was in flight on env2 when it was cut off"
    assert lines[-1] == {"done": True, "replaced_workers": 0}
    # the trainer's own record: every iteration's metrics, and the final checkpoint
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len([m for m in metrics if m.get("phase") == "rl"]) == ITERATIONS
    assert (tmp_path / "run" / "checkpoints").is_dir()


def _iterations_done(record: Path) -> int:
    if not record.exists():
        return 0
    return sum('"iteration"' in line for line in record.read_text().splitlines())


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"
