"""The env server for real: uvicorn on 127.0.0.1, worker processes, RemoteEnv, every error code provoked."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import gymnasium as gym
import httpx
import pytest
from conftest import Running, running_server

import envs  # noqa: F401 - registers the env ids
from servers.env_client import (
    EnvClient,
    EnvCrashedError,
    EpisodeDoneError,
    RemoteEnv,
    SessionNotFoundError,
    StepTimeoutError,
)


def _play_side_by_side(local: gym.Env[str, str], remote: RemoteEnv, seed: int, options: Any = None) -> list[Any]:
    """Reset both with the same seed, act with the expert; every answer must be equal. Returns the trace."""
    local_obs, local_info = local.reset(seed=seed, options=options)
    remote_obs, remote_info = remote.reset(seed=seed, options=options)
    assert (remote_obs, remote_info) == (local_obs, local_info)
    trace: list[Any] = []
    for _ in range(30):
        action = local_info["expert_action"]
        if not isinstance(action, str):
            action = json.dumps(action)
        local_answer = local.step(action)
        remote_answer = remote.step(action)
        assert remote_answer == local_answer
        trace.append((action, local_answer[1], local_answer[2], local_answer[3]))
        local_info = local_answer[4]
        if local_answer[2] or local_answer[3]:
            break
    return trace


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_remote_webshop_equals_the_local_env(fault_server: Running, transport: str) -> None:
    local = gym.make("resrl/WebShop-v0")
    with RemoteEnv(fault_server.url, "resrl/WebShop-v0", transport=transport) as remote:
        assert remote.action_space.max_length == local.action_space.max_length
        trace = _play_side_by_side(local, remote, seed=3)
    # search, click the item, pick colour and size, buy: full score (WebShop rewards are x10)
    assert len(trace) == 5 and trace[-1] == ("click[buy now]", 10.0, True, False)
    assert trace[0][0].startswith("search[")


def test_remote_function_calling_equals_the_local_env(fault_server: Running) -> None:
    local = gym.make("resrl/FunctionCalling-v0")
    with RemoteEnv(fault_server.url, "resrl/FunctionCalling-v0", transport="websocket") as remote:
        trace = _play_side_by_side(local, remote, seed=5)
    assert len(trace) >= 2 and trace[-1][2] is True


def _echo(client: EnvClient, task: str = "echo-2", **kwargs: Any) -> str:
    session_id: str = client.create_session("resrl/Echo-v0", kwargs)["session_id"]
    client.reset(session_id, seed=0, options={"task_id": task})
    return session_id


def _raw(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url + path, timeout=10, **kwargs)


def test_http_error_codes_and_statuses(fault_server: Running) -> None:
    url = fault_server.url
    with EnvClient(url) as client:
        session_id = _echo(client, max_steps=1)
        cases = {
            "unknown session": _raw(url, "POST", "/v1/sessions/nope/step", json={"action": "x"}),
            "unknown env": _raw(url, "POST", "/v1/sessions", json={"env_id": "resrl/Nope-v0"}),
            "not JSON": _raw(
                url,
                "POST",
                f"/v1/sessions/{session_id}/step",
                content=b"{oops",
                headers={"content-type": "application/json"},
            ),
            "wrong type": _raw(url, "POST", f"/v1/sessions/{session_id}/step", json={"action": 3}),
            "bad kwargs": _raw(url, "POST", "/v1/sessions", json={"env_id": "resrl/Echo-v0", "kwargs": {"bogus": 1}}),
            "too large": _raw(url, "POST", f"/v1/sessions/{session_id}/step", json={"action": "x" * 1_100_000}),
        }
        answers = {name: (r.status_code, r.json()["error"]["code"]) for name, r in cases.items()}
        assert answers == {
            "unknown session": (404, "SESSION_NOT_FOUND"),
            "unknown env": (404, "ENV_NOT_FOUND"),
            "not JSON": (400, "BAD_REQUEST"),
            "wrong type": (422, "BAD_REQUEST"),
            "bad kwargs": (400, "BAD_REQUEST"),
            "too large": (413, "TOO_LARGE"),
        }
        assert cases["wrong type"].json()["error"]["message"] == "action: Input should be a valid string"
        assert "bogus" in cases["bad kwargs"].json()["error"]["message"]
        assert client.step(session_id, "x")["truncated"] is True  # max_steps=1
        with pytest.raises(EpisodeDoneError) as done:
            client.step(session_id, "again")
        assert (done.value.status, done.value.code) == (409, "EPISODE_DONE")
        fresh = client.create_session("resrl/Echo-v0")["session_id"]
        with pytest.raises(EpisodeDoneError, match="reset"):
            client.step(fresh, "before reset")
        assert client.close_session(fresh) is True
        with pytest.raises(SessionNotFoundError):
            client.close_session(fresh)
        body = _raw(url, "GET", "/metrics").text
        assert 'resrl_env_errors_total{code="EPISODE_DONE"} 2.0' in body
        assert 'resrl_env_steps_total{env_id="resrl/Echo-v0"}' in body


def test_a_worker_killed_by_a_signal_ends_only_its_sessions(fault_server: Running) -> None:
    with EnvClient(fault_server.url) as client:
        first, second = _echo(client), _echo(client)
        sessions = fault_server.manager.sessions
        victim = sessions[first].worker
        if sessions[second].worker is victim:  # least-loaded placement: make sure they differ
            second = _echo(client)
        assert sessions[second].worker is not victim
        os.kill(victim.pid or 0, signal.SIGKILL)
        with pytest.raises(EnvCrashedError) as crashed:
            client.step(first, "x")
        assert (crashed.value.status, crashed.value.code) == (502, "ENV_CRASHED")
        assert "signal SIGKILL" in crashed.value.server_message
        assert client.step(second, "lamp")["reward"] == 1.0  # the other worker's session goes on
        replacement = _echo(client)  # the pool replaced the dead process
        assert client.step(replacement, "lamp")["terminated"] is True
        # the crash knob: the env kills its own process mid-step
        doomed = _echo(client, crash_at_step=2)
        client.step(doomed, "one")
        with pytest.raises(EnvCrashedError):
            client.step(doomed, "two")
        assert client.health()["status"] == "ok"


def test_a_step_past_the_timeout_kills_the_worker_and_answers_504(fault_server: Running) -> None:
    with EnvClient(fault_server.url) as client:
        slow = _echo(client, step_sleep_s=30)
        started = time.monotonic()
        with pytest.raises(StepTimeoutError) as late:
            client.step(slow, "x")
        assert (late.value.status, late.value.code) == (504, "STEP_TIMEOUT")
        assert time.monotonic() - started < 5  # step_timeout_s=1, not the 30 s sleep
        with pytest.raises(EnvCrashedError):
            client.step(slow, "x")
        assert client.step(_echo(client), "lamp")["info"]["won"] is True


def test_batched_step_answers_200_with_a_result_or_an_error_per_item(fault_server: Running) -> None:
    with EnvClient(fault_server.url) as client:
        ids = [_echo(client, task=f"echo-{i}") for i in range(4)]
        done = _echo(client, max_steps=1)
        client.step(done, "x")
        steps = [{"session_id": sid, "action": "apple"} for sid in ids]
        steps += [{"session_id": "nope", "action": "a"}, {"session_id": done, "action": "a"}]
        results = client.step_batch(steps)
    assert [r["session_id"] for r in results] == [*ids, "nope", done]
    assert [r["result"]["reward"] for r in results[:4]] == [1.0, 0.0, 0.0, 0.0]  # only echo-0 asks for "apple"
    assert [r["result"]["observation"] for r in results[:4]] == ["You said: apple"] * 4
    assert [r["error"]["code"] for r in results[4:]] == ["SESSION_NOT_FOUND", "EPISODE_DONE"]


def test_a_retried_step_with_the_same_request_id_is_answered_once(fault_server: Running) -> None:
    with EnvClient(fault_server.url) as client:
        session_id = _echo(client, max_steps=2)
        first = client.step(session_id, "a", request_id="r-1")
        again = client.step(session_id, "a", request_id="r-1")
        assert again == first and first["truncated"] is False
        assert client.step(session_id, "b", request_id="r-2")["truncated"] is True  # the 2nd step, not the 3rd


class _LoseFirstAnswer(httpx.HTTPTransport):
    """A real transport that delivers the first step request, then drops its answer (a lost connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/step") and self.dropped == 0:
            response.read()
            self.dropped += 1
            raise httpx.ReadError("connection reset while reading the answer", request=request)
        return response


def test_remote_env_retries_a_lost_answer_without_stepping_twice(fault_server: Running) -> None:
    transport = _LoseFirstAnswer()
    with RemoteEnv(fault_server.url, "resrl/Echo-v0", max_steps=2, http_transport=transport, backoff_s=0.01) as env:
        env.reset(options={"task_id": "echo-1"})
        _, _, _, truncated, _ = env.step("a")
        assert transport.dropped == 1 and truncated is False
        assert env.step("b")[3] is True  # the env saw exactly two steps


def test_websocket_ops_and_errors(fault_server: Running) -> None:
    from websockets.sync.client import connect

    url = fault_server.url.replace("http", "ws") + "/v1/ws"
    with connect(url) as ws:

        def call(message: dict[str, Any]) -> dict[str, Any]:
            ws.send(json.dumps(message))
            answer: dict[str, Any] = json.loads(ws.recv(timeout=10))
            return answer

        created = call({"op": "create", "id": 1, "env_id": "resrl/Echo-v0"})["result"]
        sid = created["session_id"]
        assert (
            call({"op": "reset", "id": 2, "session_id": sid, "options": {"task_id": "echo-3"}})["result"]["observation"]
            == "Say the word: stone"
        )
        step = call({"op": "step", "id": 3, "session_id": sid, "action": "stone"})
        assert step["id"] == 3 and step["result"]["reward"] == 1.0
        batch = call({"op": "step_batch", "id": 4, "steps": [{"session_id": sid, "action": "x"}]})["result"]
        assert batch["results"][0]["error"]["code"] == "EPISODE_DONE"
        bad = call({"op": "step", "id": 5, "session_id": sid, "action": 7})["error"]
        assert (bad["status"], bad["code"], bad["message"]) == (
            422,
            "BAD_REQUEST",
            "action: Input should be a valid string",
        )
        assert call({"op": "close", "id": 6, "session_id": sid})["result"] == {"session_id": sid, "closed": True}
        assert call({"op": "step", "id": 7, "session_id": sid, "action": "x"})["error"]["status"] == 404
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=10))["error"]["status"] == 400


def test_auth_capacity_ttl_and_refused_knobs() -> None:
    with running_server(workers=1, max_sessions=2, session_ttl_s=0.3, token="s3cret") as running:
        url = running.url
        assert _raw(url, "GET", "/healthz").status_code == 200  # health needs no token
        denied = _raw(url, "GET", "/v1/envs", headers={"authorization": "Bearer wrong"})
        assert (denied.status_code, denied.json()["error"]["code"]) == (401, "UNAUTHORIZED")
        assert _raw(url, "POST", "/v1/sessions", json={"env_id": "resrl/Echo-v0"}).status_code == 401
        with EnvClient(url, token="s3cret") as client:
            knob = _raw(
                url,
                "POST",
                "/v1/sessions",
                json={"env_id": "resrl/Echo-v0", "kwargs": {"step_sleep_s": 5}},
                headers={"authorization": "Bearer s3cret"},
            )
            assert knob.status_code == 400 and "--test-knobs" in knob.json()["error"]["hint"]
            first, _second = _echo(client), _echo(client)
            with pytest.raises(Exception) as full:
                client.create_session("resrl/Echo-v0")
            assert (getattr(full.value, "status", None), getattr(full.value, "code", None)) == (429, "CAPACITY")
            time.sleep(1.0)  # both idle past the TTL: the reaper closes them
            with pytest.raises(SessionNotFoundError, match="expired"):
                client.step(first, "x")
            assert client.health()["sessions"] == 0
            _echo(client)  # capacity is free again
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        with pytest.raises(InvalidStatus) as refused:
            connect(url.replace("http", "ws") + "/v1/ws").__enter__()
        assert refused.value.response.status_code == 401
        workers = list(running.manager.workers)
    assert all(worker._process.poll() is not None for worker in workers)  # type: ignore[attr-defined]


def test_thread_isolation_serves_the_same_answers_and_times_out() -> None:
    with running_server(workers=1, isolation="thread", test_knobs=True, step_timeout_s=0.5) as running:
        with RemoteEnv(running.url, "resrl/Echo-v0", transport="websocket") as env:
            assert env.reset(options={"task_id": "echo-4"})[0] == "Say the word: cloud"
            assert env.step("cloud")[1:4] == (1.0, True, False)
        with RemoteEnv(running.url, "resrl/Echo-v0", step_sleep_s=2) as slow:
            slow.reset()
            with pytest.raises(StepTimeoutError):
                slow.step("x")


def test_thread_worker_times_each_op_not_its_queue_wait() -> None:
    """Three sessions in one thread worker, each step 0.3 s against a 0.5 s timeout: queueing behind the others must
    not count (the op that runs 0.3 s is fine), so all three answer normally."""
    import concurrent.futures

    with running_server(workers=1, isolation="thread", test_knobs=True, step_timeout_s=0.5) as running:
        sessions = [RemoteEnv(running.url, "resrl/Echo-v0", step_sleep_s=0.3) for _ in range(3)]
        try:
            for env in sessions:
                env.reset(options={"task_id": "echo-0"})
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                results = list(pool.map(lambda env: env.step("apple"), sessions))
            assert [r[1:4] for r in results] == [(1.0, True, False)] * 3
        finally:
            for env in sessions:
                env.close()


def test_concurrent_creates_respect_capacity() -> None:
    """max_sessions holds under concurrent creates (a create in flight holds its slot)."""
    import concurrent.futures

    with running_server(workers=2, max_sessions=2) as running:

        def create(_: int) -> int:
            response = httpx.post(f"{running.url}/v1/sessions", json={"env_id": "resrl/Echo-v0", "kwargs": {}})
            return response.status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(create, range(8)))
        assert codes == [201, 201] + [429] * 6
        assert len(running.manager.sessions) == 2
