"""Remote env pools: the rollout loop's envs as sessions on a list of env servers (``env.servers`` in the config).

:class:`RemoteEnvPool` opens each session on the healthy server with the least load: the open sessions that
server last reported on ``/healthz`` (every client's, so several rollout workers spread over the servers together)
plus the sessions this pool opened since that report. A background thread probes every server's ``/healthz``
every ``health_interval_s``; a server that fails a probe or a request is skipped until a probe succeeds again.

:class:`RemoteEnvRunner` is an :class:`~resrl_agent.rollout.workers.EnvRunner` over one session. When its server
disappears (connection refused or reset, a request past its timeout after the client's retries, the session gone
after a server restart, a proxy's 502/503/504), the call raises :class:`ServerLostError` and the runner is marked
``lost``: the loop then drops the episode's turns and plays that task again, from reset, on another server
(:func:`~resrl_agent.rollout.loop.run_episodes` returns each TaskSpec's episode exactly once, so groups come back
whole). Steps carry request ids (:class:`~servers.env_client.RemoteEnv`), so a step retried after a lost answer is
never applied twice. An error the env itself answers (``ENV_CRASHED``, ``STEP_TIMEOUT``, ...) ends the episode with
``env_error`` as a local env failure does; a misconfiguration (wrong token, env not served, kwargs refused) stops
the run with a :class:`~resrl_agent.errors.RolloutError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from envs.base import EnvError
from resrl_agent.errors import RolloutError
from resrl_agent.rollout.workers import EnvRunner
from servers.env_client import (
    BadRequestError,
    CapacityError,
    EnvNotFoundError,
    EnvServerError,
    RemoteEnv,
    SessionNotFoundError,
    UnauthorizedError,
)

logger = logging.getLogger(__name__)

__all__ = ["RemoteEnvPool", "RemoteEnvRunner", "RemotePoolSettings", "ServerLostError", "resolve_pool_token"]

TOKEN_ENV = "RESRL_ENV_SERVER_TOKEN"


@dataclass(frozen=True, slots=True)
class RemotePoolSettings:
    """Where remote sessions live and how failures are told apart (``env.servers`` and ``env.remote``).

    Attributes:
        servers: env server base URLs (``http://host:8000``).
        token_file: a file holding the bearer token, read where the pool runs (each rollout worker's host).
        token_env: else the env var holding it (default ``RESRL_ENV_SERVER_TOKEN``); neither set = no auth.
        transport: ``http`` or ``websocket`` (one socket per session, less overhead per step).
        request_timeout_s: one request's timeout; past it (after ``retries``) the server counts as lost.
        retries: connection-level retries of one request (steps keep their request id, so none runs twice).
        health_interval_s: seconds between ``/healthz`` probes of every server.
        probe_timeout_s: one probe's timeout.
        max_reruns: how often one task may be re-run after losing its server before it ends with ``env_error``.
        wait_for_server_s: how long opening a session waits for some server to become healthy before the run fails.
    """

    servers: tuple[str, ...]
    token_file: str | None = None
    token_env: str = TOKEN_ENV
    transport: Literal["http", "websocket"] = "http"
    request_timeout_s: float = 30.0
    retries: int = 2
    health_interval_s: float = 2.0
    probe_timeout_s: float = 2.0
    max_reruns: int = 3
    wait_for_server_s: float = 60.0


class ServerLostError(EnvError):
    """The env server of this session disappeared; the episode is played again on another server."""


def resolve_pool_token(settings: RemotePoolSettings) -> str | None:
    """The bearer token: ``token_file`` if set (must be non-empty), else the ``token_env`` env var, else None."""
    if settings.token_file:
        try:
            value = Path(settings.token_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise RolloutError(f"env.remote.token_file={settings.token_file!r} cannot be read: {err}") from None
        if not value:
            raise RolloutError(f"env.remote.token_file={settings.token_file!r} is empty; put the server's token in it")
        return value
    return os.environ.get(settings.token_env) or None


# Errors meaning "the server (or the way to it) is gone", not "the env failed".
_LOST_TRANSPORT: tuple[type[Exception], ...] = (httpx.TransportError, OSError)
_PROXY_STATUSES = frozenset({502, 503, 504})


def _is_lost(err: BaseException) -> bool:
    if isinstance(err, SessionNotFoundError):
        return True  # the server restarted (or the session expired): the episode cannot go on there
    if isinstance(err, EnvServerError):
        return err.code == "HTTP_ERROR" and err.status in _PROXY_STATUSES  # a proxy in front of a dead server
    if isinstance(err, _LOST_TRANSPORT):
        return True
    try:
        from websockets.exceptions import ConnectionClosed
    except ImportError:  # pragma: no cover - websockets is a core dependency
        return False
    return isinstance(err, ConnectionClosed)


@dataclass
class _Server:
    url: str
    healthy: bool = True  # optimistic until the first probe answers (it runs before the first session opens)
    reported_sessions: int = 0  # the server's own count at the last probe (every client's sessions)
    opened_since_probe: int = 0
    open_here: int = 0  # sessions of this pool still open
    failures: int = 0
    last_error: str = ""

    @property
    def load(self) -> int:
        return self.reported_sessions + self.opened_since_probe


@dataclass
class PoolStats:
    """What the pool did (tests and metrics): sessions opened per server, servers marked lost."""

    opened: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)


class RemoteEnvPool:
    """Sessions spread over env servers by load, with health checks (see the module docstring)."""

    def __init__(self, settings: RemotePoolSettings, *, token: str | None = None) -> None:
        if not settings.servers:
            raise RolloutError("a remote env pool needs at least one server URL in env.servers")
        self.settings = settings
        self.token = token if token is not None else resolve_pool_token(settings)
        self.servers = [_Server(url.rstrip("/")) for url in settings.servers]
        self.stats = PoolStats()
        self._lock = threading.Lock()
        self._rotate = 0
        self._stop = threading.Event()
        # the token too: a server with auth reports its load (session count) only to an authenticated probe
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._probe_http = httpx.Client(timeout=settings.probe_timeout_s, headers=auth)
        self.probe_all()
        self._thread = threading.Thread(target=self._probe_loop, name="resrl-env-health", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ health
    def probe(self, server: _Server) -> bool:
        """One ``/healthz`` probe; updates the server's health and reported load."""
        try:
            response = self._probe_http.get(server.url + "/healthz")
            ok = response.status_code == 200
            sessions = int(response.json().get("sessions", 0)) if ok else 0
        except (httpx.HTTPError, ValueError, TypeError, AttributeError, RuntimeError) as err:  # Runtime: closed
            ok, sessions = False, 0
            server.last_error = f"{type(err).__name__}: {err}"
        with self._lock:
            if ok and not server.healthy:
                logger.info("env server %s is healthy again", server.url)
            elif not ok and server.healthy:
                logger.warning("env server %s failed its health probe (%s): skipped", server.url, server.last_error)
            server.healthy = ok
            if ok:
                server.reported_sessions, server.opened_since_probe = sessions, 0
        return ok

    def probe_all(self) -> None:
        threads = [threading.Thread(target=self.probe, args=(s,), daemon=True) for s in self.servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.settings.health_interval_s):
            self.probe_all()

    def mark_lost(self, server: _Server, err: BaseException) -> None:
        """A request to ``server`` failed as if it were gone: skip it until a probe succeeds."""
        with self._lock:
            server.failures += 1
            server.last_error = f"{type(err).__name__}: {err}"
            self.stats.lost[server.url] = self.stats.lost.get(server.url, 0) + 1
            if server.healthy:
                logger.warning("env server %s lost (%s): skipped until it answers /healthz", server.url, err)
            server.healthy = False

    def is_healthy(self, server: _Server | None) -> bool:
        return server is not None and server.healthy

    # ------------------------------------------------------------------ sessions
    def _pick(self, skip: set[str]) -> _Server | None:
        with self._lock:
            candidates = [s for s in self.servers if s.healthy and s.url not in skip]
            if not candidates:
                return None
            self._rotate += 1
            n = len(self.servers)
            # least load; ties go round-robin so equal servers fill evenly
            best = min(candidates, key=lambda s: (s.load, (self.servers.index(s) - self._rotate) % n))
            best.opened_since_probe += 1
            best.open_here += 1
            return best

    def _unpick(self, server: _Server) -> None:
        with self._lock:
            server.opened_since_probe = max(0, server.opened_since_probe - 1)
            server.open_here -= 1

    def open(self, env_id: str, env_kwargs: dict[str, Any], *, avoid: set[str] | None = None) -> tuple[_Server, Any]:
        """A new session on the least-loaded healthy server (not one in ``avoid`` while another is healthy)."""
        avoid = set(avoid or ())
        deadline = time.monotonic() + self.settings.wait_for_server_s
        tried: set[str] = set()
        while True:
            server = self._pick(tried | avoid) or self._pick(tried)
            if server is None:
                if time.monotonic() >= deadline:
                    states = ", ".join(f"{s.url} ({s.last_error or 'busy'})" for s in self.servers)
                    raise RolloutError(
                        f"no env server could open a {env_id} session for {self.settings.wait_for_server_s:.0f} s: "
                        f"{states}. Check that the servers in env.servers are up and reachable from this host."
                    )
                time.sleep(min(self.settings.health_interval_s, 1.0))
                tried.clear()
                self.probe_all()
                continue
            try:
                env = RemoteEnv(
                    server.url,
                    env_id,
                    transport=self.settings.transport,
                    token=self.token,
                    timeout=self.settings.request_timeout_s,
                    retries=self.settings.retries,
                    **env_kwargs,
                )
            except (UnauthorizedError, EnvNotFoundError, BadRequestError) as err:
                self._unpick(server)
                raise RolloutError(
                    f"env server {server.url} refused a {env_id} session: {err}. Check env.id, env.kwargs and the "
                    f"token (env.remote.token_file or ${self.settings.token_env})."
                ) from None
            except CapacityError:
                self._unpick(server)
                tried.add(server.url)
                continue
            except Exception as err:
                self._unpick(server)
                if not _is_lost(err):
                    raise
                self.mark_lost(server, err)
                tried.add(server.url)
                continue
            with self._lock:
                self.stats.opened[server.url] = self.stats.opened.get(server.url, 0) + 1
            return server, env

    def release(self, server: _Server) -> None:
        with self._lock:
            server.open_here -= 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settings.probe_timeout_s + 1.0)
        self._probe_http.close()


class RemoteEnvRunner(EnvRunner):
    """One env session on a pool server, opened at the first call (in the executor's thread, like a local env)."""

    def __init__(self, pool: RemoteEnvPool, env_id: str, env_kwargs: dict[str, Any], *, avoid: set[str]) -> None:
        super().__init__(env_id, env_kwargs)
        self.pool = pool
        self.avoid = avoid
        self.server: _Server | None = None
        self.lost = False  # the failure was the server's disappearance: the episode is re-run elsewhere

    @property
    def url(self) -> str | None:
        return None if self.server is None else self.server.url

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            if self.env is None:
                self.server, self.env = self.pool.open(self.env_id, self.env_kwargs, avoid=self.avoid)
            return getattr(self.env, method)(*args, **kwargs)
        except RolloutError:
            self.broken = True
            raise
        except Exception as err:
            self.broken = True
            if _is_lost(err):
                self.lost = True
                if self.server is not None:
                    self.pool.mark_lost(self.server, err)
                raise ServerLostError(f"env server {self.url} lost during {method}(): {err}") from err
            if isinstance(err, EnvError):
                raise
            raise EnvError(f"{self.env_id} {method}() on {self.url} raised {type(err).__name__}: {err}") from err

    def abandon(self) -> None:
        """The loop's deadline passed: lost if the server no longer answers its health probe."""
        self.broken = True
        # no server yet: the session is still waiting for one; else ask the server whether it is still there
        if self.server is None or not self.pool.probe(self.server):
            self.lost = True

    def close(self) -> None:
        env, self.env = self.env, None
        if env is None:
            return
        if self.server is not None:
            self.pool.release(self.server)
        if self.lost:
            # the server is gone: do not wait on a DELETE, just drop the connections (it expires the session)
            socket: Callable[[], None] | None = getattr(getattr(env, "_socket", None), "close", None)
            with contextlib.suppress(Exception):
                if socket is not None:
                    socket()
                env.client.close()
            return
        with contextlib.suppress(EnvError, httpx.HTTPError, OSError):
            env.close()
