"""The env server: any registered environment served over HTTP and WebSocket, one session per client env.

``create_app(settings)`` builds the FastAPI app; ``serve(settings, host, port)`` runs it with uvicorn;
``python -m servers.env_server --help`` (or ``resrl-agent serve env``) starts it from a shell.

Routes (docs/design.md "Serving"): ``POST /v1/sessions`` (env id + kwargs), ``POST /v1/sessions/{id}/reset``,
``POST /v1/sessions/{id}/step`` (action, optional client ``request_id``), ``DELETE /v1/sessions/{id}``,
``POST /v1/sessions:step`` (batched step: 200 with a result or an error object per item), the WebSockets
``/v1/ws`` and ``/v1/sessions/{id}/ws`` (the same operations as messages; served as plain ASGI by ``_Guard``),
``GET /v1/envs``, ``GET /healthz`` and ``GET /metrics`` (Prometheus). Errors are
``{"error": {"code", "message", "hint"?}}`` with the status of ``servers.schemas.ERROR_STATUS``.
A bearer token, when set, guards every route but ``/healthz`` (which then shows only liveness to a caller without
it); with several client tokens each client sees only its own sessions. A bind to anything but loopback without a
token refuses to start (``--insecure-no-auth-on-public-bind`` allows it). See docs/serving.md "Security".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from servers.deps import get_manager
from servers.env_sessions import ANONYMOUS, ApiError, EnvServerSettings, SessionManager
from servers.limits import BodyTooLargeError, capped_body, replaying, serve_asgi
from servers.schemas import (
    BatchStepRequest,
    BatchStepResponse,
    CloseResponse,
    CreateSessionRequest,
    EnvList,
    ErrorResponse,
    Health,
    ResetRequest,
    ResetResult,
    SessionCreated,
    StepRequest,
    StepResult,
    WsRequest,
    error_body,
)
from servers.security import (
    INSECURE_FLAG,
    InsecureBindError,
    bearer_client,
    read_client_tokens,
    resolve_token,
)

__all__ = ["EnvServerSettings", "create_app", "main", "resolve_token", "serve"]

log = logging.getLogger(__name__)

TOKEN_ENV = "RESRL_ENV_SERVER_TOKEN"
CLIENT_KEY = "resrl.client"  # the scope key of the authenticated client's name (None: no valid token)
_JSON = "application/json"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


Pool = Annotated[SessionManager, Depends(get_manager)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


class _Guard:
    """Bearer token on every route but /healthz, the request-size limit (413), and the WebSockets, as plain ASGI.

    The two WebSocket routes are served here, on the connection's own ASGI ``receive``/``send``: a message then
    skips Starlette's ``WebSocket`` wrapper (its state checks) and the exception middleware's send wrapper. Any
    other WebSocket path goes on to the app, which refuses it as before.
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        settings: EnvServerSettings,
        manager: SessionManager,
    ) -> None:
        self.app = app
        self.manager = manager
        self.tokens = settings.bearer_tokens()
        self.limit = settings.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client: str | None = ANONYMOUS
        if self.tokens:
            given = next((value for key, value in scope["headers"] if key == b"authorization"), b"")
            client = bearer_client(given, self.tokens)
        scope[CLIENT_KEY] = client
        if client is None and scope["path"] != "/healthz":
            await _deny(
                scope,
                send,
                401,
                error_body(
                    "UNAUTHORIZED",
                    "missing or wrong bearer token",
                    "send the header 'Authorization: Bearer <token>'",
                ),
            )
            return
        if kind == "websocket":
            bound = _ws_route(scope)
            if bound is _NOT_OURS:
                await self.app(scope, receive, send)
            else:
                await _serve_websocket(receive, send, self.manager, bound, client)  # type: ignore[arg-type]
            return
        # Read the body here (bounded), so a chunked body without content-length is limited too.
        try:
            body = await capped_body(scope, receive, self.limit)
        except BodyTooLargeError as err:
            await _deny(scope, send, 413, _too_large(err.size, self.limit))
            return
        if body is not None:
            await self.app(scope, replaying(receive, body), send)


def _too_large(size: int, limit: int) -> dict[str, Any]:
    return error_body(
        "TOO_LARGE",
        f"request body of {size} bytes is over the limit of {limit}",
        "send smaller actions, or raise max_request_bytes",
    )


async def _deny(scope: Scope, send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": data})
    else:
        await send({"type": "websocket.close", "code": 1008})


def _validation_answer(errors: list[Any], *, json_invalid: bool) -> tuple[int, dict[str, Any]]:
    """400 for a body that is not JSON, 422 for JSON of the wrong shape; the message names the field."""
    hint = "see the OpenAPI document at /openapi.json"
    first = errors[0] if errors else {}
    if json_invalid:
        detail = (first.get("ctx") or {}).get("error", first.get("msg", ""))
        return 400, error_body("BAD_REQUEST", f"body: not valid JSON ({detail})", hint)
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return 422, error_body("BAD_REQUEST", f"{where}: {first.get('msg', 'invalid')}", hint)


def _env_list(manager: SessionManager) -> dict[str, Any]:
    import envs

    listed = []
    for env_id in manager.env_ids:
        cls = envs.env_class(env_id)
        obs = int(getattr(cls, "max_observation_chars", 1 << 20))
        act = int(getattr(cls, "max_action_chars", 1 << 20))
        listed.append(
            {
                "env_id": env_id,
                "observation_space": {"type": "text", "min_length": 0, "max_length": obs},
                "action_space": {"type": "text", "min_length": 0, "max_length": act},
            }
        )
    return {"envs": listed}


def create_app(settings: EnvServerSettings | None = None) -> FastAPI:
    """The env server app; its lifespan starts the worker pool and closes every env on shutdown."""
    settings = settings or EnvServerSettings()
    manager = SessionManager(settings)  # validates the env ids before anything starts

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        log.info("env server: %d %s worker(s), envs %s", settings.workers, settings.isolation, manager.env_ids)
        try:
            yield
        finally:
            await manager.stop()

    app = FastAPI(
        title="resrl-agent env server",
        version="1",
        description="Registered text environments as sessions over HTTP and WebSocket (see docs/serving.md).",
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.settings = settings
    env_cache: dict[str, Any] = {}
    # The step and reset routes use ``manager`` from this closure rather than Depends: dependency resolution
    # costs more per request than the rest of the hot path.

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        manager.count_error(error.code)
        return JSONResponse(error_body(error.code, error.message, error.hint), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = list(error.errors())
        status, body = _validation_answer(errors, json_invalid=any(e.get("type") == "json_invalid" for e in errors))
        manager.count_error("BAD_REQUEST")
        return JSONResponse(body, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "BAD_REQUEST")
        return JSONResponse(error_body(code, str(error.detail)), status_code=error.status_code)

    @app.get("/healthz", response_model=Health, response_model_exclude_none=True, tags=["ops"])
    async def healthz(request: Request) -> dict[str, Any]:
        if request.scope.get(CLIENT_KEY) is None:  # no valid token: liveness only
            return {"status": "ok"}
        return {
            "status": "ok",
            "sessions": len(manager.sessions),
            "workers": len(manager.workers),
            "isolation": settings.isolation,
        }

    @app.get("/metrics", tags=["ops"], response_class=Response, responses={401: {"model": ErrorResponse}})
    async def metrics() -> Response:
        return Response(generate_latest(manager.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/envs", response_model=EnvList, responses=_errors(401), tags=["envs"])
    async def list_envs(pool: Pool) -> dict[str, Any]:
        if "list" not in env_cache:
            env_cache["list"] = _env_list(pool)
        listed: dict[str, Any] = env_cache["list"]
        return listed

    @app.post(
        "/v1/sessions",
        status_code=201,
        response_model=SessionCreated,
        responses=_errors(400, 401, 404, 413, 422, 429, 502, 504),
        tags=["sessions"],
    )
    async def create_session(body: CreateSessionRequest, pool: Pool, request: Request) -> Any:
        return JSONResponse(await pool.create(body.env_id, body.env_kwargs, _client(request)), status_code=201)

    @app.post(
        "/v1/sessions/{session_id}/reset",
        response_model=ResetResult,
        responses=_errors(400, 401, 404, 413, 422, 502, 504),
        tags=["sessions"],
    )
    async def reset(session_id: str, request: Request, body: ResetRequest | None = None) -> Response:
        body = body or ResetRequest()
        return Response(await manager.reset(session_id, body.seed, body.options, _client(request)), media_type=_JSON)

    @app.post(
        "/v1/sessions/{session_id}/step",
        response_model=StepResult,
        responses=_errors(400, 401, 404, 409, 413, 422, 502, 504),
        tags=["sessions"],
    )
    async def step(session_id: str, body: StepRequest, request: Request) -> Response:
        return Response(
            await manager.step(session_id, body.action, body.request_id, _client(request)), media_type=_JSON
        )

    @app.post(
        "/v1/sessions:step",
        response_model=BatchStepResponse,
        responses=_errors(400, 401, 413, 422),
        tags=["sessions"],
    )
    async def step_batch(body: BatchStepRequest, request: Request) -> Response:
        return Response(await manager.step_batch(body.steps, _client(request)), media_type=_JSON)

    @app.delete(
        "/v1/sessions/{session_id}", response_model=CloseResponse, responses=_errors(401, 404), tags=["sessions"]
    )
    async def close(session_id: str, pool: Pool, request: Request) -> dict[str, Any]:
        return {"session_id": session_id, "closed": await pool.close(session_id, _client(request))}

    # The WebSockets /v1/ws and /v1/sessions/{session_id}/ws are served by _Guard (see its docstring).
    app.add_middleware(_Guard, settings=settings, manager=manager)
    return app


def _client(request: Request) -> str:
    client: str | None = request.scope.get(CLIENT_KEY, ANONYMOUS)
    return ANONYMOUS if client is None else client


_NOT_OURS = object()
_SESSION_WS_PREFIX, _WS_SUFFIX = "/v1/sessions/", "/ws"


def _ws_route(scope: Scope) -> object:
    """``None`` for ``/v1/ws``, the session id for ``/v1/sessions/{id}/ws``, else ``_NOT_OURS``."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path == "/v1/ws":
        return None
    if path.startswith(_SESSION_WS_PREFIX) and path.endswith(_WS_SUFFIX):
        session_id = path[len(_SESSION_WS_PREFIX) : -len(_WS_SUFFIX)]
        if session_id and "/" not in session_id:
            return session_id
    return _NOT_OURS


async def _serve_websocket(
    receive: Receive, send: Send, manager: SessionManager, bound: str | None, client: str = ANONYMOUS
) -> None:
    """One message in, one answer out, in order: ``{"id", "result"}`` or ``{"id", "error": {..., "status"}}``."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    limit = manager.settings.max_request_bytes
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":  # websocket.disconnect
            return
        text = message.get("text")
        if text is None:
            text = (message.get("bytes") or b"").decode("utf-8", "replace")
        answer = await _ws_answer(text, manager, bound, limit, client)
        try:
            await send({"type": "websocket.send", "text": answer})
        except OSError:  # the client went away (uvicorn's ClientDisconnected is an OSError)
            return


async def _ws_answer(text: str, manager: SessionManager, bound: str | None, limit: int, client: str) -> str:
    request_id: Any = None
    try:
        if len(text) > limit:
            raise ApiError("TOO_LARGE", f"message of {len(text)} characters is over the limit of {limit}")
        try:
            request = WsRequest.model_validate_json(text)
        except ValidationError as error:
            errors = list(error.errors())
            status, body = _validation_answer(errors, json_invalid=any(e["type"] == "json_invalid" for e in errors))
            raise ApiError("BAD_REQUEST", body["error"]["message"], body["error"].get("hint"), status) from None
        request_id = request.id
        payload = await _ws_dispatch(request, manager, bound, client)
    except ApiError as error:
        manager.count_error(error.code)
        body = error_body(error.code, error.message, error.hint)
        body["error"]["status"] = error.status
        body["id"] = request_id
        return json.dumps(body)
    if request_id is None:
        return '{"id":null,"result":' + payload + "}"
    return '{"id":' + json.dumps(request_id) + ',"result":' + payload + "}"


async def _ws_dispatch(request: WsRequest, manager: SessionManager, bound: str | None, client: str) -> str:
    op = request.op
    session_id = request.session_id or bound
    if op == "step_batch":
        return (await manager.step_batch(request.steps or [], client)).decode()
    if op == "create":
        if request.env_id is None:
            raise ApiError("BAD_REQUEST", "env_id: required for op 'create'", status=422)
        return json.dumps(await manager.create(request.env_id, request.env_kwargs or {}, client))
    if session_id is None:
        raise ApiError("BAD_REQUEST", f"session_id: required for op {op!r} on /v1/ws", status=422)
    if op == "step":
        if request.action is None:
            raise ApiError("BAD_REQUEST", "action: required for op 'step'", status=422)
        return (await manager.step(session_id, request.action, request.request_id, client)).decode()
    if op == "reset":
        return (await manager.reset(session_id, request.seed, request.options, client)).decode()
    return json.dumps({"session_id": session_id, "closed": await manager.close(session_id, client)})


def serve(settings: EnvServerSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the server in the foreground until SIGINT/SIGTERM, then close every env.

    Raises :class:`~servers.security.InsecureBindError` (a ValueError) before binding a non-loopback ``host``
    without a token, unless ``settings.insecure_no_auth_on_public_bind``.
    """
    serve_asgi(
        lambda: create_app(settings),
        settings,
        host,
        port,
        server="env server",
        log_level=log_level,
        ws_max_size=max(settings.max_request_bytes * 2, 1 << 16),
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servers.env_server", description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="", help="comma-separated env ids (default: every registered id)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: the CPUs this process may run on)"
    )
    parser.add_argument("--isolation", choices=["process", "thread"], default="process")
    parser.add_argument("--max-sessions", type=int, default=1024)
    parser.add_argument("--session-ttl-s", type=float, default=600.0)
    parser.add_argument("--step-timeout-s", type=float, default=30.0)
    parser.add_argument(
        "--token-file", default=None, help=f"bearer token file (else the env var {TOKEN_ENV}, else {TOKEN_ENV}_FILE)"
    )
    parser.add_argument(
        "--client-tokens-file", default=None, help="'<client> <token>' lines: each client owns its sessions"
    )
    parser.add_argument("--max-sessions-per-client", type=int, default=None, help="sessions one token may hold")
    parser.add_argument(
        INSECURE_FLAG, dest="insecure", action="store_true", help="allow a non-loopback bind without a token"
    )
    parser.add_argument("--test-knobs", action="store_true", help="allow fault-injection env kwargs (tests only)")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {
        "envs": [e for e in args.envs.split(",") if e] or None,
        "isolation": args.isolation,
        "max_sessions": args.max_sessions,
        "session_ttl_s": args.session_ttl_s,
        "step_timeout_s": args.step_timeout_s,
        "token": resolve_token(token_file=args.token_file),
        "test_knobs": args.test_knobs,
        "max_sessions_per_client": args.max_sessions_per_client,
        "client_tokens": read_client_tokens(args.client_tokens_file) if args.client_tokens_file else {},
        "insecure_no_auth_on_public_bind": args.insecure,
    }
    if args.workers is not None:
        options["workers"] = args.workers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(EnvServerSettings(**options), args.host, args.port)
    except InsecureBindError as error:
        parser.error(str(error))


if __name__ == "__main__":  # pragma: no cover
    main()
