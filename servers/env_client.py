"""Client of the env server: :class:`RemoteEnv` is a ``gymnasium.Env``, so a remote env is used like a local one.

``RemoteEnv(url, env_id, **kwargs)`` creates a session for ``env_id`` with the env's constructor ``kwargs``;
``reset``/``step``/``close`` go over HTTP (httpx) or, with ``transport="websocket"``, over the session's
WebSocket (less overhead per step). Connection errors are retried with exponential backoff; every step carries
a client request id, so a retried step is answered from the server's store instead of stepping twice. Error
answers raise :class:`EnvServerError` subclasses carrying the server's code; they are ``EnvError``s, so the
rollout loop handles a remote failure as it handles a local one.

:class:`EnvClient` is the session-agnostic HTTP client underneath (``step_batch`` steps many sessions in one
round trip).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import gymnasium as gym
import httpx

from envs.base import EnvError, TextSpace

__all__ = [
    "BadRequestError",
    "CapacityError",
    "EnvClient",
    "EnvCrashedError",
    "EnvNotFoundError",
    "EnvServerError",
    "EpisodeDoneError",
    "RemoteEnv",
    "SessionNotFoundError",
    "StepTimeoutError",
    "TooLargeError",
    "UnauthorizedError",
]

T = TypeVar("T")


class EnvServerError(EnvError):
    """An error answer of the env server: HTTP ``status``, ``code`` (e.g. ``ENV_CRASHED``), message, hint."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}", hint=hint)
        self.status, self.code, self.server_message = status, code, message


class BadRequestError(EnvServerError): ...


class UnauthorizedError(EnvServerError): ...


class SessionNotFoundError(EnvServerError): ...


class EnvNotFoundError(EnvServerError): ...


class EpisodeDoneError(EnvServerError): ...


class TooLargeError(EnvServerError): ...


class CapacityError(EnvServerError): ...


class EnvCrashedError(EnvServerError): ...


class StepTimeoutError(EnvServerError): ...


_BY_CODE: dict[str, type[EnvServerError]] = {
    "BAD_REQUEST": BadRequestError,
    "UNAUTHORIZED": UnauthorizedError,
    "SESSION_NOT_FOUND": SessionNotFoundError,
    "ENV_NOT_FOUND": EnvNotFoundError,
    "EPISODE_DONE": EpisodeDoneError,
    "TOO_LARGE": TooLargeError,
    "CAPACITY": CapacityError,
    "ENV_CRASHED": EnvCrashedError,
    "STEP_TIMEOUT": StepTimeoutError,
}


def server_error(status: int, error: dict[str, Any]) -> EnvServerError:
    """The typed exception for an ``{"code", "message", "hint"?}`` error object."""
    code = str(error.get("code", "HTTP_ERROR"))
    return _BY_CODE.get(code, EnvServerError)(status, code, str(error.get("message", "")), error.get("hint"))


# Errors after which the request may not have reached the server, or its answer was lost: safe to retry
# (steps carry a request id; reset and close are idempotent in effect).
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
# Errors after which the request surely never reached the server: the only safe retries for a create, which has no
# request id (a lost answer to a create that did happen would otherwise leave an orphan session holding capacity).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


def _with_retries(call: Callable[[], T], retries: int, backoff_s: float, retry_on: tuple[type[Exception], ...]) -> T:
    for attempt in itertools.count():
        try:
            return call()
        except retry_on:
            if attempt >= retries:
                raise
            time.sleep(backoff_s * (2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


class EnvClient:
    """HTTP client of the env server, not bound to a session."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        retry_on: tuple[type[Exception], ...] = _RETRYABLE,
    ) -> Any:
        content = None if body is None else json.dumps(body).encode()
        headers = None if body is None else {"content-type": "application/json"}

        def send() -> httpx.Response:
            return self._http.request(method, path, content=content, headers=headers)

        response = _with_retries(send, self.retries, self.backoff_s, retry_on)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "HTTP_ERROR", "message": response.text[:300]}
            raise server_error(response.status_code, error)
        return response.json()

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.request("GET", "/healthz")
        return answer

    def list_envs(self) -> list[dict[str, Any]]:
        envs: list[dict[str, Any]] = self.request("GET", "/v1/envs")["envs"]
        return envs

    def create_session(self, env_id: str, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        created: dict[str, Any] = self.request(
            "POST", "/v1/sessions", {"env_id": env_id, "kwargs": kwargs or {}}, retry_on=_NOT_SENT
        )
        return created

    def reset(self, session_id: str, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = self.request(
            "POST", f"/v1/sessions/{session_id}/reset", {"seed": seed, "options": options}
        )
        return answer

    def step(self, session_id: str, action: str, request_id: str | None = None) -> dict[str, Any]:
        body = {"action": action, "request_id": request_id or uuid.uuid4().hex}
        answer: dict[str, Any] = self.request("POST", f"/v1/sessions/{session_id}/step", body)
        return answer

    def step_batch(self, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``steps``: ``[{"session_id", "action", "request_id"?}]``; per item ``{"session_id", "result"|"error"}``."""
        results: list[dict[str, Any]] = self.request("POST", "/v1/sessions:step", {"steps": steps})["results"]
        return results

    def close_session(self, session_id: str) -> bool:
        return bool(self.request("DELETE", f"/v1/sessions/{session_id}")["closed"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EnvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SessionSocket:
    """The session's WebSocket: one JSON message out, one answer in; reconnects on a dropped connection."""

    def __init__(self, client: EnvClient, session_id: str) -> None:
        self.client = client
        self.url = client.url.replace("http", "ws", 1) + f"/v1/sessions/{session_id}/ws"
        self._socket: Any = None
        self._ids = itertools.count()

    def _connect(self) -> Any:
        from websockets.sync.client import connect

        headers = {"authorization": f"Bearer {self.client.token}"} if self.client.token else None
        opened = connect(self.url, additional_headers=headers, open_timeout=self.client.timeout, max_size=None)
        return opened.__enter__()  # the connection itself (closed by close()), as websockets >= 17.1 wants

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        message["id"] = next(self._ids)
        text = json.dumps(message)

        def send() -> str:
            if self._socket is None:
                self._socket = self._connect()
            try:
                self._socket.send(text)
                answer: str = self._socket.recv(timeout=self.client.timeout)
            except (ConnectionClosed, OSError):
                self._socket = None
                raise
            return answer

        try:
            answer = json.loads(
                _with_retries(send, self.client.retries, self.client.backoff_s, (ConnectionClosed, OSError))
            )
        except InvalidStatus as refused:
            response = refused.response
            try:
                error = json.loads(response.body or b"{}")["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "HTTP_ERROR", "message": f"WebSocket refused with HTTP {response.status_code}"}
            raise server_error(response.status_code, error) from None
        if "error" in answer:
            error = answer["error"]
            raise server_error(int(error.get("status", 500)), error)
        result: dict[str, Any] = answer["result"]
        return result

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class RemoteEnv(gym.Env[str, str]):
    """A session on an env server, used exactly like the local env (see the module docstring)."""

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012 - gymnasium reads it as a class attribute

    def __init__(
        self,
        url: str,
        env_id: str,
        *,
        transport: str = "http",
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        render_mode: str | None = None,
        http_transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        if transport not in ("http", "websocket"):
            raise ValueError(f"transport={transport!r}: choose 'http' or 'websocket'")
        self.env_id = env_id
        self.transport = transport
        self.render_mode = render_mode
        self.client = EnvClient(
            url, token=token, timeout=timeout, retries=retries, backoff_s=backoff_s, transport=http_transport
        )
        try:
            created = self.client.create_session(env_id, kwargs)
        except BaseException:
            self.client.close()
            raise
        self.session_id: str = created["session_id"]
        self.observation_space = _text_space(created["observation_space"])
        self.action_space = _text_space(created["action_space"])
        self._socket = _SessionSocket(self.client, self.session_id) if transport == "websocket" else None
        self._last_observation = ""
        self._closed = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        if self._socket is not None:
            answer = self._socket.call({"op": "reset", "seed": seed, "options": options})
        else:
            answer = self.client.reset(self.session_id, seed, options)
        self._last_observation = answer["observation"]
        return answer["observation"], answer["info"]

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        request_id = uuid.uuid4().hex
        if self._socket is not None:
            answer = self._socket.call({"op": "step", "action": action, "request_id": request_id})
        else:
            answer = self.client.step(self.session_id, action, request_id)
        self._last_observation = answer["observation"]
        return answer["observation"], answer["reward"], answer["terminated"], answer["truncated"], answer["info"]

    def render(self) -> str | None:
        return self._last_observation if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Close the session on the server (its env is closed there) and the connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._socket is not None:
                self._socket.close()
            self.client.close_session(self.session_id)
        except (SessionNotFoundError, httpx.TransportError):
            pass  # already expired, or the server is gone: nothing left to close
        finally:
            self.client.close()


def _text_space(spec: dict[str, Any]) -> TextSpace:
    return TextSpace(int(spec["max_length"]), min_length=int(spec.get("min_length", 0)))
