"""Sessions of the env server: the settings, the worker pool and the session table with its rules.

:class:`SessionManager` owns every rule of docs/design.md "Serving" that is not HTTP: the env allow-list
(ENV_NOT_FOUND), the capacity (CAPACITY), idle expiry (TTL), 409 after the episode ended, idempotent steps by
client request id, the batched step fanned out to all workers at once, and sessions ended by a worker's
crash or a step timeout. Successful reset/step answers are JSON bytes built by the worker and passed on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field

import envs
from servers.schemas import ERROR_STATUS, BatchStepItem
from servers.security import ServingSettings
from servers.workers import Op, ProcessWorker, Reply, ThreadWorker, Worker

__all__ = ["ANONYMOUS", "ApiError", "EnvServerSettings", "Session", "SessionManager", "check_env_kwargs"]

log = logging.getLogger(__name__)

ANONYMOUS = ""  # the client of a server without tokens


def _usable_cpus() -> int:
    """CPUs the server may run on: its affinity mask (taskset, cpusets), else the CPU count; at least 1.

    More workers than that only adds process switches: with the server pinned to one core, two workers on that
    core cost each step more context switches than one, for no parallelism.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


class EnvServerSettings(ServingSettings):
    """Everything the env server is configured by (``resrl-agent serve env`` flags map onto these); the tokens and
    the connection and body limits are :class:`~servers.security.ServingSettings`'."""

    envs: list[str] | None = Field(default=None, description="env ids served; None = every registered id")
    workers: int = Field(
        default_factory=_usable_cpus,
        ge=1,
        le=1024,
        description="worker processes; default: the CPUs this process may run on (its affinity mask)",
    )
    isolation: Literal["process", "thread"] = "process"
    max_sessions: int = Field(default=1024, ge=1)
    session_ttl_s: float = Field(default=600.0, gt=0)
    step_timeout_s: float = Field(default=30.0, gt=0)
    create_timeout_s: float = Field(default=120.0, gt=0)
    max_batch: int = Field(default=1024, ge=1)
    idempotency_window: int = Field(default=16, ge=1, description="stored step answers per session")
    max_connections: int = Field(default=4096, ge=1, description="open connections and requests before 503")
    test_knobs: bool = Field(default=False, description="allow envs' fault-injection kwargs (tests only)")


class ApiError(Exception):
    """An error answer: the code decides the HTTP status (``ERROR_STATUS``)."""

    def __init__(self, code: str, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint
        self.status = status or ERROR_STATUS[code]


@dataclass(eq=False)
class Session:
    id: str
    env_id: str
    worker: Worker
    action_max_chars: int
    owner: str = ANONYMOUS  # the client that created it: only that client sees it
    busy: int = 0  # ops in flight: the idle clock waits for them
    last_used: float = field(default_factory=time.monotonic)
    ended: tuple[str, str, str | None] | None = None  # why the session can no longer step (crash, timeout)
    answers: collections.OrderedDict[str, asyncio.Future[Reply]] = field(default_factory=collections.OrderedDict)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sessions = Gauge("resrl_env_sessions", "open sessions", registry=self.registry)
        self.steps = Counter("resrl_env_steps", "env steps answered", ["env_id"], registry=self.registry)
        self.latency = Histogram(
            "resrl_env_op_seconds",
            "time from request to worker answer",
            ["op"],
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
            registry=self.registry,
        )
        self.errors = Counter("resrl_env_errors", "error answers by code", ["code"], registry=self.registry)
        self.restarts = Counter("resrl_env_worker_restarts", "worker processes replaced", registry=self.registry)
        self.expired = Counter("resrl_env_sessions_expired", "sessions closed by the idle TTL", registry=self.registry)


class SessionManager:
    """The session table over a pool of workers (see the module docstring)."""

    def __init__(self, settings: EnvServerSettings) -> None:
        self.settings = settings
        registered = envs.env_ids()
        unknown = [env_id for env_id in settings.envs or [] if env_id not in registered]
        if unknown:
            raise ValueError(f"unknown env ids {unknown}; registered: {', '.join(registered)}")
        self.env_ids = list(settings.envs) if settings.envs else registered
        self.sessions: dict[str, Session] = {}
        self.recently_ended: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()  # (owner, why)
        self._held: collections.Counter[str] = collections.Counter()  # sessions (and creates in flight) per owner
        self.metrics = _Metrics()
        self.metrics.sessions.set_function(lambda: len(self.sessions))
        self.workers: list[Worker] = []
        self._load: dict[int, int] = {}
        self._creating = 0  # creates in flight: they count against max_sessions
        self._reaper: asyncio.Task[None] | None = None
        self._step_latency = self.metrics.latency.labels("step")
        self._step_counters = {env_id: self.metrics.steps.labels(env_id) for env_id in self.env_ids}

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        kind = ProcessWorker if self.settings.isolation == "process" else ThreadWorker
        self.workers = [
            kind(i, test_knobs=self.settings.test_knobs, on_lost=self._on_worker_lost)
            for i in range(self.settings.workers)
        ]
        await asyncio.gather(*(worker.start() for worker in self.workers))
        self._load = {worker.index: 0 for worker in self.workers}
        self._reaper = asyncio.create_task(self._reap_forever(), name="env-session-reaper")

    async def stop(self) -> None:
        """Graceful shutdown: close every env, then stop the workers."""
        if self._reaper is not None:
            self._reaper.cancel()
        await asyncio.gather(*(self.close(sid, None) for sid in list(self.sessions)), return_exceptions=True)
        await asyncio.gather(*(worker.stop() for worker in self.workers), return_exceptions=True)

    def _on_worker_lost(self, worker: Worker, culprit: str, reason: tuple[str, str, str | None]) -> None:
        self.metrics.restarts.inc()
        for session in self.sessions.values():
            if session.worker is worker and session.ended is None:
                session.ended = reason

    # -- sessions --------------------------------------------------------------------------------------------
    def get(self, session_id: str, owner: str | None = ANONYMOUS) -> Session:
        """The session, if ``owner`` created it (None: any owner); another client's session is "not found"."""
        session = self.sessions.get(session_id)
        if session is None or (owner is not None and session.owner != owner):
            ended = self.recently_ended.get(session_id)
            why = ended[1] if ended is not None and (owner is None or ended[0] == owner) else None
            raise ApiError(
                "SESSION_NOT_FOUND",
                f"no session {session_id!r}" + (f" ({why})" if why else ""),
                f"create one with POST /v1/sessions; idle sessions expire after {self.settings.session_ttl_s:g} s",
            )
        if session.ended is not None:
            code, message, hint = session.ended
            raise ApiError(code, message, hint)
        session.last_used = time.monotonic()
        return session

    async def create(self, env_id: str, kwargs: dict[str, Any], owner: str = ANONYMOUS) -> dict[str, Any]:
        if env_id not in self.env_ids:
            raise ApiError(
                "ENV_NOT_FOUND", f"env {env_id!r} is not served here", f"served env ids: {', '.join(self.env_ids)}"
            )
        check_env_kwargs(env_id, kwargs, test_knobs=self.settings.test_knobs)
        if len(self.sessions) + self._creating >= self.settings.max_sessions:
            raise ApiError(
                "CAPACITY",
                f"the server holds its maximum of {self.settings.max_sessions} sessions",
                "close finished sessions (DELETE /v1/sessions/{id}) or retry later",
            )
        quota = self.settings.max_sessions_per_client
        if quota is not None and self._held[owner] >= quota:
            raise ApiError(
                "CAPACITY",
                f"this client holds its quota of {quota} sessions",
                "close finished sessions (DELETE /v1/sessions/{id}) or retry later",
            )
        worker = min(self.workers, key=lambda w: self._load[w.index])
        session_id = secrets.token_hex(12)
        self._load[worker.index] += 1
        self._creating += 1  # holds the slot while the worker builds the env, so concurrent creates see it
        self._held[owner] += 1
        try:
            reply = await self._call(worker, ("create", session_id, env_id, kwargs), self.settings.create_timeout_s)
        finally:
            self._creating -= 1
        if not reply[0]:
            self._load[worker.index] -= 1
            self._release(owner)
            raise ApiError(*reply[1])
        observation_space, action_space = reply[1]
        self.sessions[session_id] = Session(session_id, env_id, worker, action_space["max_length"], owner)
        return {
            "session_id": session_id,
            "env_id": env_id,
            "observation_space": {"type": "text", **observation_space},
            "action_space": {"type": "text", **action_space},
        }

    async def reset(
        self, session_id: str, seed: int | None, options: dict[str, Any] | None, owner: str = ANONYMOUS
    ) -> bytes:
        session = self.get(session_id, owner)
        if options is not None:
            _check_text("options", json.dumps(options, ensure_ascii=False))
        session.answers.clear()
        start = time.perf_counter()
        session.busy += 1
        try:
            reply = await self._call(session.worker, ("reset", session_id, seed, options), self.settings.step_timeout_s)
        finally:
            session.busy -= 1
            session.last_used = time.monotonic()
        self.metrics.latency.labels("reset").observe(time.perf_counter() - start)
        payload: bytes = self._unwrap(session, reply)
        return payload

    async def step(self, session_id: str, action: str, request_id: str | None = None, owner: str = ANONYMOUS) -> bytes:
        session = self.get(session_id, owner)
        if len(action) > session.action_max_chars:
            raise ApiError(
                "BAD_REQUEST",
                f"action: {len(action)} characters, over the env's action space of {session.action_max_chars}",
                status=422,
            )
        if not action.isascii():
            _check_text("action", action)
        if request_id is not None:
            stored = session.answers.get(request_id)
            if stored is None:
                stored = asyncio.ensure_future(self._step_reply(session, action))
                session.answers[request_id] = stored
                while len(session.answers) > self.settings.idempotency_window:
                    session.answers.popitem(last=False)
            reply = await asyncio.shield(stored)
        else:
            reply = await self._step_reply(session, action)
        _done, payload = self._unwrap(session, reply)
        return payload  # type: ignore[no-any-return]

    async def _step_reply(self, session: Session, action: str) -> Reply:
        start = time.perf_counter()
        session.busy += 1
        try:
            reply = await session.worker.call(("step", session.id, action, None), self.settings.step_timeout_s)
        finally:
            session.busy -= 1
            session.last_used = time.monotonic()  # the idle clock counts from the end of the step
        self._step_latency.observe(time.perf_counter() - start)
        if reply[0]:
            self._step_counters[session.env_id].inc()
        return reply

    async def step_batch(self, items: list[BatchStepItem], owner: str = ANONYMOUS) -> bytes:
        """Every item stepped concurrently (each worker gets its items in one frame); one JSON answer."""
        if len(items) > self.settings.max_batch:
            raise ApiError(
                "BAD_REQUEST", f"steps: {len(items)} items, over the limit of {self.settings.max_batch}", status=422
            )
        answers = await asyncio.gather(*(self._batch_item(item, owner) for item in items))
        return b'{"results":[' + b",".join(answers) + b"]}"

    async def _batch_item(self, item: BatchStepItem, owner: str) -> bytes:
        head = b'{"session_id":' + json.dumps(item.session_id).encode()
        try:
            payload = await self.step(item.session_id, item.action, item.request_id, owner)
        except ApiError as error:
            self.count_error(error.code)
            return head + b',"error":' + json.dumps(_error_object(error)).encode() + b"}"
        return head + b',"result":' + payload + b"}"

    async def close(
        self, session_id: str, owner: str | None = ANONYMOUS, *, reason: str = "closed by the client"
    ) -> bool:
        session = self.sessions.get(session_id)
        if session is None or (owner is not None and session.owner != owner):
            raise ApiError("SESSION_NOT_FOUND", f"no session {session_id!r}", "it may have expired or been closed")
        del self.sessions[session_id]
        self._remember_ended(session_id, session.owner, reason)
        self._load[session.worker.index] -= 1
        self._release(session.owner)
        if session.ended is not None:  # its env died with its worker
            return True
        reply = await self._call(session.worker, ("close", session_id, None, None), self.settings.step_timeout_s)
        return bool(reply[0])

    def _release(self, owner: str) -> None:
        self._held[owner] -= 1
        if self._held[owner] <= 0:
            del self._held[owner]

    def _remember_ended(self, session_id: str, owner: str, reason: str) -> None:
        self.recently_ended[session_id] = (owner, reason)
        while len(self.recently_ended) > 4096:
            self.recently_ended.popitem(last=False)

    async def _call(self, worker: Worker, op: Op, timeout: float) -> Reply:
        return await worker.call(op, timeout)

    def _unwrap(self, session: Session, reply: Reply) -> Any:
        if reply[0]:
            return reply[1]
        code, message, hint = reply[1]
        if code == "ENV_CRASHED" and session.ended is None:  # the env raised: its state is unknown, so it ends
            session.ended = (code, message, hint)
        raise ApiError(code, message, hint)

    def count_error(self, code: str) -> None:
        self.metrics.errors.labels(code).inc()

    # -- expiry ----------------------------------------------------------------------------------------------
    async def _reap_forever(self) -> None:
        period = max(0.05, min(self.settings.session_ttl_s / 4, 5.0))
        while True:
            await asyncio.sleep(period)
            try:
                await self.expire()
            except Exception:  # keep reaping whatever one close did
                log.exception("session expiry failed")

    async def expire(self) -> int:
        deadline = time.monotonic() - self.settings.session_ttl_s
        stale = [sid for sid, s in self.sessions.items() if s.last_used < deadline and not s.busy]
        for session_id in stale:
            self.metrics.expired.inc()
            with contextlib.suppress(ApiError):  # closed meanwhile by its client
                await self.close(session_id, None, reason=f"expired after {self.settings.session_ttl_s:g} s idle")
        return len(stale)


def check_env_kwargs(env_id: str, kwargs: dict[str, Any], *, test_knobs: bool) -> None:
    """Refuse (400) every kwarg the env does not declare in ``remote_kwargs`` (test knobs only with --test-knobs).

    A remote client may set only what its env class lists in its ``remote_kwargs`` ClassVar: never a path, nor
    anything else the operator should decide; an integer kwarg that sizes what the env builds is bounded by the
    class's ``remote_kwarg_limits`` (name -> largest value). An env that lists nothing takes none.
    """
    cls = envs.env_class(env_id)
    test_only = frozenset(getattr(cls, "test_only_kwargs", ()))
    knobs = sorted(set(kwargs) & test_only)
    if knobs and not test_knobs:
        raise ApiError(
            "BAD_REQUEST",
            f"kwargs.{knobs[0]} is a fault-injection knob of {env_id}, refused on this server",
            "start the server with --test-knobs (tests only) to use it",
        )
    allowed = frozenset(getattr(cls, "remote_kwargs", ())) | (test_only if test_knobs else frozenset())
    refused = sorted(set(kwargs) - allowed)
    if refused:
        named = ", ".join(sorted(allowed)) or "none"
        raise ApiError(
            "BAD_REQUEST",
            f"kwargs.{refused[0]}: {env_id} does not take {', '.join(refused)} from a remote client",
            f"kwargs a client may set for {env_id}: {named}",
        )
    limits: dict[str, int] = dict(getattr(cls, "remote_kwarg_limits", {}))
    for name, limit in limits.items():
        value = kwargs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit):
            raise ApiError(
                "BAD_REQUEST",
                f"kwargs.{name}: {value!r} is out of range for a remote client",
                f"an integer from 0 to {limit}",
            )


def _check_text(field_name: str, text: str) -> None:
    """400 for text that is not valid Unicode (a lone surrogate from a JSON escape such as \\ud800)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ApiError(
            "BAD_REQUEST",
            f"{field_name}: not valid Unicode (a lone surrogate at character {error.start})",
            "send well-formed UTF-8 text",
        ) from None


def _error_object(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.hint:
        body["hint"] = error.hint
    return body
