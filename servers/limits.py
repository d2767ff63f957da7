"""uvicorn's connection limits for both servers: a connection cap, keep-alive and request-head timeouts.

uvicorn has no timeout for a request's head of its own: a client that sends its headers one byte at a time holds
its connection (and a file descriptor) forever, and enough of them starve the server (``accept`` fails with "too
many open files"). :class:`HeaderTimeoutH11Protocol` closes such connections; ``limit_concurrency`` caps
connections and requests (503 over it); the soft limit of open files is raised to the hard limit.
:func:`capped_body` reads a request body whole but never past the cap (a chunked body too), and :func:`serve_asgi`
runs either server with all of it, after the bind check.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from servers.security import ServingSettings, check_bind

__all__ = [
    "BodyTooLargeError",
    "HeaderTimeoutH11Protocol",
    "capped_body",
    "header_timeout_protocol",
    "raise_open_files_limit",
    "replaying",
    "serve_asgi",
    "uvicorn_options",
]


def raise_open_files_limit() -> None:
    """Raise the soft limit of open files to the hard limit (the connection cap then leaves room for the rest)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard)
            )
    except (ValueError, OSError):  # pragma: no cover - not allowed here
        pass


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head (``header_timeout_s``, default 10 s).

    The clock starts when the connection opens and again when a response ends (keep-alive); a connection that has
    not sent a whole request head when it runs out is closed. Set the class attribute on a subclass to change it.
    """

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._answered: object = None  # the request cycle answered last (None: none yet)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if self.cycle is self._answered and transport.get_protocol() is self and not transport.is_closing():
            transport.close()  # still no new request head: the slow client loses its connection

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not getattr(self, "_answered", None) or self.transport.get_protocol() is not self:
            self._cancel_head_timer()  # a request head arrived (or the connection became a WebSocket)

    def on_response_complete(self) -> None:
        self._answered = self.cycle
        if not self.transport.is_closing():
            self._arm_head_timer()
        super().on_response_complete()  # may start a pipelined request: handle_events then stops the clock

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutH11Protocol]:
    """A :class:`HeaderTimeoutH11Protocol` subclass with its own deadline."""
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout_s": float(seconds)})


def uvicorn_options(
    *, max_connections: int, keep_alive_s: float, header_timeout_s: float, max_header_bytes: int = 16384
) -> dict[str, Any]:
    """The uvicorn.run/Config keyword arguments of the limits above."""
    return {
        "http": header_timeout_protocol(header_timeout_s),
        "limit_concurrency": max_connections,
        "timeout_keep_alive": keep_alive_s,
        "h11_max_incomplete_event_size": max_header_bytes,
        "backlog": min(2048, max(128, max_connections)),
    }


class BodyTooLargeError(Exception):
    """A request body over the cap: ``size`` is what was declared or received so far."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


async def capped_body(scope: Any, receive: Any, limit: int) -> bytes | None:
    """The request body, read whole here but never past ``limit`` bytes: a declared content-length over it, or
    the bytes of a chunked body once they pass it, raise :class:`BodyTooLargeError`. None: the client went away."""
    length = next((value for key, value in scope["headers"] if key == b"content-length"), None)
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLargeError(int(length))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(receive: Any, body: bytes) -> Any:
    """An ASGI ``receive`` that hands the app ``body`` (already read) once, then the client's own messages."""
    replayed = False

    async def replay() -> Any:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def serve_asgi(
    make_app: Callable[[], Any], settings: ServingSettings, host: str, port: int, *, server: str, **uvicorn_kwargs: Any
) -> None:
    """Run a server in the foreground: the bind check first (:func:`~servers.security.check_bind`, before the app
    is even built), the open-files limit raised, then uvicorn with the settings' connection limits."""
    import uvicorn

    authenticated = bool(settings.bearer_tokens())
    check_bind(host, authenticated, allow_insecure=settings.insecure_no_auth_on_public_bind, server=server)
    raise_open_files_limit()
    uvicorn.run(
        make_app(),
        host=host,
        port=port,
        **uvicorn_kwargs,
        **uvicorn_options(
            max_connections=settings.max_connections,
            keep_alive_s=settings.keep_alive_s,
            header_timeout_s=settings.header_timeout_s,
        ),
    )
