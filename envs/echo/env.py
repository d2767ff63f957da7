"""A trivial text env: the task is to say one word; every action is echoed back.

Task ``i`` asks for ``WORDS[i % len(WORDS)]``. Saying it wins (reward 1, terminated); anything else is a valid
action that is echoed with reward 0. The episode is truncated after ``max_steps`` actions.

Fault-injection knobs for the env server's tests (``test_only_kwargs``; the server refuses them unless it was
started with ``--test-knobs``): ``step_sleep_s`` sleeps in every step; ``crash_at_step=n`` kills the env's own
process with SIGKILL at step n.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, ClassVar

from envs.base import INFO_AVAILABLE_ACTIONS, INFO_EXPERT_ACTION, EnvError, TextEnv

WORDS = ("apple", "river", "lamp", "stone", "cloud", "garden", "pencil", "orbit")


class EchoEnv(TextEnv):
    """Echo env: ``reset(options={"task_id": "echo-3"})`` asks for word 3; ``step(text)`` echoes text."""

    test_only_kwargs: ClassVar[frozenset[str]] = frozenset({"step_sleep_s", "crash_at_step"})
    # kwargs a client of the env server may set (servers/env_sessions.py check_env_kwargs)
    remote_kwargs: ClassVar[frozenset[str]] = frozenset({"max_steps", "num_tasks"})

    def __init__(
        self,
        *,
        max_steps: int = 8,
        num_tasks: int = len(WORDS),
        render_mode: str | None = None,
        step_sleep_s: float = 0.0,
        crash_at_step: int | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        self.step_sleep_s = float(step_sleep_s)
        self.crash_at_step = crash_at_step
        if max_steps < 1:
            raise EnvError(f"max_steps={max_steps} must be >= 1")
        if num_tasks < 1:
            raise EnvError(f"num_tasks={num_tasks} must be >= 1")
        self.max_steps = max_steps
        self.num_tasks = num_tasks
        self._task_id = ""
        self._word = ""
        self._steps = 0
        self._done = True

    def task_ids(self) -> list[str]:
        return [f"echo-{i}" for i in range(self.num_tasks)]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        task_id = options.get("task_id")
        if task_id is None:
            task_id = f"echo-{int(self.np_random.integers(self.num_tasks))}"
        index = _task_index(str(task_id))
        self._task_id = str(task_id)
        self._word = WORDS[index % len(WORDS)]
        self._steps = 0
        self._done = False
        observation = f"Say the word: {self._word}"
        return self._observe(observation), self._info(observation, action_valid=True, won=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise EnvError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            raise EnvError(f"action must be a str, got {type(action).__name__}")
        self._steps += 1
        if self.crash_at_step is not None and self._steps >= self.crash_at_step:
            os.kill(os.getpid(), signal.SIGKILL)  # fault injection: the process dies as if killed
        if self.step_sleep_s > 0:
            time.sleep(self.step_sleep_s)
        won = action.strip() == self._word
        terminated = won
        truncated = not won and self._steps >= self.max_steps
        self._done = terminated or truncated
        observation = f"You said: {action}"
        info = self._info(observation, action_valid=True, won=won)
        return self._observe(observation), 1.0 if won else 0.0, terminated, truncated, info

    def _info(self, observation: str, *, action_valid: bool, won: bool) -> dict[str, Any]:
        return self.make_info(
            task_id=self._task_id,
            anchor_text=observation,
            action_valid=action_valid,
            won=won,
            **{INFO_AVAILABLE_ACTIONS: [self._word], INFO_EXPERT_ACTION: self._word},
        )


def _task_index(task_id: str) -> int:
    prefix, _, number = task_id.rpartition("-")
    if prefix != "echo" or not number.isdigit():
        raise EnvError(f"unknown task_id {task_id!r} for resrl/Echo-v0", hint="task ids look like 'echo-3'")
    return int(number)
