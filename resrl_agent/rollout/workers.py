"""Env runners: where an episode's env lives while the rollout loop plays it.

``inline`` runs the env in the loop's own thread (the deterministic sequential mode), ``thread`` in a worker thread
(cheap; a hung step is abandoned after its timeout), ``process`` in its own worker process (crash isolation: a
segfault or a hung step kills only that process, which is restarted for the next episode). Every runner has the
same synchronous calls, ``reset`` and ``step``; the loop submits them to an executor so envs step in parallel. Any
failure becomes an :class:`~envs.base.EnvError`, which ends only that episode (``stop_reason="env_error"``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

from envs.base import EnvError

logger = logging.getLogger(__name__)

__all__ = [
    "EnvRunner",
    "InlineExecutor",
    "PooledEnvRunner",
    "ProcessEnvRunner",
    "SharedEnvProcess",
    "WorkerKind",
    "make_runner",
]

WorkerKind = Literal["inline", "thread", "process"]
StepResult = tuple[str, float, bool, bool, dict[str, Any]]


def _make_env(env_id: str, env_kwargs: dict[str, Any]) -> Any:
    import gymnasium as gym

    import envs  # noqa: F401 - registers the env ids

    return gym.make(env_id, **env_kwargs)


class EnvRunner:
    """An env in the caller's thread (``inline`` and ``thread`` modes: the executor decides which thread)."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]) -> None:
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs)
        self.env: Any = None
        self.broken = False  # set after a failure or a timeout: the runner is not reused

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            if self.env is None:
                self.env = _make_env(self.env_id, self.env_kwargs)  # built in the worker: ALFWorld takes seconds
            return getattr(self.env, method)(*args, **kwargs)
        except EnvError:
            self.broken = True
            raise
        except Exception as err:  # an env bug is that episode's failure, not the run's
            self.broken = True
            logger.warning("env %s raised in %s:\n%s", self.env_id, method, traceback.format_exc())
            raise EnvError(f"{self.env_id} {method}() raised {type(err).__name__}: {err}") from err

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        result: tuple[str, dict[str, Any]] = self._call("reset", seed=seed, options=options)
        return result

    def step(self, action: str) -> StepResult:
        result: StepResult = self._call("step", action)
        return result

    def abandon(self) -> None:
        """Called when a call timed out: a thread cannot be killed, so the env is left to that thread."""
        self.broken = True

    def close(self) -> None:
        if self.env is not None and not self.broken:
            try:
                self.env.close()
            except Exception:  # closing a failed env must not hide the failure that broke it
                logger.debug("closing %s failed", self.env_id, exc_info=True)
        self.env = None


def _process_main(conn: Any, env_id: str, env_kwargs: dict[str, Any]) -> None:  # pragma: no cover - child process
    """The worker process: build the env, then answer (method, args) requests until told to close."""
    env = None
    while True:
        try:
            method, args, kwargs = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if method == "close":
            if env is not None:
                env.close()
            conn.send(("ok", None))
            return
        try:
            if env is None:
                env = _make_env(env_id, env_kwargs)
            conn.send(("ok", getattr(env, method)(*args, **kwargs)))
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {err}", traceback.format_exc()))


class ProcessEnvRunner(EnvRunner):
    """An env in its own process, spoken to over a pipe; a crash or a call past ``timeout_s`` kills only it."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], *, timeout_s: float | None, start_method: str) -> None:
        super().__init__(env_id, env_kwargs)
        self.timeout_s = timeout_s
        ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            # children fork from a server that has already imported the env's modules: ALFWorld's textworld
            # import takes seconds, paid once instead of once per worker
            ctx.set_forkserver_preload(["envs", *_entry_modules(env_id)])
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_process_main, args=(child, env_id, self.env_kwargs), daemon=True)
        self._proc.start()
        child.close()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise EnvError(f"{self.env_id} worker process is gone")
        try:
            self._conn.send((method, args, kwargs))
            if not self._conn.poll(self.timeout_s):
                self._kill()
                raise EnvError(f"{self.env_id} {method}() took longer than {self.timeout_s} s; its worker was killed")
            reply = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            self._proc.join(timeout=1.0)
            code = self._proc.exitcode
            self._kill()
            raise EnvError(f"{self.env_id} worker process died during {method}() (exit code {code})") from None
        if reply[0] == "error":
            self.broken = True
            logger.warning("env %s raised in %s (worker process):\n%s", self.env_id, method, reply[2])
            raise EnvError(f"{self.env_id} {method}() raised {reply[1]}")
        return reply[1]

    def _kill(self) -> None:
        self.broken = True
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=5.0)

    def abandon(self) -> None:
        self._kill()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def close(self) -> None:
        if not self.broken and self._proc.is_alive():
            try:
                self._conn.send(("close", (), {}))
                if self._conn.poll(5.0):
                    self._conn.recv()
            except (EOFError, BrokenPipeError, OSError):
                pass
            self._proc.join(timeout=5.0)
        self._kill()
        self._conn.close()


def _pool_main(conn: Any, env_id: str, env_kwargs: dict[str, Any]) -> None:  # pragma: no cover - child process
    """A shared worker process: several envs, keyed by the runner that owns each."""
    hosted: dict[int, Any] = {}
    while True:
        try:
            key, method, args, kwargs = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if method == "close":
            for env in hosted.values():
                env.close()
            conn.send(("ok", None))
            return
        try:
            if method == "close_env":
                env = hosted.pop(key, None)
                if env is not None:
                    env.close()
                conn.send(("ok", None))
                continue
            if key not in hosted:
                hosted[key] = _make_env(env_id, env_kwargs)
            conn.send(("ok", getattr(hosted[key], method)(*args, **kwargs)))
        except Exception as err:
            hosted.pop(key, None)
            conn.send(("error", f"{type(err).__name__}: {err}", traceback.format_exc()))


class SharedEnvProcess:
    """One worker process hosting several envs (``max_env_processes``): start-up and warm caches are paid once per
    process, at the price of isolation: a crash or a hung call ends every episode the process hosts."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], *, timeout_s: float | None, start_method: str) -> None:
        self.env_id, self.timeout_s = env_id, timeout_s
        ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            ctx.set_forkserver_preload(["envs", *_entry_modules(env_id)])
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_pool_main, args=(child, env_id, dict(env_kwargs)), daemon=True)
        self._proc.start()
        child.close()
        self.lock = threading.Lock()
        self.broken = False
        self.next_key = 0

    def call(self, key: int, method: str, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            if self.broken:
                raise EnvError(f"{self.env_id} worker process is gone")
            try:
                self._conn.send((key, method, args, kwargs))
                if not self._conn.poll(self.timeout_s):
                    self.kill()
                    raise EnvError(
                        f"{self.env_id} {method}() took longer than {self.timeout_s} s; its worker was killed"
                    )
                reply = self._conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                self._proc.join(timeout=1.0)
                code = self._proc.exitcode
                self.kill()
                raise EnvError(f"{self.env_id} worker process died during {method}() (exit code {code})") from None
        if reply[0] == "error":
            logger.warning("env %s raised in %s (shared worker process):\n%s", self.env_id, method, reply[2])
            raise EnvError(f"{self.env_id} {method}() raised {reply[1]}")
        return reply[1]

    def kill(self) -> None:
        self.broken = True
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=5.0)

    def close(self) -> None:
        if not self.broken and self._proc.is_alive():
            with contextlib.suppress(EnvError):
                self.call(-1, "close")
            self._proc.join(timeout=5.0)
        self.kill()
        self._conn.close()


class PooledEnvRunner(EnvRunner):
    """An env hosted in a :class:`SharedEnvProcess`."""

    def __init__(self, shared: SharedEnvProcess) -> None:
        super().__init__(shared.env_id, {})
        self.shared = shared
        self.key = shared.next_key
        shared.next_key += 1

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.shared.call(self.key, method, *args, **kwargs)
        except EnvError:
            self.broken = True
            raise

    def abandon(self) -> None:
        self.broken = True
        self.shared.kill()

    def close(self) -> None:
        if not self.broken and not self.shared.broken:
            with contextlib.suppress(EnvError):
                self.shared.call(self.key, "close_env")


def _entry_modules(env_id: str) -> list[str]:
    """The env's own module, for the forkserver to import once (none for an id registered elsewhere)."""
    import envs

    spec = envs.SPECS.get(env_id)
    return [spec.entry_point.partition(":")[0]] if spec is not None else []


def make_runner(
    kind: WorkerKind,
    env_id: str,
    env_kwargs: dict[str, Any],
    *,
    timeout_s: float | None,
    start_method: str = "forkserver",
) -> EnvRunner:
    if kind == "process":
        return ProcessEnvRunner(env_id, env_kwargs, timeout_s=timeout_s, start_method=start_method)
    if kind in ("inline", "thread"):
        return EnvRunner(env_id, env_kwargs)
    raise ValueError(f"env_workers={kind!r}; choose inline, thread or process")


class InlineExecutor:
    """An executor that runs each call at once in the caller's thread (the deterministic sequential mode)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


def make_executor(kind: WorkerKind, workers: int) -> ThreadPoolExecutor | InlineExecutor:
    if kind == "inline":
        return InlineExecutor()
    return ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="resrl-env")
