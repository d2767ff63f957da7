"""Tools served over HTTP (FastAPI) and MCP: the BFCL-compatible backends plus ``python_exec``.

HTTP (``create_app(settings)``): ``GET /healthz``; ``GET /v1/tools?classes=A,B`` lists tool schemas (OpenAI
format); ``POST /v1/sessions`` creates a session with its own backend state (``classes``, ``initial_config``,
``long_context``); ``POST /v1/sessions/{id}/call`` runs one tool (``{"name", "arguments"}``) and returns
``{"name", "content", "error"}`` (a failing tool is a 200 with ``error`` set: it is the model's observation);
``GET /v1/sessions/{id}/state``; ``DELETE /v1/sessions/{id}``. Errors are ``{"error": {"code", "message",
"hint"?}}`` with the env server's codes: 400/422 BAD_REQUEST, 401 UNAUTHORIZED, 404 SESSION_NOT_FOUND,
413 TOO_LARGE, 429 CAPACITY. Sessions expire after ``session_ttl_s`` idle seconds.

MCP (``create_mcp_server(...)``, ``python -m servers.tool_server mcp-stdio --classes A,B``): one session per
connection; ``tools/list`` and ``tools/call`` with the same tools and results (a failed call is ``isError: true``);
a line that is not a JSON-RPC message gets a JSON-RPC error (-32700 parse error, -32600 invalid request).

Guards (docs/serving.md "Security"): a bearer token (``--token-file`` or ``RESRL_TOOL_SERVER_TOKEN``; several
client tokens: each client sees only its own sessions) on every route but ``/healthz`` (which then shows only
liveness); a bind to anything but loopback without a token refuses to start (``--insecure-no-auth-on-public-bind``
allows it); a body cap that counts the bytes read, chunked bodies too; long tools (``python_exec``) run on their
own bounded pool so they cannot starve the short ones; uvicorn's connection cap and head/keep-alive timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp.types as mcp_types
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mcp.server.lowlevel import Server
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servers.limits import BodyTooLargeError, capped_body, replaying, serve_asgi
from servers.security import (
    INSECURE_FLAG,
    InsecureBindError,
    ServingSettings,
    bearer_client,
    read_client_tokens,
    resolve_token,
)
from tools import ToolRegistry, ToolResult
from tools.bfcl import BACKEND_CLASSES, BFCLSession, openai_tools
from tools.python_exec import python_exec

__all__ = [
    "LONG_TOOLS",
    "TOKEN_ENV",
    "ToolServerSettings",
    "ToolSession",
    "create_app",
    "create_mcp_server",
    "main",
    "serve_http",
]

log = logging.getLogger(__name__)

TOKEN_ENV = "RESRL_TOOL_SERVER_TOKEN"
LONG_TOOLS = frozenset({"python_exec"})  # tools that may run for seconds: on their own pool
_CLIENT_KEY = "resrl.client"
_ANONYMOUS = ""
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ToolServerSettings(ServingSettings):
    """The tool server's settings; the tokens and the connection and body limits are
    :class:`~servers.security.ServingSettings`'."""

    max_sessions: int = Field(default=256, ge=1)
    session_ttl_s: float = Field(default=900.0, gt=0)
    enable_python_exec: bool = True
    tool_threads: int = Field(default=8, ge=1, description="threads for short tools (the BFCL backends)")
    long_tool_threads: int = Field(default=2, ge=1, description="threads for long tools (python_exec)")


class _Pools:
    """Short tools and long tools on separate bounded thread pools (a python_exec storm leaves BFCL calls alone)."""

    def __init__(self, short: int, long: int) -> None:
        self.short = ThreadPoolExecutor(short, thread_name_prefix="resrl-tool")
        self.long = ThreadPoolExecutor(long, thread_name_prefix="resrl-tool-long")

    async def call(self, session: ToolSession, name: str, arguments: dict[str, Any]) -> ToolResult:
        pool = self.long if name in LONG_TOOLS else self.short
        return await asyncio.get_running_loop().run_in_executor(pool, session.call, name, arguments)


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
        try:
            self.bfcl = BFCLSession(initial_config or {}, classes, long_context=long_context)
        except Exception as error:  # a backend that refuses its config, whatever it raises: the client's fault
            raise ValueError(f"initial_config refused: {type(error).__name__}: {error}") from None
        self.registry = ToolRegistry()
        if enable_python_exec:
            self.registry.register(python_exec)
        self.last_used = time.monotonic()
        self.owner = _ANONYMOUS

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

    def get(self, session_id: str, owner: str) -> ToolSession:
        self.expire()
        session = self.sessions.get(session_id)
        if session is None or session.owner != owner:  # another client's session: not found, not forbidden
            raise ApiError(
                404,
                "SESSION_NOT_FOUND",
                f"no tool session {session_id!r}",
                "create one with POST /v1/sessions; idle sessions expire",
            )
        return session


class _Guard:
    """Plain ASGI: the bearer token (every route but /healthz) and the body cap, counting the bytes read."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], settings: ToolServerSettings) -> None:
        self.app = app
        self.tokens = settings.bearer_tokens()
        self.limit = settings.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client: str | None = _ANONYMOUS
        if self.tokens:
            given = next((value for key, value in scope["headers"] if key == b"authorization"), b"")
            client = bearer_client(given, self.tokens)
        scope[_CLIENT_KEY] = client
        if client is None and scope["path"] != "/healthz":
            body = _error_body("UNAUTHORIZED", "missing or wrong bearer token", "send 'Authorization: Bearer <token>'")
            await _answer(send, 401, body)
            return
        try:  # the whole body, bounded: a chunked body has no content-length to check
            body = await capped_body(scope, receive, self.limit)
        except BodyTooLargeError as err:
            await _answer(send, 413, _too_large(err.size, self.limit))
            return
        if body is not None:
            await self.app(scope, replaying(receive, body), send)


def _too_large(size: int, limit: int) -> dict[str, Any]:
    return _error_body("TOO_LARGE", f"request body of {size}+ bytes is over the limit of {limit}")


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _client(request: Request) -> str:
    client: str | None = request.scope.get(_CLIENT_KEY, _ANONYMOUS)
    return _ANONYMOUS if client is None else client


def create_app(settings: ToolServerSettings | None = None) -> FastAPI:
    """The HTTP tool server (see the module docstring)."""
    settings = settings or ToolServerSettings()
    store = _Store(settings)
    pools = _Pools(settings.tool_threads, settings.long_tool_threads)
    app = FastAPI(title="resrl-agent tool server")
    app.state.store = store

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(exc.code, exc.message, exc.hint), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        status = 400 if first.get("type") == "json_invalid" else 422
        return JSONResponse(
            _error_body("BAD_REQUEST", f"invalid request at {where}: {first.get('msg', '')}"), status_code=status
        )

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("tool server: unhandled %s", type(exc).__name__)
        return JSONResponse(_error_body("INTERNAL", "the tool server failed on this request"), status_code=500)

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        if request.scope.get(_CLIENT_KEY) is None:  # no valid token: liveness only
            return {"status": "ok"}
        return {"status": "ok", "sessions": len(store.sessions)}

    @app.get("/v1/tools")
    async def list_tools(classes: str = "") -> dict[str, Any]:
        names = [name for name in classes.split(",") if name]
        try:
            return {"tools": tool_schemas(names, enable_python_exec=settings.enable_python_exec)}
        except ValueError as exc:
            raise ApiError(400, "BAD_REQUEST", str(exc)) from None

    @app.post("/v1/sessions", status_code=201)
    async def create_session(body: CreateSession, request: Request) -> dict[str, Any]:
        owner = _client(request)
        store.expire()
        if len(store.sessions) >= settings.max_sessions:
            raise ApiError(
                429,
                "CAPACITY",
                f"the server holds {settings.max_sessions} sessions",
                "delete finished sessions or retry later",
            )
        quota = settings.max_sessions_per_client
        if quota is not None and sum(1 for s in store.sessions.values() if s.owner == owner) >= quota:
            raise ApiError(429, "CAPACITY", f"this client holds its quota of {quota} sessions", "delete some")
        try:
            session = ToolSession(
                body.classes,
                body.initial_config,
                long_context=body.long_context,
                enable_python_exec=settings.enable_python_exec,
            )
        except ValueError as exc:
            raise ApiError(400, "BAD_REQUEST", str(exc)) from None
        session.owner = owner
        session_id = secrets.token_hex(12)
        with store.lock:
            store.sessions[session_id] = session
        return {"session_id": session_id, "tools": session.schemas()}

    @app.post("/v1/sessions/{session_id}/call")
    async def call_tool(session_id: str, body: CallRequest, request: Request) -> dict[str, Any]:
        session = store.get(session_id, _client(request))
        # tools block (python_exec for up to its time limit): keep the event loop free
        result = await pools.call(session, body.name, body.arguments)
        return result.to_dict()

    @app.get("/v1/sessions/{session_id}/state")
    async def get_state(session_id: str, request: Request) -> dict[str, Any]:
        return {"state": store.get(session_id, _client(request)).bfcl.state()}

    @app.delete("/v1/sessions/{session_id}")
    async def delete_session(session_id: str, request: Request) -> dict[str, Any]:
        store.get(session_id, _client(request))
        with store.lock:
            store.sessions.pop(session_id, None)
        return {"deleted": session_id}

    app.add_middleware(_Guard, settings=settings)
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

    pools = _Pools(4, 2)

    async def on_call_tool(_ctx: Any, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        result = await pools.call(session, params.name, dict(params.arguments or {}))
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text=result.content)], isError=not result.ok
        )

    return Server(name, on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_mcp_stdio(session: ToolSession) -> None:
    from mcp.server.stdio import stdio_server
    from mcp.shared.message import SessionMessage

    server = create_mcp_server(session)
    async with stdio_server() as (read_stream, write_stream):
        # The transport hands a line that is not a JSON-RPC message on as an exception, which the server drops
        # without a word: answer each with a JSON-RPC error instead, and pass the messages on.
        passed, received = anyio.create_memory_object_stream[Any](0)

        async def pump() -> None:
            async with passed:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(SessionMessage(mcp_line_error(item)))
                    else:
                        await passed.send(item)

        async with anyio.create_task_group() as group:
            group.start_soon(pump)
            await server.run(received, write_stream, server.create_initialization_options())
            group.cancel_scope.cancel()


def mcp_line_error(error: Exception) -> mcp_types.JSONRPCError:
    """The JSON-RPC error for a line that is not a JSON-RPC message: -32700 (not JSON) or -32600 (not a message)."""
    not_json = isinstance(error, ValidationError) and any(e.get("type") == "json_invalid" for e in error.errors())
    if not_json:
        data = mcp_types.ErrorData(code=-32700, message="Parse error: the line is not JSON")
    else:
        data = mcp_types.ErrorData(
            code=-32600, message="Invalid Request: one JSON-RPC 2.0 request, notification or response per line"
        )
    return mcp_types.JSONRPCError(jsonrpc="2.0", id=None, error=data)


def serve_http(settings: ToolServerSettings, host: str = "127.0.0.1", port: int = 8100) -> None:
    """Run the HTTP tool server; refuses a non-loopback bind without a token (InsecureBindError, a ValueError)."""
    serve_asgi(lambda: create_app(settings), settings, host, port, server="tool server")


def main(argv: list[str] | None = None) -> None:
    """``python -m servers.tool_server http --port 8100`` or ``... mcp-stdio --classes MathAPI``."""
    parser = argparse.ArgumentParser(prog="python -m servers.tool_server")
    sub = parser.add_subparsers(dest="mode", required=True)
    http = sub.add_parser("http")
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, default=8100)
    http.add_argument("--token-file", default=None, help=f"bearer token file (else the env var {TOKEN_ENV})")
    http.add_argument("--client-tokens-file", default=None, help="'<client> <token>' lines")
    http.add_argument("--max-sessions-per-client", type=int, default=None)
    http.add_argument("--no-python-exec", action="store_true")
    http.add_argument(
        INSECURE_FLAG, dest="insecure", action="store_true", help="allow a non-loopback bind without a token"
    )
    stdio = sub.add_parser("mcp-stdio")
    stdio.add_argument("--classes", default="")
    stdio.add_argument("--initial-config", default="{}", help="JSON object: class name -> config")
    stdio.add_argument("--no-python-exec", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "http":
        settings = ToolServerSettings(
            token=resolve_token(token_file=args.token_file, env=TOKEN_ENV),
            max_sessions_per_client=args.max_sessions_per_client,
            client_tokens=read_client_tokens(args.client_tokens_file) if args.client_tokens_file else {},
            enable_python_exec=not args.no_python_exec,
            insecure_no_auth_on_public_bind=args.insecure,
        )
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        try:
            serve_http(settings, args.host, args.port)
        except InsecureBindError as error:
            parser.error(str(error))
        return
    classes = [name for name in args.classes.split(",") if name]
    session = ToolSession(classes, json.loads(args.initial_config), enable_python_exec=not args.no_python_exec)
    asyncio.run(serve_mcp_stdio(session))


if __name__ == "__main__":
    main()
