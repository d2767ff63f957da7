"""A sandboxed ``python_exec`` tool: run code in a child process with CPU, memory, time and output limits.

The child runs ``python -I`` (isolated mode: no user site-packages, no PYTHON* env vars) in a fresh empty temp
directory that is deleted afterwards, with a minimal environment, in its own process group (killed as a whole on
timeout), under rlimits (address space, CPU seconds, file size, no core files), and with an audit hook installed
before the user code runs that refuses sockets, subprocesses, ``os.system``/``exec``/``fork``: no network and no
child processes. This is a guard for model-written code on a training machine, not a container boundary; run the
tool server in a container for untrusted multi-tenant use.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from tools.core import ToolError, tool

__all__ = ["ExecResult", "python_exec", "run_python"]

# Runs in the child before the user's code: from here on, network and process creation raise PermissionError.
_PRELUDE = r"""
import sys
_BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
            "os.forkpty", "pty.", "ctypes.dlopen", "urllib.Request")
def _guard(event, args):
    if event.startswith(_BLOCKED) and event not in ("socket.gethostname",):
        raise PermissionError(f"python_exec sandbox: '{event}' is not allowed (no network, no subprocesses)")
sys.addaudithook(_guard)
del _guard
_code = sys.stdin.read()
__name__ = "__main__"
exec(compile(_code, "<python_exec>", "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True, slots=True)
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_text(self) -> str:
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append(f"[stderr]\n{self.stderr.rstrip()}")
        if self.timed_out:
            parts.append(f"[killed: time limit exceeded after {self.duration_s:.1f}s]")
        elif self.exit_code not in (0, None):
            parts.append(f"[exit code {self.exit_code}]")
        return "\n".join(parts) if parts else "(no output)"


def _limits(memory_mb: int, cpu_s: int, file_mb: int) -> None:
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 1024 * 1024, file_mb * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    cpu_s: int | None = None,
    file_mb: int = 16,
    max_output_chars: int = 20_000,
) -> ExecResult:
    """Run ``code`` in the sandbox; never raises for anything the code does."""
    cpu_limit = cpu_s if cpu_s is not None else max(1, int(timeout_s) + 1)
    workdir = tempfile.mkdtemp(prefix="python_exec_")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    start = time.monotonic()
    timed_out = False
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", _PRELUDE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: _limits(memory_mb, cpu_limit, file_mb),
        )
        try:
            out, err = process.communicate(code.encode("utf-8", "replace"), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
        exit_code = process.returncode
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    duration = time.monotonic() - start
    # The CPU rlimit ends a busy loop with SIGXCPU before the wall clock does: that is a time-limit kill too.
    timed_out = timed_out or exit_code == -signal.SIGXCPU
    return ExecResult(
        stdout=_clip(out.decode("utf-8", "replace"), max_output_chars),
        stderr=_clip(err.decode("utf-8", "replace"), max_output_chars),
        exit_code=exit_code,
        timed_out=timed_out,
        duration_s=duration,
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... [{len(text) - limit} more characters cut]"


@tool
def python_exec(code: str, timeout_s: float = 10.0) -> str:
    """Run Python code in a sandbox (no network, limited CPU, memory and time) and return its output.

    Args:
        code: The Python source to run; print what you want to see.
        timeout_s: Wall-clock limit in seconds (at most 30).
    """
    result = run_python(code, timeout_s=min(max(timeout_s, 0.1), 30.0))
    if not result.ok:  # the code raised, exited non-zero or was killed: a failed call (MCP isError), same text
        raise ToolError(result.to_text(), code="timeout" if result.timed_out else "tool_failed")
    return result.to_text()
