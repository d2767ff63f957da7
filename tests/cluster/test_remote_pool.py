"""Remote env pools against real env servers: spread by load, health checks, a server killed mid-run."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cluster_servers import ServerProcess, free_port

from resrl_agent.config import load_config
from resrl_agent.errors import RolloutError
from resrl_agent.inference.hf import HFEngine
from resrl_agent.jobs import rollout_job
from resrl_agent.rollout.chat import ChatFormatter
from resrl_agent.rollout.remote_pool import RemoteEnvPool, RemotePoolSettings
from resrl_agent.run.settings import rollout_settings


def _config(servers: list[str], *extra: str) -> Any:
    return load_config(
        "configs/echo_tiny.yaml",
        [
            "env.kwargs={max_steps: 3, step_sleep_s: 0.15}",
            f"env.servers=[{', '.join(servers)}]",
            "env.remote.request_timeout_s=5",
            "env.remote.health_interval_s=0.3",
            "rollout.tasks_per_iteration=4",
            "rollout.group_size=3",
            "rollout.max_turns=3",
            "rollout.max_new_tokens=8",
            "rollout.concurrency=4",
            *extra,
        ],
    )


def _tokens(episodes: list[Any]) -> list[list[list[int]]]:
    return [[t.response_ids for t in e.turns] for e in episodes]


def test_a_server_killed_mid_run_loses_no_group_and_counts_none_twice(
    two_servers: list[ServerProcess], tiny_model: Any, tiny_tokenizer: Any
) -> None:
    import torch

    torch.set_num_threads(1)
    a, b = two_servers
    config = _config([a.url, b.url])
    assert rollout_settings(config).remote is not None  # env.servers reaches the loop through the config
    engine, formatter = HFEngine(tiny_model, tiny_tokenizer), ChatFormatter(tiny_tokenizer)
    steps_before_kill: list[int] = []

    def kill_b(finished: int) -> None:
        if finished == 2:  # two episodes done, the others in flight on both servers
            steps_before_kill.append(b.steps())
            b.kill(signal.SIGKILL)

    episodes = rollout_job(config, engine=engine, formatter=formatter, progress=kill_b)
    b.proc.wait(timeout=10)
    assert b.proc.returncode == -signal.SIGKILL and steps_before_kill[0] > 0  # B served steps, then died
    # one episode per TaskSpec, in order; every group whole with sample indices 0..G-1
    assert len(episodes) == 12
    assert [e.sample_idx for e in episodes] == [0, 1, 2] * 4
    groups = Counter((e.group_id, e.seed) for e in episodes)
    assert sorted(groups.values()) == [3, 3, 3, 3]
    for group, seed in groups:
        assert sorted(e.sample_idx for e in episodes if (e.group_id, e.seed) == (group, seed)) == [0, 1, 2]
    assert all(e.stop_reason != "env_error" for e in episodes)
    reruns = sum(e.metrics["env_reruns"] for e in episodes)
    assert reruns >= 1  # the episodes that were on B were played again on A
    print(f"re-runs after the kill: {reruns:.0f}")
    # a re-run episode is the same rollout (same seeds, same task): identical to a local run with no failure
    local = rollout_job(load_config("configs/echo_tiny.yaml", _overrides_local()), engine=engine, formatter=formatter)
    assert _tokens(episodes) == _tokens(local)
    assert [e.total_return for e in episodes] == [e.total_return for e in local]
    # a step applied twice would move Echo's step counter (earlier truncation): same turn counts as the local run
    assert [len(e.turns) for e in episodes] == [len(e.turns) for e in local]


def _overrides_local() -> list[str]:
    return [
        "env.kwargs={max_steps: 3, step_sleep_s: 0.15}",
        "rollout.tasks_per_iteration=4",
        "rollout.group_size=3",
        "rollout.max_turns=3",
        "rollout.max_new_tokens=8",
        "rollout.concurrency=4",
    ]


def test_sessions_spread_by_load_and_an_unhealthy_server_is_skipped_then_probed_back(
    two_servers: list[ServerProcess],
) -> None:
    a, b = two_servers
    pool = RemoteEnvPool(RemotePoolSettings((a.url, b.url), health_interval_s=0.2, probe_timeout_s=0.5))
    opened: list[Any] = []
    try:
        for _ in range(4):
            opened.append(pool.open("resrl/Echo-v0", {"max_steps": 2}))
        assert pool.stats.opened == {a.url: 2, b.url: 2}  # least open sessions first
        b.kill(signal.SIGSTOP)  # B hangs: its probes time out
        _wait_until(lambda: not pool.servers[1].healthy)
        for _ in range(3):
            opened.append(pool.open("resrl/Echo-v0", {"max_steps": 2}))
        assert pool.stats.opened == {a.url: 5, b.url: 2}  # B skipped while unhealthy
        b.kill(signal.SIGCONT)
        _wait_until(lambda: pool.servers[1].healthy)  # re-probed
        server, env = pool.open("resrl/Echo-v0", {"max_steps": 2})
        opened.append((server, env))
        assert server.url == b.url  # back, and the least loaded (2 sessions against 5)
        observation, _ = env.reset(seed=0, options={"task_id": "echo-2"})
        assert observation == "Say the word: lamp"
    finally:
        for _server, env in opened:
            env.close()
        pool.close()


def _wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_misconfigured_pools_fail_the_run_with_a_clear_error(two_servers: list[ServerProcess], tmp_path: Path) -> None:
    a, _ = two_servers
    dead = f"http://127.0.0.1:{free_port()}"
    pool = RemoteEnvPool(RemotePoolSettings((dead,), wait_for_server_s=0.5, health_interval_s=0.1))
    try:
        with pytest.raises(RolloutError, match="no env server could open a resrl/Echo-v0 session"):
            pool.open("resrl/Echo-v0", {})
    finally:
        pool.close()
    pool = RemoteEnvPool(RemotePoolSettings((a.url,)))
    try:
        with pytest.raises(RolloutError, match="refused a resrl/Nope-v0 session"):
            pool.open("resrl/Nope-v0", {})
    finally:
        pool.close()
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(RolloutError, match="is empty"):
        RemoteEnvPool(RemotePoolSettings((a.url,), token_file=str(empty)))
    with pytest.raises(Exception, match="not an http"):
        load_config(None, ["env.servers=[127.0.0.1:8000]"])
