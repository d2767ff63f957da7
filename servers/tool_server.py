"""Tools served over HTTP (FastAPI) and MCP: the BFCL-compatible backends plus ``python_exec``.

HTTP (``create_app(settings)``): ``GET /healthz``; ``GET /v1/tools?classes=A,B`` lists tool schemas (OpenAI
format); ``POST /v1/sessions`` creates a session with its own backend state (``classes``, ``initial_config``,
``long_context``); ``POST /v1/sessions/{id}/call`` runs one tool (``{"name", "arguments"}``) and returns
``{"name", "content", "error"}`` (a failing tool is a 200 with ``error`` set: it is the model's observation);
``GET /v1/sessions/{id}/state``; ``DELETE /v1/sessions/{id}``. Errors are ``{"error": {"code", "message",
"hint"?}}`` with the env server's codes: 400/422 BAD_REQUEST, 401 UNAUTHORIZED, 404 SESSION_NOT_FOUND,
413 TOO_LARGE, 429 CAPACITY. Sessions expire after ``session_ttl_s`` idle seconds.

MCP (``create_mcp_server(...)``, ``python -m servers.tool_server mcp-stdio --classes A,B``): one session per
connection; ``tools/list`` and ``tools/call`` with the same tools and results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import mcp.types as mcp_types
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mcp.server.lowlevel import Server
from pydantic import BaseModel, ConfigDict, Field

from tools import ToolRegistry, ToolResult
from tools.bfcl import BACKEND_CLASSES, BFCLSession, openai_tools
from tools.python_exec import python_exec

__all__ = ["ToolServerSettings", "ToolSession", "create_app", "create_mcp_server", "main"]


class ToolServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_sessions: int = 256
    session_ttl_s: float = 900.0
    max_request_bytes: int = 1_000_000
    token: str | None = None
    enable_python_exec: bool = True


class ToolSession:
    """One client's tools: BFCL backends for the chosen classes (own state) plus the generic tools."""

    def __init__(
        self,
        classes: list[str],
        initial_config: dict[str, Any] | None = None,
        *,
        long_context: bool = False,
        enable_python_exec: bool = True,
    ) -> None:
        unknown = [name for name in classes if name not in BACKEND_CLASSES]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; known: {sorted(BACKEND_CLASSES)}")
        self.bfcl = BFCLSession(initial_config or {}, classes, long_context=long_context)
        self.registry = ToolRegistry()
        if enable_python_exec:
            self.registry.register(python_exec)
        self.last_used = time.monotonic()

    def schemas(self) -> list[dict[str, Any]]:
        bfcl = [tool for name in self.bfcl.involved_classes for tool in openai_tools(name)]
        return [*bfcl, *self.registry.schemas()]

    def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        self.last_used = time.monotonic()
        if name in self.registry:
            return self.registry.call(name, arguments)
        if name not in self.bfcl.function_names:
            known = ", ".join([*self.bfcl.function_names, *self.registry.names()])
            return ToolResult.failure(name, "unknown_tool", f"unknown tool '{name}'; available tools: {known}")
        content = self.bfcl.call(name, [], arguments)
        error = {"code": "tool_failed", "message": content} if content.startswith("Error during execution") else None
        return ToolResult(name=name, content=content, error=error)


def tool_schemas(classes: list[str], *, enable_python_exec: bool = True) -> list[dict[str, Any]]:
    return ToolSession(classes, enable_python_exec=enable_python_exec).schemas()


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[str] = Field(default_factory=list)
    initial_config: dict[str, Any] = Field(default_factory=dict)
    long_context: bool = False


class CallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.hint = status, code, message, hint


def _error_body(code: str, message: str, hint: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if hint:
        error["hint"] = hint
    return {"error": error}


@dataclass
class _Store:
    settings: ToolServerSettings
    sessions: dict[str, ToolSession] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            for key in [k for k, s in self.sessions.items() if now - s.last_used > self.settings.session_ttl_s]:
                del self.sessions[key]

    def get(self, session_id: str) -> ToolSession:
        self.expire()
        session = self.sessions.get(session_id)
        if session is None:
            raise ApiError(
                404,
                "SESSION_NOT_FOUND",
                f"no tool session {session_id!r}",
                "create one with POST /v1/sessions; idle sessions expire",
            )
        return session


def create_app(settings: ToolServerSettings | None = None) -> FastAPI:
    """The HTTP tool server (see the module docstring)."""
    settings = settings or ToolServerSettings()
    store = _Store(settings)
    app = FastAPI(title="resrl-agent tool server")
    app.state.store = store

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(exc.code, exc.message, exc.hint), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            _error_body("BAD_REQUEST", f"invalid request at {where}: {first.get('msg', '')}"), status_code=422
        )

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        if request.url.path != "/healthz" and settings.token is not None:
            expected = f"Bearer {settings.token}"
            if not secrets.compare_digest(request.headers.get("authorization", ""), expected):
                return JSONResponse(_error_body("UNAUTHORIZED", "missing or wrong bearer token"), status_code=401)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
            return JSONResponse(
                _error_body("TOO_LARGE", f"request body over {settings.max_request_bytes} bytes"), status_code=413
            )
        return await call_next(request)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "sessions": len(store.sessions)}

    @app.get("/v1/tools")
    async def list_tools(classes: str = "") -> dict[str, Any]:
        names = [name for name in classes.split(",") if name]
        try:
            return {"tools": tool_schemas(names, enable_python_exec=settings.enable_python_exec)}
        except ValueError as exc:
            raise ApiError(400, "BAD_REQUEST", str(exc)) from None

    @app.post("/v1/sessions", status_code=201)
    async def create_session(body: CreateSession) -> dict[str, Any]:
        store.expire()
        if len(store.sessions) >= settings.max_sessions:
            raise ApiError(
                429,
                "CAPACITY",
                f"the server holds {settings.max_sessions} sessions",
                "delete finished sessions or retry later",
            )
        try:
            session = ToolSession(
                body.classes,
                body.initial_config,
                long_context=body.long_context,
                enable_python_exec=settings.enable_python_exec,
            )
        except ValueError as exc:
            raise ApiError(400, "BAD_REQUEST", str(exc)) from None
        session_id = secrets.token_hex(8)
        with store.lock:
            store.sessions[session_id] = session
        return {"session_id": session_id, "tools": session.schemas()}

    @app.post("/v1/sessions/{session_id}/call")
    async def call_tool(session_id: str, body: CallRequest) -> dict[str, Any]:
        session = store.get(session_id)
        # python_exec blocks for up to its time limit: keep the event loop free.
        result = await asyncio.to_thread(session.call, body.name, body.arguments)
        return result.to_dict()

    @app.get("/v1/sessions/{session_id}/state")
    async def get_state(session_id: str) -> dict[str, Any]:
        return {"state": store.get(session_id).bfcl.state()}

    @app.delete("/v1/sessions/{session_id}")
    async def delete_session(session_id: str) -> dict[str, Any]:
        store.get(session_id)
        with store.lock:
            store.sessions.pop(session_id, None)
        return {"deleted": session_id}

    return app


def create_mcp_server(session: ToolSession, *, name: str = "resrl-tools") -> Server[Any]:
    """An MCP server exposing one session's tools (``tools/list``, ``tools/call``)."""

    async def on_list_tools(_ctx: Any, _params: Any) -> mcp_types.ListToolsResult:
        tools = [
            mcp_types.Tool(
                name=s["function"]["name"],
                description=s["function"]["description"],
                inputSchema=s["function"]["parameters"],
            )
            for s in session.schemas()
        ]
        return mcp_types.ListToolsResult(tools=tools)

    async def on_call_tool(_ctx: Any, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        result = await asyncio.to_thread(session.call, params.name, dict(params.arguments or {}))
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text=result.content)], isError=not result.ok
        )

    return Server(name, on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_mcp_stdio(session: ToolSession) -> None:
    from mcp.server.stdio import stdio_server

    server = create_mcp_server(session)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main(argv: list[str] | None = None) -> None:
    """``python -m servers.tool_server http --port 8100`` or ``... mcp-stdio --classes MathAPI``."""
    parser = argparse.ArgumentParser(prog="python -m servers.tool_server")
    sub = parser.add_subparsers(dest="mode", required=True)
    http = sub.add_parser("http")
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, default=8100)
    stdio = sub.add_parser("mcp-stdio")
    stdio.add_argument("--classes", default="")
    stdio.add_argument("--initial-config", default="{}", help="JSON object: class name -> config")
    stdio.add_argument("--no-python-exec", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "http":
        import uvicorn

        uvicorn.run(create_app(), host=args.host, port=args.port)
        return
    classes = [name for name in args.classes.split(",") if name]
    session = ToolSession(classes, json.loads(args.initial_config), enable_python_exec=not args.no_python_exec)
    asyncio.run(serve_mcp_stdio(session))


if __name__ == "__main__":
    main()
