"""The tool server's guards against a real uvicorn server on 127.0.0.1 (docs/serving.md "Security"): the bind
check, the token (and lower-case ``bearer``), liveness-only /healthz, a body cap that counts chunked bytes, JSON
errors for a bad initial_config, sessions owned by their client, long tools on their own pool; and MCP over stdio:
a JSON-RPC error for every malformed line, ``isError`` for a python_exec whose code raises."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tool_servers import serving

from servers.limits import uvicorn_options
from servers.security import resolve_token
from servers.tool_server import TOKEN_ENV, ToolServerSettings, create_app, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    settings = ToolServerSettings(
        client_tokens={"alice": "a-token", "bob": "b-token"},
        max_request_bytes=100_000,
        tool_threads=2,
        long_tool_threads=1,
    )
    with serving(settings, **uvicorn_options(max_connections=64, keep_alive_s=5, header_timeout_s=5)) as base:
        yield base


def _h(token: str) -> dict[str, str]:
    return {"authorization": f"bearer {token}"}  # lower-case scheme: accepted


def test_a_public_bind_without_a_token_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(SystemExit) as refused:
        main(["http", "--host", "0.0.0.0", "--port", "1"])
    assert refused.value.code == 2
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert resolve_token(env=TOKEN_ENV) == "from-env"


def test_token_healthz_and_ownership(url: str) -> None:
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(url + "/healthz", headers=_h("a-token")).json() == {"status": "ok", "sessions": 0}
    assert httpx.get(url + "/v1/tools").status_code == 401
    created = httpx.post(url + "/v1/sessions", json={"classes": ["MathAPI"]}, headers=_h("a-token"))
    assert created.status_code == 201
    sid = created.json()["session_id"]
    call = {"name": "add", "arguments": {"a": 1, "b": 2}}
    stolen = httpx.post(f"{url}/v1/sessions/{sid}/call", json=call, headers=_h("b-token"))
    assert (stolen.status_code, stolen.json()["error"]["code"]) == (404, "SESSION_NOT_FOUND")
    assert httpx.delete(f"{url}/v1/sessions/{sid}", headers=_h("b-token")).status_code == 404
    assert httpx.post(f"{url}/v1/sessions/{sid}/call", json=call, headers=_h("a-token")).json()["error"] is None
    assert httpx.delete(f"{url}/v1/sessions/{sid}", headers=_h("a-token")).status_code == 200


def test_a_chunked_body_over_the_cap_is_413_and_a_bad_initial_config_is_a_json_400(url: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"classes": [], "initial_config": {"x": "'
        for _ in range(100):
            yield b"a" * 10_000  # 1 MB in all, no content-length
        yield b'"}}'

    too_big = httpx.post(url + "/v1/sessions", content=chunks(), headers=_h("a-token"), timeout=30)
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "TOO_LARGE")
    bad = httpx.post(
        url + "/v1/sessions",
        json={"classes": ["GorillaFileSystem"], "initial_config": {"GorillaFileSystem": {"root": 5}}},
        headers=_h("a-token"),
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BAD_REQUEST"
    assert "initial_config" in bad.json()["error"]["message"]
    garbage = httpx.post(
        url + "/v1/sessions", content=b"{nope", headers={**_h("a-token"), "content-type": "application/json"}
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "BAD_REQUEST"


def test_long_tools_do_not_starve_the_short_ones(url: str) -> None:
    created = httpx.post(url + "/v1/sessions", json={"classes": ["MathAPI"]}, headers=_h("b-token")).json()
    sid = created["session_id"]
    slow = {"name": "python_exec", "arguments": {"code": "import time; time.sleep(1.5)"}}
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(httpx.post, f"{url}/v1/sessions/{sid}/call", json=slow, headers=_h("b-token"), timeout=60)
            for _ in range(8)
        ]
        time.sleep(0.5)  # 8 python_exec calls queued: more than the default pool's threads on a small machine
        start = time.monotonic()
        add = {"name": "add", "arguments": {"a": 2, "b": 40}}
        answer = httpx.post(f"{url}/v1/sessions/{sid}/call", json=add, headers=_h("b-token"), timeout=60).json()
        elapsed = time.monotonic() - start
        assert answer["content"] == '{"result": 42}' and elapsed < 1.0, elapsed
        assert all(f.result().status_code == 200 for f in futures)


def test_mcp_answers_every_malformed_line_with_a_jsonrpc_error() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "servers.tool_server", "mcp-stdio", "--classes", "MathAPI"],
        cwd=str(REPO),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b'garbage\n[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]\n{"foo": 1}\n')
        process.stdin.flush()
        answers = [json.loads(process.stdout.readline()) for _ in range(3)]
    finally:
        process.kill()
        process.wait()
    assert [a["error"]["code"] for a in answers] == [-32700, -32600, -32600]
    assert all(a["jsonrpc"] == "2.0" and a["id"] is None for a in answers)


def test_mcp_python_exec_whose_code_raises_is_an_error() -> None:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "servers.tool_server", "mcp-stdio", "--classes", "MathAPI"], cwd=str(REPO)
    )

    async def scenario() -> tuple[bool, str, bool]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            raised = await session.call_tool("python_exec", {"code": "raise ValueError('boom')"})
            fine = await session.call_tool("python_exec", {"code": "print(1)"})
            return raised.is_error, raised.content[0].text, fine.is_error

    raised_error, text, fine_error = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert raised_error and "ValueError: boom" in text and not fine_error


def test_one_client_cannot_take_every_session() -> None:
    from fastapi.testclient import TestClient

    settings = ToolServerSettings(client_tokens={"alice": "a", "bob": "b"}, max_sessions=8, max_sessions_per_client=2)
    with TestClient(create_app(settings)) as client:
        for _ in range(2):
            assert client.post("/v1/sessions", json={}, headers=_h("a")).status_code == 201
        third = client.post("/v1/sessions", json={}, headers=_h("a"))
        assert (third.status_code, third.json()["error"]["code"]) == (429, "CAPACITY")
        assert client.post("/v1/sessions", json={}, headers=_h("b")).status_code == 201
