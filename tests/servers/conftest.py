"""A real uvicorn env server on 127.0.0.1 (a free port), in a thread of the test process."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from servers.env_server import EnvServerSettings, create_app
from servers.env_sessions import SessionManager
from servers.limits import uvicorn_options


@dataclass
class Running:
    url: str
    app: FastAPI
    server: uvicorn.Server

    @property
    def manager(self) -> SessionManager:
        manager: SessionManager = self.app.state.manager
        return manager


@contextlib.contextmanager
def running_server(**settings: Any) -> Iterator[Running]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parsed = EnvServerSettings(**settings)
    app = create_app(parsed)
    limits = uvicorn_options(
        max_connections=parsed.max_connections,
        keep_alive_s=parsed.keep_alive_s,
        header_timeout_s=parsed.header_timeout_s,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **limits))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the env server did not start")
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def fault_server() -> Iterator[Running]:
    """Two worker processes, fault-injection knobs on, a 1 s step timeout."""
    with running_server(workers=2, test_knobs=True, step_timeout_s=1.0, max_sessions=64) as running:
        yield running
