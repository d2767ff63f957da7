"""``resrl-agent serve env``: a real server process, bearer token from a file, graceful shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from resrl_agent.cli import app


def test_serve_env_refuses_an_unknown_env_id_before_binding() -> None:
    result = CliRunner().invoke(app, ["serve", "env", "--envs", "resrl/Nope-v0"])
    assert result.exit_code == 2 and "unknown env ids ['resrl/Nope-v0']" in result.output


def test_serve_env_runs_with_a_token_file_and_closes_its_workers_on_sigterm(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    arguments = ["serve", "env", "--envs", "resrl/Echo-v0", "--port", str(port), "--workers", "2"]
    command = [sys.executable, "-c", "from resrl_agent.cli import app; app()", *arguments, "--token-file", str(token)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(url + "/healthz", headers={"authorization": "Bearer t0ken"}, timeout=1).json()
                if health["workers"] == 2:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.1)
        assert httpx.get(url + "/v1/envs").status_code == 401
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}  # without the token: liveness only
        envs = httpx.get(url + "/v1/envs", headers={"authorization": "Bearer t0ken"}).json()["envs"]
        assert [e["env_id"] for e in envs] == ["resrl/Echo-v0"]
        workers = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    output = server.stdout.read().decode() if server.stdout else ""
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM
    assert server.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in output
    time.sleep(0.2)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
