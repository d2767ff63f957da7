"""A real uvicorn tool server on a free 127.0.0.1 port, in a thread of the test process (for the tool server tests)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from servers.tool_server import ToolServerSettings, create_app


@contextlib.contextmanager
def serving(settings: ToolServerSettings, **uvicorn_kwargs: Any) -> Iterator[str]:
    """Yield the base URL of a tool server with ``settings`` (and uvicorn options); stop it afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", **uvicorn_kwargs)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
