"""The env server's guards (docs/serving.md "Security"), each against a real uvicorn server on 127.0.0.1:
the bind check, bearer tokens per client, sessions owned by their client and a per-client quota, the env kwargs a
remote client may set, lone surrogates, the idle clock, what a worker's death tells other sessions, the token kept
out of the workers' environment, and the request-head timeout."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import running_server
from websockets.sync.client import connect

from servers.env_server import main
from servers.security import INSECURE_FLAG, InsecureBindError, bearer_client, check_bind, is_loopback

ECHO = "resrl/Echo-v0"


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _post(url: str, path: str, body: Any, token: str | None = None) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=_auth(token) if token else {}, timeout=30)


def _session(url: str, token: str | None = None, **kwargs: Any) -> str:
    created = _post(url, "/v1/sessions", {"env_id": ECHO, "kwargs": kwargs}, token)
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    assert _post(url, f"/v1/sessions/{session_id}/reset", {"seed": 0}, token).status_code == 200
    return session_id


# -- the bind check ------------------------------------------------------------------------------------------
def test_a_public_bind_without_a_token_refuses_to_start(caplog: pytest.LogCaptureFixture) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.3.2.1")
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "", "10.0.0.5", "example.org"))
    for host in ("0.0.0.0", "::", "10.0.0.5"):
        with pytest.raises(InsecureBindError, match=INSECURE_FLAG):
            check_bind(host, False, allow_insecure=False, server="env server")
    check_bind("0.0.0.0", True, allow_insecure=False, server="env server")  # a token: fine
    check_bind("127.0.0.1", False, allow_insecure=False, server="env server")  # loopback: fine
    with caplog.at_level(logging.WARNING):
        check_bind("0.0.0.0", False, allow_insecure=True, server="env server")
    assert "WITHOUT AUTHENTICATION" in caplog.text


def test_the_env_server_main_refuses_a_public_bind_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESRL_ENV_SERVER_TOKEN", raising=False)
    with pytest.raises(SystemExit) as refused:  # before anything binds or starts a worker
        main(["--host", "0.0.0.0", "--envs", ECHO, "--workers", "1"])
    assert refused.value.code == 2


# -- tokens and /healthz -------------------------------------------------------------------------------------
def test_bearer_scheme_is_case_insensitive_and_tokens_name_their_client() -> None:
    tokens = {"alice": b"a-token", "bob": b"b-token"}
    assert bearer_client(b"bearer a-token", tokens) == "alice"
    assert bearer_client(b"BEARER b-token", tokens) == "bob"
    assert bearer_client("Bearer  a-token ", tokens) == "alice"
    assert bearer_client(b"Basic a-token", tokens) is None
    assert bearer_client(b"Bearer nope", tokens) is None
    assert bearer_client(b"", tokens) is None


def test_healthz_hides_the_counts_without_a_token_and_lowercase_bearer_works() -> None:
    with running_server(workers=1, isolation="thread", token="s3cret") as running:
        url = running.url
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        assert httpx.get(url + "/healthz", headers=_auth("wrong")).json() == {"status": "ok"}
        full = httpx.get(url + "/healthz", headers={"authorization": "bearer s3cret"}).json()
        assert full == {"status": "ok", "sessions": 0, "workers": 1, "isolation": "thread"}
        assert httpx.get(url + "/v1/envs", headers={"authorization": "bearer s3cret"}).status_code == 200


# -- sessions belong to their client -------------------------------------------------------------------------
def test_another_clients_session_is_not_found_and_each_client_has_a_quota() -> None:
    tokens = {"alice": "a-token", "bob": "b-token"}
    with running_server(
        workers=1, isolation="thread", client_tokens=tokens, max_sessions=8, max_sessions_per_client=2
    ) as running:
        url = running.url
        mine = _session(url, "a-token")
        for path, body in ((f"/v1/sessions/{mine}/step", {"action": "x"}), (f"/v1/sessions/{mine}/reset", {})):
            stolen = _post(url, path, body, "b-token")
            assert (stolen.status_code, stolen.json()["error"]["code"]) == (404, "SESSION_NOT_FOUND")
        closed = httpx.delete(f"{url}/v1/sessions/{mine}", headers=_auth("b-token"))
        assert closed.status_code == 404
        batch = _post(url, "/v1/sessions:step", {"steps": [{"session_id": mine, "action": "x"}]}, "b-token").json()
        assert batch["results"][0]["error"]["code"] == "SESSION_NOT_FOUND"
        with connect(
            url.replace("http", "ws", 1) + f"/v1/sessions/{mine}/ws", additional_headers=_auth("b-token")
        ) as ws:
            ws.send(json.dumps({"op": "step", "id": 1, "action": "x"}))
            assert json.loads(ws.recv(timeout=10))["error"]["status"] == 404
        assert _post(url, f"/v1/sessions/{mine}/step", {"action": "x"}, "a-token").status_code == 200
        # the quota: alice holds 2 of 8, her third is refused; bob still gets his
        _session(url, "a-token")
        third = _post(url, "/v1/sessions", {"env_id": ECHO}, "a-token")
        assert (third.status_code, third.json()["error"]["code"]) == (429, "CAPACITY")
        assert "quota of 2" in third.json()["error"]["message"]
        _session(url, "b-token")
        assert httpx.delete(f"{url}/v1/sessions/{mine}", headers=_auth("a-token")).status_code == 200
        _session(url, "a-token")  # a closed session frees its quota slot


# -- env kwargs ----------------------------------------------------------------------------------------------
def test_env_kwargs_not_declared_remote_are_refused_before_the_env_is_built(tmp_path: Path) -> None:
    with running_server(envs=[ECHO, "resrl/WebShop-v0", "resrl/Math-v0"], workers=1) as running:
        url = running.url
        for path in ("/dev/zero", "/proc/self/fd/0", str(tmp_path / "nope.json"), "/etc/passwd"):
            refused = _post(url, "/v1/sessions", {"env_id": "resrl/WebShop-v0", "kwargs": {"catalogue_path": path}})
            error = refused.json()["error"]
            assert refused.status_code == 400 and error["code"] == "BAD_REQUEST"
            assert error["message"].startswith("kwargs.catalogue_path:")  # the same answer whether the file exists
            assert "max_steps" in error["hint"] and "catalogue_path" not in error["hint"]
        echo = _post(url, "/v1/sessions", {"env_id": ECHO, "kwargs": {"render_mode": "human"}})
        assert echo.status_code == 400 and "max_steps, num_tasks" in echo.json()["error"]["hint"]
        assert _post(url, "/v1/sessions", {"env_id": ECHO, "kwargs": {"max_steps": 2}}).status_code == 201
        huge = _post(url, "/v1/sessions", {"env_id": "resrl/Math-v0", "kwargs": {"num_generated": 10**9}})
        assert huge.status_code == 400 and huge.json()["error"]["hint"] == "an integer from 0 to 20000"
        sized = _post(url, "/v1/sessions", {"env_id": "resrl/Math-v0", "kwargs": {"num_generated": 2000}})
        assert sized.status_code == 201
        assert _post(url, "/v1/sessions", {"env_id": "resrl/WebShop-v0", "kwargs": {"max_steps": 3}}).status_code == 201


def test_every_registered_env_declares_no_path_kwarg_as_remote() -> None:
    import envs

    for env_id in envs.env_ids():
        remote = getattr(envs.env_class(env_id), "remote_kwargs", frozenset())
        assert not [name for name in remote if "path" in name or "dir" in name or name == "render_mode"], env_id


# -- lone surrogates, the idle clock, worker deaths, the environment -----------------------------------------
def test_a_lone_surrogate_is_a_400_over_http_and_the_session_lives_on() -> None:
    with running_server(workers=1) as running:
        url = running.url
        sid = _session(url)
        body = '{"action": "a\\ud800b"}'
        answer = httpx.post(f"{url}/v1/sessions/{sid}/step", content=body, headers={"content-type": "application/json"})
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "BAD_REQUEST")
        assert "surrogate" in answer.json()["error"]["message"]
        assert _post(url, f"/v1/sessions/{sid}/step", {"action": "fine"}).status_code == 200


def test_the_idle_clock_starts_when_a_long_step_ends() -> None:
    with running_server(workers=1, test_knobs=True, session_ttl_s=0.6, step_timeout_s=10) as running:
        url = running.url
        sid = _session(url, step_sleep_s=1.5)
        assert _post(url, f"/v1/sessions/{sid}/step", {"action": "x"}).status_code == 200  # 1.5 s > the TTL
        assert _post(url, f"/v1/sessions/{sid}/step", {"action": "y"}).status_code == 200  # not expired meanwhile


def test_a_killed_worker_does_not_tell_other_sessions_the_culprits_id() -> None:
    with running_server(workers=1, test_knobs=True, step_timeout_s=1.0) as running:
        url = running.url
        victim = _session(url)
        culprit = _session(url, step_sleep_s=5)
        assert _post(url, f"/v1/sessions/{culprit}/step", {"action": "x"}).status_code == 504
        ended = _post(url, f"/v1/sessions/{victim}/step", {"action": "x"})
        assert ended.status_code == 502 and culprit not in ended.text


def test_the_servers_token_stays_out_of_the_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESRL_ENV_SERVER_TOKEN", "in-the-environment")
    monkeypatch.setenv("RESRL_TOOL_SERVER_TOKEN", "also-secret")
    with running_server(workers=1, token="in-the-environment") as running:
        pid = running.manager.workers[0].pid
        assert pid is not None and pid != os.getpid()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"PYTHONPATH=" in environ
        assert b"in-the-environment" not in environ and b"also-secret" not in environ


# -- connections ---------------------------------------------------------------------------------------------
def test_slow_clients_lose_their_connection_after_the_head_timeout() -> None:
    with running_server(workers=1, isolation="thread", header_timeout_s=0.5, max_connections=64) as running:
        port = int(running.url.rsplit(":", 1)[1])
        slow = []
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head never ends
            slow.append(sock)
        time.sleep(1.5)
        for sock in slow:
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed by the server
            sock.close()
        assert httpx.get(running.url + "/healthz", timeout=5).status_code == 200
        # a kept-alive connection that answered a request gets the same clock for its next head
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            answer = b""
            while not answer.endswith(b"}"):  # the head and the JSON body may come in separate reads
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(1.0)
            assert sock.recv(100) == b""


def test_tokens_from_a_mounted_secret_and_a_client_tokens_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from servers.security import read_client_tokens, resolve_token, scrubbed_environ

    secret = tmp_path / "token"
    secret.write_text("from-a-secret\n")
    monkeypatch.delenv("RESRL_ENV_SERVER_TOKEN", raising=False)
    monkeypatch.setenv("RESRL_ENV_SERVER_TOKEN_FILE", str(secret))
    assert resolve_token() == "from-a-secret"  # what the images use: the secret's file, named by an env var
    assert "RESRL_ENV_SERVER_TOKEN_FILE" not in scrubbed_environ()
    monkeypatch.setenv("RESRL_ENV_SERVER_TOKEN", "direct")
    assert resolve_token() == "direct"
    clients = tmp_path / "clients"
    clients.write_text("# name token\nalice a-token\nbob b-token\n")
    assert read_client_tokens(clients) == {"alice": "a-token", "bob": "b-token"}
    clients.write_text("alice a-token\nbob a-token\n")
    with pytest.raises(ValueError, match="share a token"):
        read_client_tokens(clients)


def test_the_head_timeout_leaves_websockets_and_long_requests_alone() -> None:
    with running_server(workers=1, test_knobs=True, header_timeout_s=0.5, step_timeout_s=10) as running:
        url = running.url
        sid = _session(url, step_sleep_s=1.0)
        with connect(url.replace("http", "ws", 1) + f"/v1/sessions/{sid}/ws") as ws:
            time.sleep(1.0)  # idle past the head timeout: a WebSocket is not waiting for a head
            ws.send(json.dumps({"op": "step", "id": 1, "action": "x"}))  # and a 1 s step is not cut either
            assert "result" in json.loads(ws.recv(timeout=10))
        with httpx.Client(base_url=url) as client:  # a kept-alive HTTP client reconnects after an idle gap
            assert client.post(f"/v1/sessions/{sid}/step", json={"action": "y"}).status_code == 200
            time.sleep(1.0)
            assert client.post(f"/v1/sessions/{sid}/step", json={"action": "z"}).status_code == 200
