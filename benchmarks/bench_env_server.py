"""Env server benchmark: ours (worker processes, and threads) against OpenEnv's server, same echo workload.

Workload per configuration: S sessions (1, 8, 64) each open, reset, ``--steps`` steps, close, all concurrently
(ours over the WebSocket: create over HTTP, then reset, steps and the close op on the session's socket);
reported: steps/s over the whole run, p50/p99 step latency. Transports: ours over HTTP (one request per step),
over the session WebSocket, and with the batched step (one WebSocket message steps all S sessions); OpenEnv
over its /ws (its sessions live only on the WebSocket; its HTTP /step is stateless, so it is not comparable).
Both servers run one uvicorn worker pinned to CPU 0 (our env worker processes inherit that placement, so by
default the server starts one of them: its default is the CPUs it may run on); the client (aiohttp, asyncio)
runs pinned to CPU 1. A churn run (create, 10 steps, close, ``--churn`` times) reports the server's memory
(server + workers RSS) before and after.

The machine may be shared, so the sides are measured interleaved: every server is started first and warmed up
(one short unrecorded run of each configuration), then each size runs ``--rounds`` rounds, and each round runs
every configuration once, in an order rotated from round to round. Each row prints the median over the rounds
(steps/s with its min-max, p50, p99), the ratios compare medians, and "won" counts the rounds in which ours
beat OpenEnv's run of the same round. The load average is printed before and after.

    python benchmarks/bench_env_server.py [--steps 500] [--sizes 1,8,64] [--rounds 5] [--churn 10000] [--quick]

The OpenEnv rows need ``openenv-core`` (not a dependency of resrl-agent; it pulls gradio, so keep it out of the
project's venv) in the Python that runs this script, which starts both servers with its own interpreter. So use
a separate venv holding both::

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install -e . openenv-core aiohttp
    /work/bench-venv/bin/python benchmarks/bench_env_server.py --quick

Without ``openenv-core`` the OpenEnv rows are skipped and the script says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU, CLIENT_CPU = 0, 1


# -- servers (each in its own process, pinned to SERVER_CPU) ----------------------------------------------------
def _serve_ours(port: int, isolation: str, workers: int | None) -> None:
    from servers.env_server import EnvServerSettings, serve

    options: dict[str, Any] = {"workers": workers} if workers else {}
    settings = EnvServerSettings(
        envs=["resrl/Echo-v0"], isolation=isolation, max_sessions=100_000, session_ttl_s=3600, **options
    )
    serve(settings, "127.0.0.1", port, log_level="warning")


def _serve_openenv(port: int) -> None:
    import uvicorn
    from openenv.core import Action, Environment, Observation, State, create_fastapi_app

    class EchoAction(Action):
        message: str

    class EchoObservation(Observation):
        echoed: str = ""

    class EchoEnvironment(Environment):
        SUPPORTS_CONCURRENT_SESSIONS = True

        def __init__(self) -> None:
            super().__init__()
            self._state = State(episode_id="0", step_count=0)

        def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> EchoObservation:
            self._state = State(episode_id=episode_id or "0", step_count=0)
            return EchoObservation(echoed="Say the word: lamp", done=False, reward=0.0)

        def step(self, action: EchoAction, timeout_s: float | None = None, **kwargs: Any) -> EchoObservation:
            self._state.step_count += 1
            return EchoObservation(echoed=f"You said: {action.message}", done=False, reward=0.0)

        @property
        def state(self) -> State:
            return self._state

    app = create_fastapi_app(EchoEnvironment, EchoAction, EchoObservation, max_concurrent_envs=100_000)
    # "critical": openenv 0.3.0 logs a traceback for every client that closes its socket (the close races its own)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="critical")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(kind: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [sys.executable, __file__, "--serve", kind, "--port", str(port), *extra]
    process = subprocess.Popen(command, cwd=ROOT, preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(0.5 if kind == "ours" else 0.2)
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB)."""
    total = 0
    pids = [str(pid), *subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# -- clients -----------------------------------------------------------------------------------------------------
async def _ours_session(http: aiohttp.ClientSession, url: str, steps: int, mode: str, lat: list[float]) -> None:
    async with http.post(url + "/v1/sessions", json={"env_id": "resrl/Echo-v0", "kwargs": {"max_steps": 10**9}}) as r:
        session_id = (await r.json())["session_id"]
    if mode == "http":
        async with http.post(f"{url}/v1/sessions/{session_id}/reset", json={"seed": 0}) as r:
            await r.read()
        for i in range(steps):
            start = time.perf_counter()
            async with http.post(f"{url}/v1/sessions/{session_id}/step", json={"action": f"a{i}"}) as r:
                await r.read()
            lat.append(time.perf_counter() - start)
    else:
        async with http.ws_connect(f"{url.replace('http', 'ws')}/v1/sessions/{session_id}/ws") as ws:
            await ws.send_str('{"op":"reset","seed":0}')
            await ws.receive_str()
            for i in range(steps):
                start = time.perf_counter()
                await ws.send_str(json.dumps({"op": "step", "action": f"a{i}"}))
                answer = await ws.receive_str()
                lat.append(time.perf_counter() - start)
            assert '"result"' in answer, answer
            await ws.send_str('{"op":"close"}')  # the session ends on its own socket, as OpenEnv's does
            assert json.loads(await ws.receive_str())["result"]["closed"] is True
        return
    async with http.delete(f"{url}/v1/sessions/{session_id}") as r:
        await r.read()


async def _ours_batched(http: aiohttp.ClientSession, url: str, sessions: int, steps: int, lat: list[float]) -> None:
    async with http.ws_connect(url.replace("http", "ws") + "/v1/ws") as ws:
        ids = []
        for _ in range(sessions):
            await ws.send_str('{"op":"create","env_id":"resrl/Echo-v0","kwargs":{"max_steps":1000000000}}')
            ids.append(json.loads(await ws.receive_str())["result"]["session_id"])
        for sid in ids:
            await ws.send_str(json.dumps({"op": "reset", "session_id": sid, "seed": 0}))
            await ws.receive_str()
        for i in range(steps):
            message = json.dumps({"op": "step_batch", "steps": [{"session_id": s, "action": f"a{i}"} for s in ids]})
            start = time.perf_counter()
            await ws.send_str(message)
            answer = await ws.receive_str()
            lat.extend([time.perf_counter() - start] * sessions)
        assert '"error"' not in answer, answer[:300]
        for sid in ids:
            await ws.send_str(json.dumps({"op": "close", "session_id": sid}))
            await ws.receive_str()


async def _openenv_session(http: aiohttp.ClientSession, url: str, steps: int, lat: list[float]) -> None:
    async with http.ws_connect(url.replace("http", "ws") + "/ws") as ws:
        await ws.send_str('{"type":"reset","data":{}}')
        await ws.receive_str()
        for i in range(steps):
            start = time.perf_counter()
            await ws.send_str(json.dumps({"type": "step", "data": {"message": f"a{i}"}}))
            answer = await ws.receive_str()
            lat.append(time.perf_counter() - start)
        assert "error" not in answer[:40], answer  # leaving the block closes the socket, which ends the session


async def _run(kind: str, url: str, sessions: int, steps: int) -> dict[str, float]:
    lat: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        if kind == "batched":
            await _ours_batched(http, url, sessions, steps, lat)
        elif kind == "openenv-ws":
            await asyncio.gather(*(_openenv_session(http, url, steps, lat) for _ in range(sessions)))
        else:
            mode = "http" if kind.endswith("http") else "ws"
            await asyncio.gather(*(_ours_session(http, url, steps, mode, lat) for _ in range(sessions)))
        elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "steps_per_s": sessions * steps / elapsed,
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3,
    }


async def _churn(url: str, total: int, concurrency: int = 16) -> None:
    counter = iter(range(total))

    async def loop(ws: aiohttp.ClientWebSocketResponse) -> None:
        for _ in counter:
            await ws.send_str('{"op":"create","env_id":"resrl/Echo-v0"}')
            sid = json.loads(await ws.receive_str())["result"]["session_id"]
            await ws.send_str(json.dumps({"op": "reset", "session_id": sid, "seed": 0}))
            await ws.receive_str()
            for i in range(10):
                await ws.send_str(json.dumps({"op": "step", "session_id": sid, "action": f"a{i}"}))
                await ws.receive_str()
            await ws.send_str(json.dumps({"op": "close", "session_id": sid}))
            await ws.receive_str()

    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(url.replace("http", "ws") + "/v1/ws") for _ in range(concurrency)]
        await asyncio.gather(*(loop(ws) for ws in sockets))
        for ws in sockets:
            await ws.close()


def _print_row(name: str, size: int, runs: list[dict[str, float]]) -> dict[str, float]:
    rates = [run["steps_per_s"] for run in runs]
    row = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(
        f"{name:22s} S={size:3d}  {row['steps_per_s']:7.0f} steps/s ({min(rates):.0f}-{max(rates):.0f})  "
        f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  [median of {len(runs)}]",
        flush=True,
    )
    return row


def _load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--sizes", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per size (medians are reported)")
    parser.add_argument("--churn", type=int, default=10_000)
    parser.add_argument(
        "--workers", type=int, default=None, help="our env worker processes (default: the server's own default)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="iteration mode: process mode and OpenEnv only, per-session WebSocket only, 300 steps, no churn",
    )
    parser.add_argument("--serve", choices=["ours", "ours-thread", "openenv"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.churn = min(args.steps, 300), 0
    if args.serve == "openenv":
        _serve_openenv(args.port)
        return
    if args.serve is not None:
        _serve_ours(args.port, "thread" if args.serve == "ours-thread" else "process", args.workers)
        return

    if len(os.sched_getaffinity(0)) < 2:
        print("warning: fewer than 2 CPUs: server and client share one")
    else:
        os.sched_setaffinity(0, {CLIENT_CPU})
    try:
        from importlib.metadata import version

        import openenv  # noqa: F401

        openenv_version: str | None = version("openenv-core")
    except ImportError:
        openenv_version = None
        print("openenv-core is NOT installed: the OpenEnv rows are skipped (see this script's docstring)")
    sizes = [int(s) for s in args.sizes.split(",")]
    extra = ["--workers", str(args.workers)] if args.workers else []
    plan: list[tuple[str, str, list[str]]] = [("ours-process", "ours", extra)]
    if not args.quick:
        plan.append(("ours-thread", "ours-thread", extra))
    if openenv_version:
        plan.append(("openenv", "openenv", []))
    print(f"{_load()}; {args.steps} steps per session, {args.rounds} interleaved rounds per size", flush=True)
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    results: dict[tuple[str, int], dict[str, float]] = {}
    paired: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for label, kind, options in plan:
            servers[label] = _start(kind, *options)
        configs: list[tuple[str, str, str]] = []  # (row name, server label, transport)
        for label, kind, _options in plan:
            transports = ["openenv-ws"] if kind == "openenv" else ["ws"] if args.quick else ["http", "ws", "batched"]
            configs += [(t if kind == "openenv" else f"{label}/{t}", label, t) for t in transports]
        for _name, label, transport in configs:  # warm-up, not recorded: first sessions, imports, env checkers
            asyncio.run(_run(transport, servers[label][1], 2, 20))
        for size in sizes:
            for turn in range(args.rounds):
                order = configs[turn % len(configs) :] + configs[: turn % len(configs)]
                for name, label, transport in order:
                    run = asyncio.run(_run(transport, servers[label][1], size, args.steps))
                    paired.setdefault((name, size), []).append(run)
            for name, _label, _transport in configs:
                results[(name, size)] = _print_row(name, size, paired[(name, size)])
        if args.churn:
            process, url = servers["ours-process"]
            before = _rss_mb(process.pid)
            start = time.perf_counter()
            asyncio.run(_churn(url, args.churn))
            after = _rss_mb(process.pid)
            print(
                f"churn: {args.churn} sessions (create, reset, 10 steps, close)"
                f" in {time.perf_counter() - start:.1f}"
                f" s; server+workers RSS {before:.1f} MB -> {after:.1f} MB",
                flush=True,
            )
    finally:
        for process, _url in servers.values():
            _stop(process)
    print(_load(), flush=True)
    if openenv_version:
        print(f"\nratios against OpenEnv {openenv_version} (openenv /ws), medians; won = rounds where ours was faster:")
        for size in sizes:
            base = results[("openenv-ws", size)]
            base_runs = paired[("openenv-ws", size)]
            for name in ("ours-process/ws", "ours-process/batched", "ours-thread/ws", "ours-thread/batched"):
                if (name, size) not in results:
                    continue
                row = results[(name, size)]
                ours_runs = paired[(name, size)]
                won = sum(a["steps_per_s"] > b["steps_per_s"] for a, b in zip(ours_runs, base_runs, strict=True))
                print(
                    f"  S={size:3d} {name:22s} steps/s x{row['steps_per_s'] / base['steps_per_s']:5.2f}  "
                    f"p99 x{row['p99_ms'] / base['p99_ms']:5.2f}  won {won}/{len(base_runs)}"
                )


if __name__ == "__main__":
    main()
