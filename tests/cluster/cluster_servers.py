"""Helpers: real env servers (`python -m servers.env_server`, uvicorn) as subprocesses on 127.0.0.1."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen[bytes]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)

    def steps(self) -> int:
        """``resrl_env_steps_total`` summed over env ids (the server's Prometheus counter)."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        return int(sum(float(v) for v in re.findall(r"^resrl_env_steps_total\{[^}]*\} (\S+)$", text, re.M)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(*extra: str, envs: str = "resrl/Echo-v0") -> ServerProcess:
    port = free_port()
    command = [sys.executable, "-m", "servers.env_server", "--envs", envs, "--port", str(port), *extra]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return ServerProcess(url, proc)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"env server on port {port} did not start (exit code {proc.poll()})")
        time.sleep(0.1)
