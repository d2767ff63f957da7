"""Tool server: HTTP sessions with their own backend state (real uvicorn + ToolClient) and MCP over stdio
(the ``mcp`` package's own client against a running server process)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tool_servers import serving

from servers.tool_client import ToolClient, ToolServerError
from servers.tool_server import ToolServerSettings

REPO = Path(__file__).resolve().parents[2]
FS_CONFIG = {"root": {"home": {"type": "directory", "contents": {"a.txt": {"type": "file", "content": "x\ny"}}}}}


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serving(ToolServerSettings(max_sessions=3, token="s3cret")) as url:
        yield url


def test_http_sessions_keep_their_own_state(server_url: str) -> None:
    with ToolClient(server_url, token="s3cret") as first, ToolClient(server_url, token="s3cret") as second:
        names = [t["function"]["name"] for t in first.list_tools(["MathAPI"])]
        assert "add" in names and "python_exec" in names and len(names) == 18
        first.create_session(["GorillaFileSystem"], {"GorillaFileSystem": FS_CONFIG})
        second.create_session(["GorillaFileSystem"], {"GorillaFileSystem": FS_CONFIG})
        assert first.call("touch", {"file_name": "b.txt"}) == {"name": "touch", "content": "None", "error": None}
        assert first.call("ls")["content"] == '{"current_directory_content": ["a.txt", "b.txt"]}'
        assert second.call("ls")["content"] == '{"current_directory_content": ["a.txt"]}'
        assert first.call("wc", {"file_name": "a.txt", "mode": "l"})["content"] == '{"count": 2, "type": "lines"}'
        bad = first.call("cd", {"path": "x"})
        assert bad["error"]["code"] == "tool_failed" and "unexpected keyword argument 'path'" in bad["content"]
        assert first.call("fly", {})["error"]["code"] == "unknown_tool"
        assert first.call("python_exec", {"code": "print(2**10)"})["content"] == "1024"
        root = first.state()["GorillaFileSystem"]["root"]
        assert list(root["contents"]) == ["a.txt", "b.txt"]
        first.close_session()
        with pytest.raises(ToolServerError) as missing:
            first.call("ls")
        assert missing.value.code == "BAD_REQUEST"


def test_http_errors_have_the_shared_shape(server_url: str) -> None:
    with ToolClient(server_url) as anonymous, pytest.raises(ToolServerError) as denied:
        anonymous.list_tools()
    assert (denied.value.status, denied.value.code) == (401, "UNAUTHORIZED")
    with ToolClient(server_url, token="s3cret") as client:
        with pytest.raises(ToolServerError) as unknown:
            client.create_session(["NoSuchAPI"])
        assert (unknown.value.status, unknown.value.code) == (400, "BAD_REQUEST")
        client.session_id = "deadbeef"
        with pytest.raises(ToolServerError) as gone:
            client.call("ls")
        assert (gone.value.status, gone.value.code) == (404, "SESSION_NOT_FOUND")
        held = [ToolClient(server_url, token="s3cret") for _ in range(4)]
        with pytest.raises(ToolServerError) as full:
            for other in held:
                other.create_session(["MathAPI"])
        assert (full.value.status, full.value.code) == (429, "CAPACITY")
        for other in held:
            other.close_session()
            other.close()


def test_mcp_client_lists_and_calls_tools_of_a_running_server() -> None:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "servers.tool_server", "mcp-stdio", "--classes", "MathAPI,TicketAPI"],
        cwd=str(REPO),
    )

    async def scenario() -> tuple[list[str], str, bool, str, bool]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            added = await session.call_tool("add", {"a": 2, "b": 40})
            login = await session.call_tool("ticket_login", {"username": "u", "password": "p"})
            ticket = await session.call_tool("create_ticket", {"title": "VPN down"})
            wrong = await session.call_tool("add", {"a": 1})
            assert login.content[0].text == '{"success": true}'
            return (
                [t.name for t in listed.tools],
                added.content[0].text,
                added.is_error,
                ticket.content[0].text,
                wrong.is_error,
            )

    names, added, added_error, ticket, wrong_error = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert len(names) == 17 + 9 + 1 and "add" in names and "create_ticket" in names and "python_exec" in names
    assert (added, added_error) == ('{"result": 42}', False)
    assert ticket == (
        '{"id": 1, "title": "VPN down", "description": "", "status": "Open", "priority": 1, "created_by": "u"}'
    )
    assert wrong_error
