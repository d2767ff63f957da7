"""Where the env server's envs live: worker processes (isolation) or threads of the server (trusted envs).

A worker hosts the envs of several sessions (:class:`EnvHost`) and runs one op at a time. The server talks to
a worker process over one socket pair: a frame is a 4-byte big-endian length and a pickle. The server writes
the ops queued for a busy worker as one frame (a list); the worker answers each op with its own frame as soon as
it is done, so the step timeout is timed per op. A step past ``step_timeout_s`` gets SIGKILL; a worker that
dies (signal, OOM, segfault) fails the op it was running and every op queued behind it with ENV_CRASHED, and
its sessions end; the pool starts a fresh process in its place. The server side is an ``asyncio.Protocol``:
an op to an idle worker is written at once, a reply resolves its future straight from ``data_received``, and
one lazy timer watches the running op's deadline; no driver task, no thread hop on the hot path.

Ops are tuples ``(kind, session_id, a, b)``: ``("create", sid, env_id, kwargs)``, ``("reset", sid, seed,
options)``, ``("step", sid, action, None)``, ``("close", sid, None, None)``. A reply is ``(True, payload)`` or
``(False, (code, message, hint))``. Reset and step payloads are the JSON bytes of the answer, built in the
worker, so the server forwards them without decoding.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym

import envs
from envs.base import EnvError, info_json_default
from servers.security import scrubbed_environ

__all__ = ["EnvHost", "Op", "ProcessWorker", "Reply", "ThreadWorker", "Worker", "worker_main"]

log = logging.getLogger(__name__)

Op = tuple[str, str, Any, Any]
Reply = tuple[bool, Any]
_HEADER = struct.Struct("!I")
_MAX_OPS_PER_FRAME = 256
_READ_SIZE = 1 << 18
_PICKLE = pickle.HIGHEST_PROTOCOL
_ENTRY = "from servers.workers import worker_main; worker_main()"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_ENCODER = json.JSONEncoder(
    default=info_json_default, ensure_ascii=False, separators=(",", ":")
)  # built once, not per op


def _dumps(payload: dict[str, Any]) -> bytes:
    return _ENCODER.encode(payload).encode()


def _space_spec(space: Any) -> dict[str, int]:
    return {
        "min_length": int(getattr(space, "min_length", 0)),
        "max_length": int(getattr(space, "max_length", 1 << 20)),
    }


class EnvHost:
    """The envs of one worker, by session id; ``handle(op)`` runs one op and never raises."""

    def __init__(self, *, test_knobs: bool = False) -> None:
        self.test_knobs = test_knobs
        self.envs: dict[str, gym.Env[Any, Any]] = {}
        self.state: dict[str, str] = {}  # "new" (not reset yet), "running", "done"

    def handle(self, op: Op) -> Reply:
        kind, session_id, first, second = op
        try:
            if kind == "step":
                return self._step(session_id, first)
            if kind == "reset":
                return self._reset(session_id, first, second)
            if kind == "create":
                return self._create(session_id, first, second)
            if kind == "close":
                return self._close(session_id)
            return False, ("BAD_REQUEST", f"unknown op {kind!r}", None)
        except Exception as error:  # the env's own failure: reported, the worker keeps serving
            log.exception("env op %s failed for session %s", kind, session_id)
            with contextlib.suppress(Exception):
                self._close(session_id)
            return False, ("ENV_CRASHED", f"the env raised {type(error).__name__}: {error}", "create a new session")

    def _create(self, session_id: str, env_id: str, kwargs: dict[str, Any]) -> Reply:
        blocked = sorted(set(kwargs) & set(getattr(envs.env_class(env_id), "test_only_kwargs", ())))
        if blocked and not self.test_knobs:
            return False, (
                "BAD_REQUEST",
                f"kwargs.{blocked[0]} is a fault-injection knob of {env_id}, refused on this server",
                "start the server with --test-knobs (tests only) to use it",
            )
        try:
            env = gym.make(env_id, **kwargs)
        except Exception as error:  # a constructor that refuses its kwargs, whatever it raises: the client's fault
            return False, ("BAD_REQUEST", f"cannot create {env_id} with kwargs {kwargs!r}: {error}", None)
        self.envs[session_id] = env
        self.state[session_id] = "new"
        return True, (_space_spec(env.observation_space), _space_spec(env.action_space))

    def _reset(self, session_id: str, seed: int | None, options: dict[str, Any] | None) -> Reply:
        env = self.envs.get(session_id)
        if env is None:
            return False, ("SESSION_NOT_FOUND", f"no env for session {session_id!r} in this worker", None)
        try:
            observation, info = env.reset(seed=seed, options=options)
        except (EnvError, TypeError, ValueError, KeyError) as error:
            return False, ("BAD_REQUEST", f"reset refused: {error}", "check options (e.g. task_id) and seed")
        self.state[session_id] = "running"
        return True, _dumps({"observation": observation, "info": info})

    def _step(self, session_id: str, action: str) -> Reply:
        env = self.envs.get(session_id)
        if env is None:
            return False, ("SESSION_NOT_FOUND", f"no env for session {session_id!r} in this worker", None)
        state = self.state[session_id]
        if state != "running":
            hint = "call reset first" if state == "new" else "the episode ended; call reset to start another"
            return False, ("EPISODE_DONE", f"session {session_id} has no running episode", hint)
        observation, reward, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        if done:
            self.state[session_id] = "done"
        payload = {
            "observation": observation,
            "reward": float(reward),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "info": info,
        }
        return True, (done, _dumps(payload))

    def _close(self, session_id: str) -> Reply:
        env = self.envs.pop(session_id, None)
        self.state.pop(session_id, None)
        if env is not None:
            env.close()
        return True, env is not None

    def close_all(self) -> None:
        for session_id in list(self.envs):
            with contextlib.suppress(Exception):
                self._close(session_id)


def worker_main(argv: list[str] | None = None) -> None:
    """Entry point of a worker process: ``python -c '...worker_main()' <socket fd> <test_knobs 0|1>``."""
    argv = sys.argv[1:] if argv is None else argv
    _serve_ops(socket.socket(fileno=int(argv[0])), argv[1] == "1")


def _serve_ops(sock: socket.socket, test_knobs: bool) -> None:
    """Body of a worker process: read op frames, answer each op with its own frame, until EOF or exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which closes us gracefully
    host = EnvHost(test_knobs=test_knobs)
    frames = _FrameReader(sock)
    try:
        while True:
            frame = frames.next()
            if frame is None:
                break
            ops: list[Op] = pickle.loads(frame)
            for op in ops:
                if op[0] == "exit":
                    return
                data = pickle.dumps(host.handle(op), _PICKLE)
                sock.sendall(_HEADER.pack(len(data)) + data)
    finally:
        host.close_all()


class _FrameReader:
    """The worker's side of the socket pair: length-prefixed frames, waiting in ``poll(POLLIN)``, not in ``recv``.

    A process blocked in ``recv`` on a Unix socket is also woken each time the peer reads what this process
    sent (the write-space wake-up goes to the same wait queue): it finds nothing and sleeps again. That is two
    extra context switches per answer, on the core the server may share (measured: 1.9 sleeps per step instead
    of 1). ``poll`` for POLLIN only is not woken by write-space events.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.buffer = bytearray()

    def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            self.poller.poll()
            chunk = self.sock.recv(_READ_SIZE)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def next(self) -> bytes | None:
        """The next frame's payload; None at EOF."""
        if not self._fill(4):
            return None
        end = 4 + _HEADER.unpack_from(self.buffer)[0]
        if not self._fill(end):
            return None
        payload = bytes(self.buffer[4:end])
        del self.buffer[:end]
        return payload


def _wait(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Wait for a worker process to end (killing it after ``timeout``); its return code."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


LostCallback = Callable[["Worker", str, tuple[str, str, str | None]], None]


class Worker:
    """Common interface: ``await call(op, timeout)`` returns a Reply; ``on_lost`` hears of ended sessions."""

    index: int
    pid: int | None = None
    restarts: int = 0

    async def start(self) -> None:
        raise NotImplementedError

    async def call(self, op: Op, timeout: float) -> Reply:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class ProcessWorker(Worker, asyncio.Protocol):
    """One worker process and the asyncio protocol of its socket pair (no driver task: replies resolve futures
    straight from ``data_received``).

    ``call`` writes its op at once when the worker is idle; ops called while others are in flight are gathered
    and written as one frame at the next loop turn. ``_inflight`` holds the ops sent and not answered, in order
    (the worker answers in order); the head is the op the worker runs now, and its deadline is the step timeout
    counted from when it became the head. One lazy timer watches the head's deadline (re-armed only when it
    fires early), so a fast op costs no timer.
    """

    def __init__(self, index: int, *, test_knobs: bool, on_lost: LostCallback) -> None:
        self.index = index
        self.test_knobs = test_knobs
        self.on_lost = on_lost
        self._inflight: collections.deque[tuple[Op, float, asyncio.Future[Reply]]] = collections.deque()
        self._outbox: list[Op] = []  # ops in _inflight not written yet (flushed at the next loop turn)
        self._head_deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._buffer = bytearray()
        self._process: Any = None
        self._transport: asyncio.Transport | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._timed_out: Op | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def _spawn(self) -> None:
        # A fresh interpreter (not fork: the server has threads; not multiprocessing: it re-imports __main__).
        parent_sock, child_sock = socket.socketpair()
        command = [sys.executable, "-c", _ENTRY, str(child_sock.fileno()), "1" if self.test_knobs else "0"]
        environ = scrubbed_environ()  # the server's tokens stay out of the envs' reach
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, environ.get("PYTHONPATH")]))
        process = subprocess.Popen(command, pass_fds=(child_sock.fileno(),), env=environ, close_fds=True)
        child_sock.close()
        self._process = process
        self.pid = process.pid
        self._buffer.clear()
        assert self._loop is not None
        await self._loop.create_unix_connection(lambda: self, sock=parent_sock)

    # -- asyncio.Protocol ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        if not buffer and len(data) >= 4 and _HEADER.unpack_from(data)[0] == len(data) - 4 and self._inflight:
            _op, _timeout, future = self._inflight.popleft()  # the usual case: exactly one whole answer
            if not future.done():
                future.set_result(pickle.loads(memoryview(data)[4:]))
            if self._inflight:
                self._start_head()
            return
        buffer += data
        offset, size = 0, len(buffer)
        inflight = self._inflight
        while size - offset >= 4:
            (length,) = _HEADER.unpack_from(buffer, offset)
            if size - offset - 4 < length:
                break
            reply: Reply = pickle.loads(buffer[offset + 4 : offset + 4 + length])
            offset += 4 + length
            if not inflight:  # an answer to nothing: the stream is out of step, treat the worker as lost
                self._lose()
                return
            _op, _timeout, future = inflight.popleft()
            if not future.done():
                future.set_result(reply)
            if inflight:
                self._start_head()
        if offset:
            del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._lose()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    # -- ops -----------------------------------------------------------------------------------------------
    def call(self, op: Op, timeout: float) -> asyncio.Future[Reply]:  # type: ignore[override]
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[Reply] = loop.create_future()
        idle = not self._inflight
        self._inflight.append((op, timeout, future))
        if self._recovering is not None:
            return future  # failed by the recovery with the other ops of the dead process
        if idle:  # the worker waits for this op: write it now and start its clock
            self._write([op])
            self._start_head()
        else:
            if not self._outbox:
                loop.call_soon(self._flush)
            self._outbox.append(op)
        return future

    def _flush(self) -> None:
        ops, self._outbox = self._outbox, []
        if ops and self._recovering is None:
            self._write(ops)

    def _write(self, ops: list[Op]) -> None:
        transport = self._transport
        if transport is None:
            return  # the process is gone: connection_lost fails these ops
        data = pickle.dumps(ops, _PICKLE)
        transport.write(_HEADER.pack(len(data)) + data)

    def _start_head(self) -> None:
        """The head of ``_inflight`` starts running in the worker now: its deadline, and the watch timer."""
        loop = self._loop
        assert loop is not None
        deadline = loop.time() + self._inflight[0][1]
        self._head_deadline = deadline
        if self._timer is None:
            self._timer_at = deadline
            self._timer = loop.call_at(deadline, self._check_deadline)
        elif deadline < self._timer_at:
            self._timer.cancel()
            self._timer_at = deadline
            self._timer = loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._inflight or self._recovering is not None:
            return
        loop = self._loop
        assert loop is not None
        if loop.time() >= self._head_deadline:
            self._kill_for_timeout(self._inflight[0][0])
        else:
            self._timer_at = self._head_deadline
            self._timer = loop.call_at(self._head_deadline, self._check_deadline)

    def _kill_for_timeout(self, op: Op) -> None:
        self._timed_out = op
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    def _lose(self) -> None:
        if self._stopping:  # the pool is shutting down: no respawn, nothing left to tell
            while self._inflight:
                _op, _timeout, future = self._inflight.popleft()
                if not future.done():
                    future.set_result((False, ("ENV_CRASHED", "the env server is shutting down", None)))
            return
        if self._recovering is None and self._loop is not None:
            self._recovering = self._loop.create_task(self._recover(), name=f"env-worker-{self.index}-recover")

    async def _recover(self) -> None:
        """The process died: fail the op it ran and every op queued behind it, end its sessions, respawn."""
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        process = self._process
        exitcode = await asyncio.get_running_loop().run_in_executor(None, _wait, process, 5.0)
        how = (
            f"signal {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0 else f"exit {exitcode}"
        )
        timed_out, self._timed_out = self._timed_out, None
        pending = list(self._inflight)
        self._inflight.clear()
        self._outbox = []
        if timed_out is not None:
            culprit = timed_out[1]
            reason: tuple[str, str, str | None] = (
                "ENV_CRASHED",
                # not the culprit's id: the other sessions of this worker belong to other clients
                f"the env worker process was killed because another session's {timed_out[0]} passed the step timeout",
                "create a new session",
            )
        else:
            culprit = pending[0][0][1] if pending else ""
            reason = ("ENV_CRASHED", f"the env worker process died ({how})", "create a new session")
        for op, _, future in pending:
            if future.done():
                continue
            if timed_out is not None and op is timed_out:
                future.set_result((False, ("STEP_TIMEOUT", f"{op[0]} took longer than the step timeout", None)))
            else:
                future.set_result((False, reason))
        if not self._stopping:
            log.warning("env worker %d (pid %s) lost: %s", self.index, self.pid, reason[1])
        self.on_lost(self, culprit, reason)
        try:
            if not self._stopping:
                self.restarts += 1
                await self._spawn()
        finally:
            self._recovering = None
        if self._inflight and not self._stopping:  # ops called while the fresh process started
            ops = [op for op, _, _ in self._inflight]
            self._write(ops)
            self._start_head()

    async def stop(self) -> None:
        self._stopping = True
        if self._recovering is not None:
            with contextlib.suppress(Exception):
                await self._recovering
        if self._transport is not None and self._process is not None and self._process.poll() is None:
            with contextlib.suppress(Exception):
                self._write([("exit", "", None, None)])
        if self._process is not None:
            await asyncio.get_running_loop().run_in_executor(None, _wait, self._process, 5.0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()


class ThreadWorker(Worker):
    """In-process mode for trusted envs: the envs run in one thread of the server; no isolation.

    A step past the timeout answers STEP_TIMEOUT and ends this worker's sessions, but the stuck thread cannot
    be killed: it is abandoned, and the worker continues on a fresh thread and host.
    """

    def __init__(self, index: int, *, test_knobs: bool, on_lost: LostCallback) -> None:
        self.index = index
        self.test_knobs = test_knobs
        self.on_lost = on_lost
        self._host = EnvHost(test_knobs=test_knobs)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"resrl-env-{self.index}")
        self._lock = threading.Lock()

    async def start(self) -> None:
        self.pid = os.getpid()

    async def call(self, op: Op, timeout: float) -> Reply:
        host, executor = self._host, self._executor
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def run() -> Reply:
            loop.call_soon_threadsafe(started.set)
            return host.handle(op)

        future = loop.run_in_executor(executor, run)
        try:
            # the timeout covers the op itself, not its wait behind other sessions' ops in this one thread
            waiter = asyncio.ensure_future(started.wait())
            await asyncio.wait({future, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            return await asyncio.wait_for(future, timeout)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and not (task is not None and getattr(task, "cancelling", lambda: 0)()):
                # queued behind an op that timed out: the thread and its envs were replaced before this one ran
                return False, (
                    "ENV_CRASHED",
                    f"this session's {op[0]} was dropped with this thread worker's envs after another op "
                    "passed the step timeout",
                    "create a new session",
                )
            raise
        except asyncio.TimeoutError:
            if host is self._host:  # the first timeout on this host replaces it
                self._host = EnvHost(test_knobs=self.test_knobs)
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"resrl-env-{self.index}")
                executor.shutdown(wait=False, cancel_futures=True)
                self.restarts += 1
                reason = (
                    "ENV_CRASHED",
                    f"a session's {op[0]} passed the step timeout; this thread worker's envs were dropped",
                    "create a new session",
                )
                self.on_lost(self, op[1], reason)
            return False, ("STEP_TIMEOUT", f"{op[0]} took longer than the step timeout", None)

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._host.close_all)
        self._executor.shutdown(wait=False, cancel_futures=True)
