"""The WebSockets served as plain ASGI (``_Guard``), against a real uvicorn server: same answers and errors as before
the Starlette WebSocket layer was bypassed, on both routes; and the worker count that follows the affinity mask."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Running, running_server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]


def _ws(url: str, path: str, **kwargs: Any) -> Any:
    return connect(url.replace("http", "ws", 1) + path, **kwargs)


def _create(url: str, **kwargs: Any) -> str:
    response = httpx.post(f"{url}/v1/sessions", json={"env_id": "resrl/Echo-v0", "kwargs": kwargs}, timeout=30)
    assert response.status_code == 201, response.text
    session_id: str = response.json()["session_id"]
    return session_id


def test_session_route_answers_and_errors_name_the_field(fault_server: Running) -> None:
    sid = _create(fault_server.url, max_steps=3)
    with _ws(fault_server.url, f"/v1/sessions/{sid}/ws") as ws:

        def call(message: Any) -> dict[str, Any]:
            ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))
            answer: dict[str, Any] = json.loads(ws.recv(timeout=10))
            return answer

        reset = call({"op": "reset", "id": "r", "options": {"task_id": "echo-2"}})
        assert reset == {"id": "r", "result": reset["result"]}
        assert reset["result"]["observation"] == "Say the word: lamp"
        step = call({"op": "step", "id": 2, "action": "hello"})
        assert step["id"] == 2
        assert (step["result"]["observation"], step["result"]["reward"]) == ("You said: hello", 0.0)
        assert (step["result"]["terminated"], step["result"]["truncated"]) == (False, False)
        assert call({"op": "step", "action": "x"})["id"] is None  # no id: answered with "id": null

        # malformed messages: the same 400/422 as the HTTP routes, the field named, the socket stays open
        bad_type = call({"op": "step", "id": 3, "action": ["lamp"]})
        assert bad_type == {
            "id": None,
            "error": {
                "code": "BAD_REQUEST",
                "message": "action: Input should be a valid string",
                "hint": "see the OpenAPI document at /openapi.json",
                "status": 422,
            },
        }
        extra = call({"op": "step", "id": 4, "action": "x", "actoin": "y"})["error"]
        assert (extra["status"], extra["message"]) == (422, "actoin: Extra inputs are not permitted")
        bad_op = call({"op": "jump", "id": 5})["error"]
        assert bad_op["status"] == 422 and bad_op["message"].startswith("op: Input should be 'create'")
        missing = call({"op": "step", "id": 6})["error"]
        assert (missing["status"], missing["message"]) == (422, "action: required for op 'step'")
        bad_seed = call({"op": "reset", "id": 7, "seed": -1})["error"]
        assert (bad_seed["status"], bad_seed["message"]) == (422, "seed: Input should be greater than or equal to 0")
        not_json = call('{"op": "step", "action": ')["error"]
        assert not_json["status"] == 400 and not_json["message"].startswith("body: not valid JSON")
        too_large = call(json.dumps({"op": "step", "action": "x" * 1_000_001}))["error"]
        assert (too_large["status"], too_large["code"]) == (413, "TOO_LARGE")

        # a binary frame carrying JSON is read as text
        last = call(json.dumps({"op": "step", "id": 8, "action": "lamp"}).encode())
        assert (last["id"], last["result"]["reward"], last["result"]["terminated"]) == (8, 1.0, True)
        done = call({"op": "step", "id": 9, "action": "x"})["error"]
        assert (done["status"], done["code"]) == (409, "EPISODE_DONE")
        assert call({"op": "close", "id": 10})["result"] == {"session_id": sid, "closed": True}
        gone = call({"op": "step", "id": 11, "action": "x"})["error"]
        assert (gone["status"], gone["code"]) == (404, "SESSION_NOT_FOUND")


def test_unknown_websocket_paths_are_refused(fault_server: Running) -> None:
    for path in ("/v1/sessions/a/b/ws", "/v1/sessions//ws", "/v1/wss", "/ws"):
        with pytest.raises(InvalidStatus) as refused:
            _ws(fault_server.url, path).__enter__()
        assert refused.value.response.status_code == 403, path  # uvicorn's answer to a socket the app closed


def test_session_route_needs_the_token() -> None:
    with running_server(envs=["resrl/Echo-v0"], workers=1, token="s3cret") as running:
        headers = {"authorization": "Bearer s3cret"}
        response = httpx.post(f"{running.url}/v1/sessions", json={"env_id": "resrl/Echo-v0"}, headers=headers)
        sid = response.json()["session_id"]
        with pytest.raises(InvalidStatus) as refused:
            _ws(running.url, f"/v1/sessions/{sid}/ws").__enter__()
        assert refused.value.response.status_code == 401
        with _ws(running.url, f"/v1/sessions/{sid}/ws", additional_headers=headers) as ws:
            ws.send('{"op": "reset", "options": {"task_id": "echo-0"}}')
            assert json.loads(ws.recv(timeout=10))["result"]["observation"] == "Say the word: apple"


def test_a_client_gone_mid_step_leaves_the_server_serving(fault_server: Running) -> None:
    """The client closes its socket while its step runs: the answer has nowhere to go, the server goes on."""
    slow = _create(fault_server.url, step_sleep_s=0.3)
    with _ws(fault_server.url, f"/v1/sessions/{slow}/ws") as ws:
        ws.send('{"op": "reset"}')
        ws.recv(timeout=10)
        ws.send('{"op": "step", "action": "x"}')
    time.sleep(0.5)  # the step finished and its answer met a closed socket
    with _ws(fault_server.url, f"/v1/sessions/{slow}/ws") as ws:  # the session itself is fine
        ws.send('{"op": "step", "id": 1, "action": "apple"}')
        answer = json.loads(ws.recv(timeout=10))
        assert answer["id"] == 1 and answer["result"]["observation"] == "You said: apple"
    assert httpx.get(f"{fault_server.url}/healthz").json()["status"] == "ok"
    assert httpx.delete(f"{fault_server.url}/v1/sessions/{slow}").json() == {"session_id": slow, "closed": True}


def _default_workers(pin: bool) -> int:
    code = (
        "import os\n"
        f"if {pin}: os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})\n"
        "from servers.env_sessions import EnvServerSettings\n"
        "print(EnvServerSettings().workers)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_default_workers_follow_the_affinity_mask() -> None:
    assert _default_workers(pin=True) == 1  # pinned to one core (taskset): one worker, not os.cpu_count()
    assert _default_workers(pin=False) == len(os.sched_getaffinity(0))


def test_frame_reader_reassembles_split_and_joined_frames() -> None:
    import pickle
    import socket
    import struct

    from servers.workers import _FrameReader

    ours, theirs = socket.socketpair()
    with ours, theirs:
        frames = [pickle.dumps([("step", "s", "a" * n, None)]) for n in (1, 70_000, 3)]
        wire = b"".join(struct.pack("!I", len(f)) + f for f in frames)
        theirs.sendall(wire[:2])  # half a header
        reader = _FrameReader(ours)
        import threading

        sender = threading.Thread(target=lambda: (time.sleep(0.05), theirs.sendall(wire[2:]), theirs.close()))
        sender.start()
        assert [reader.next() for _ in frames] == frames  # split, large, and two frames in one read
        assert reader.next() is None  # EOF
        sender.join()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_worker_sleeps_once_per_step() -> None:
    """The worker waits for ops in poll(POLLIN): the server reading its answer does not wake it (a blocking recv
    would be woken by that write-space event, find nothing and sleep again: measured 1.9 sleeps per step before,
    1.0 after)."""
    import asyncio

    from servers.env_sessions import EnvServerSettings, SessionManager

    def sleeps(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
        raise AssertionError("no voluntary_ctxt_switches")

    async def run() -> float:
        manager = SessionManager(EnvServerSettings(envs=["resrl/Echo-v0"], workers=1))
        await manager.start()
        try:
            sid = (await manager.create("resrl/Echo-v0", {"max_steps": 10**6}))["session_id"]
            await manager.reset(sid, 0, None)
            pid = manager.workers[0].pid
            assert pid is not None
            before, steps = sleeps(pid), 300
            for i in range(steps):
                await manager.step(sid, f"a{i}")
                await asyncio.sleep(0.0003)  # a client's round trip: the worker goes to sleep before the next op
            return (sleeps(pid) - before) / steps
        finally:
            await manager.stop()

    per_step = asyncio.run(run())
    assert 0.5 <= per_step <= 1.3, per_step
