"""Fixtures: two real env servers (uvicorn subprocesses on 127.0.0.1)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from cluster_servers import ServerProcess, start_server


@pytest.fixture()
def two_servers() -> Iterator[list[ServerProcess]]:
    """Two Echo servers (thread isolation, one worker each, fault-injection knobs on)."""
    servers: list[ServerProcess] = []
    try:
        for _ in range(2):
            servers.append(start_server("--workers", "1", "--isolation", "thread", "--test-knobs"))
        yield servers
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGCONT)
                server.proc.kill()
            server.proc.wait(timeout=10)
