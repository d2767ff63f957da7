"""A test env with per-task faults, importable in worker processes: ``gym.make("faulty_env:test/Faulty-v0")``.

Task ``echo-1`` kills its own process at the first step, ``echo-2`` hangs for a minute, ``echo-3`` raises a plain
exception (an env bug); every other task behaves like Echo.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from envs.base import register
from envs.echo.env import EchoEnv

ENV_ID = "faulty_env:test/Faulty-v0"


class FaultyEnv(EchoEnv):
    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._task_id == "echo-1":
            os.kill(os.getpid(), signal.SIGKILL)
        if self._task_id == "echo-2":
            time.sleep(60)
        if self._task_id == "echo-3":
            raise ZeroDivisionError("a bug in the env")
        return super().step(action)


register("test/Faulty-v0", "faulty_env:FaultyEnv")
