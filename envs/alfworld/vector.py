"""Many ALFWorld envs stepped in parallel worker processes (the engine is CPU-bound Python, ~270 steps/s a process).

Env ``i`` lives in worker ``i % num_workers``; a step sends every worker its commands first and then gathers the
answers, so the workers compute at the same time. Every call returns one :class:`EnvResult` per env asked.

Robustness: an exception inside one env (an ``EnvError`` from the engine) is that env's error result, and the worker
goes on. A worker that dies (killed, segfault) or misses ``timeout_s`` gives an error result to each of its envs; it is
restarted at the next ``reset`` of one of them, and the other workers are untouched. ``close`` (also run by a
finalizer and at interpreter exit) stops every worker; workers also exit by themselves when the parent's pipe closes.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from envs.base import EnvError

logger = logging.getLogger(__name__)


@dataclass
class EnvResult:
    """One env's answer to a vector ``reset`` (reward 0, not done) or ``step``; ``error`` is set when it failed."""

    observation: str = ""
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated or self.error is not None


def _worker_main(conn: Connection, env_kwargs: dict[str, Any]) -> None:
    """Worker loop: own a few AlfworldEnv instances and answer ("reset"|"step"|"close", items) messages."""
    from envs.alfworld.env import AlfworldEnv

    envs: dict[int, AlfworldEnv] = {}
    try:
        while True:
            try:
                command, items = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if command == "close":
                return
            answers = []
            for item in items:
                slot = item[0]
                try:
                    if command == "reset":
                        _, seed, options = item
                        if slot not in envs:
                            envs[slot] = AlfworldEnv(**env_kwargs)
                        observation, info = envs[slot].reset(seed=seed, options=options)
                        answers.append(EnvResult(observation, 0.0, False, False, info))
                    elif command == "step":
                        env = envs.get(slot)
                        if env is None:
                            raise EnvError(f"env {slot} was never reset in this worker")
                        observation, reward, terminated, truncated, info = env.step(item[1])
                        answers.append(EnvResult(observation, float(reward), terminated, truncated, info))
                    else:
                        raise EnvError(f"unknown worker command {command!r}")
                except Exception as error:
                    answers.append(EnvResult(error=f"{type(error).__name__}: {error}"))
            conn.send(answers)
    finally:
        for env in envs.values():
            with contextlib.suppress(Exception):
                env.close()
        conn.close()


class _Worker:
    def __init__(self, context: Any, env_kwargs: dict[str, Any]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child, env_kwargs), daemon=True, name="resrl-alfworld-worker"
        )
        self.process.start()
        child.close()

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def stop(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(Exception):
            self.conn.send(("close", []))
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.conn.close()


def _stop_all(workers: list[_Worker | None]) -> None:
    for worker in workers:
        if worker is not None:
            worker.stop()


class AlfworldVectorEnv:
    """``num_envs`` ALFWorld envs in ``num_workers`` processes (default: one process per env).

    Args:
        env_kwargs: keyword arguments of every :class:`~envs.alfworld.env.AlfworldEnv`.
        timeout_s: how long one call may wait for a worker before that worker counts as crashed.
        start_method: multiprocessing start method; "spawn" is safe when the parent has threads.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        num_workers: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        timeout_s: float = 300.0,
        start_method: str = "spawn",
    ) -> None:
        if num_envs < 1:
            raise EnvError(f"num_envs={num_envs} must be >= 1")
        num_workers = num_envs if num_workers is None else num_workers
        if not 1 <= num_workers <= num_envs:
            raise EnvError(f"num_workers={num_workers} must be between 1 and num_envs={num_envs}")
        env_kwargs = dict(env_kwargs or {})
        if env_kwargs.get("data_dir") is None:
            from envs.alfworld.env import AlfworldEnv

            # Unpack or generate the games once here, not in every worker; this also validates the kwargs.
            env_kwargs["data_dir"] = str(AlfworldEnv(**env_kwargs).games_root)
        self.num_envs = num_envs
        self.num_workers = num_workers
        self.env_kwargs = env_kwargs
        self.timeout_s = timeout_s
        self._context = mp.get_context(start_method)
        self._workers: list[_Worker | None] = [None] * num_workers
        self._broken: set[int] = set()  # envs whose episode a crash ended; they need a reset
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)
        self.restarts = 0

    def worker_pids(self) -> list[int | None]:
        return [w.process.pid if w is not None else None for w in self._workers]

    def reset(
        self,
        options: Sequence[dict[str, Any] | None] | None = None,
        *,
        seeds: Sequence[int | None] | None = None,
        indices: Sequence[int] | None = None,
    ) -> list[EnvResult]:
        """Reset the envs in ``indices`` (all by default); ``options[k]``/``seeds[k]`` go to ``indices[k]``."""
        indices = self._indices(indices)
        options = list(options) if options is not None else [None] * len(indices)
        seeds = list(seeds) if seeds is not None else [None] * len(indices)
        if len(options) != len(indices) or len(seeds) != len(indices):
            raise EnvError(f"got {len(options)} options and {len(seeds)} seeds for {len(indices)} envs")
        for index in indices:
            self._broken.discard(index)
        items = [(i, seed, option) for i, seed, option in zip(indices, seeds, options, strict=True)]
        return self._call("reset", items, start=True)

    def step(self, actions: Sequence[str], indices: Sequence[int] | None = None) -> list[EnvResult]:
        """Step the envs in ``indices`` (all by default) with ``actions[k]`` for ``indices[k]``."""
        indices = self._indices(indices)
        if len(actions) != len(indices):
            raise EnvError(f"got {len(actions)} actions for {len(indices)} envs")
        return self._call("step", list(zip(indices, actions, strict=True)), start=False)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> AlfworldVectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------------------------

    def _indices(self, indices: Sequence[int] | None) -> list[int]:
        if not self._finalizer.alive:
            raise EnvError("this AlfworldVectorEnv is closed")
        indices = list(range(self.num_envs)) if indices is None else list(indices)
        if len(set(indices)) != len(indices) or any(not 0 <= i < self.num_envs for i in indices):
            raise EnvError(f"indices {indices} must be distinct and in [0, {self.num_envs})")
        return indices

    def _call(self, command: str, items: list[tuple[Any, ...]], *, start: bool) -> list[EnvResult]:
        results: dict[int, EnvResult] = {}
        by_worker: dict[int, list[tuple[Any, ...]]] = {}
        for item in items:
            slot = item[0]
            if command == "step" and slot in self._broken:
                results[slot] = EnvResult(error="the episode ended when its worker crashed; reset this env")
                continue
            by_worker.setdefault(slot % self.num_workers, []).append(item)
        sent: list[int] = []
        for w, worker_items in by_worker.items():
            worker = self._workers[w]
            if worker is not None and not worker.alive():
                # Its other envs lost their episodes; a reset can go on in a fresh worker.
                self._fail_worker(w, [] if start else worker_items, results, "its worker process died")
                if not start:
                    continue
                worker = None
                self._broken.difference_update(item[0] for item in worker_items)
            if worker is None:
                if not start:
                    self._fail_worker(w, worker_items, results, "the env was never reset")
                    continue
                worker = self._workers[w] = _Worker(self._context, self.env_kwargs)
            try:
                worker.conn.send((command, worker_items))
                sent.append(w)
            except (OSError, ValueError) as error:
                self._fail_worker(w, worker_items, results, f"sending to its worker failed: {error!r}")
        deadline = time.monotonic() + self.timeout_s
        for w in sent:
            worker = self._workers[w]
            assert worker is not None
            answers = self._receive(worker, deadline)
            if answers is None:
                self._fail_worker(w, by_worker[w], results, "its worker crashed or timed out")
                continue
            for item, answer in zip(by_worker[w], answers, strict=True):
                results[item[0]] = answer
        return [results[item[0]] for item in items]

    @staticmethod
    def _receive(worker: _Worker, deadline: float) -> list[EnvResult] | None:
        while True:
            remaining = deadline - time.monotonic()
            try:
                if worker.conn.poll(min(max(remaining, 0.0), 1.0)):
                    answers: list[EnvResult] = worker.conn.recv()
                    return answers
            except (EOFError, OSError):
                return None
            if remaining <= 0 or not worker.alive():
                return None

    def _fail_worker(self, w: int, items: list[tuple[Any, ...]], results: dict[int, EnvResult], why: str) -> None:
        """Give every env of worker ``w`` an error result, stop the worker, and mark its envs for a reset."""
        worker = self._workers[w]
        if worker is not None:
            logger.warning("ALFWorld worker %s (pid %s): %s", w, worker.process.pid, why)
            worker.stop(timeout=1.0)
            self._workers[w] = None
            self.restarts += 1
        for slot in range(w, self.num_envs, self.num_workers):
            self._broken.add(slot)
        for item in items:
            results[item[0]] = EnvResult(error=f"env {item[0]}: {why}")
