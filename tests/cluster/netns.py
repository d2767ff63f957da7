"""Hosts on one machine: network namespaces joined by veth pairs to a bridge in a "switch" namespace.

``Fabric(tag)`` creates the switch namespace; ``add_host(name)`` a host namespace with ``eth0`` at
``10.213.77.<n>/24`` cabled to the bridge; ``attach_root()`` cables the test process's own namespace too (so the
test can watch the hosts); ``cut(name)`` takes a host's switch port down (its packets are dropped, as when a
cable is pulled: connections hang, nothing is refused). ``close()`` kills every process left in the namespaces,
by pid (``ip netns pids``), and deletes the namespaces, whose veth pairs go with them. Needs root.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field

SUBNET = "10.213.77"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def namespaces_available() -> str | None:
    """None when this process can create network namespaces and veth pairs, else the reason it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run as root or in a privileged CI container"
    probe = f"resrl-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "pa", "type", "veth", "peer", "name", "pb")
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        return f"cannot create a network namespace with a veth pair here ({detail.strip()})"
    finally:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            _ip("netns", "del", probe)
    return None


@dataclass
class Fabric:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    hosts: dict[str, str] = field(default_factory=dict)  # host name -> IP address
    ports: dict[str, str] = field(default_factory=dict)  # host name -> its port (veth end) in the switch
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    scratch: str = ""  # a short temp dir the test may use (removed by the test)

    def __post_init__(self) -> None:
        self.switch = f"rsw-{self.tag}"
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def ns(self, name: str) -> str:
        return f"r{name}-{self.tag}"

    def _cable(self, index: int, inside_ns: str | None, address: str) -> str:
        near, far = f"rh{index}{self.tag}", f"rs{index}{self.tag}"  # <= 15 characters
        _ip("link", "add", near, "type", "veth", "peer", "name", far)
        _ip("link", "set", far, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", far, "master", "br0")
        _ip("-n", self.switch, "link", "set", far, "up")
        prefix = [] if inside_ns is None else ["-n", inside_ns]
        if inside_ns is not None:
            _ip("link", "set", near, "netns", inside_ns)
            _ip(*prefix, "link", "set", near, "name", "eth0")
            near = "eth0"
            _ip(*prefix, "link", "set", "lo", "up")
        _ip(*prefix, "addr", "add", f"{address}/24", "dev", near)
        _ip(*prefix, "link", "set", near, "up")
        return far

    def add_host(self, name: str) -> str:
        """A new host namespace; returns its IP address."""
        index = len(self.hosts) + 1
        address = f"{SUBNET}.{index}"
        _ip("netns", "add", self.ns(name))
        self.hosts[name] = address
        self.ports[name] = self._cable(index, self.ns(name), address)
        return address

    def attach_root(self) -> str:
        """Cable the caller's own namespace to the switch (address .254); removed with the switch."""
        self._cable(254, None, f"{SUBNET}.254")
        return f"{SUBNET}.254"

    def popen(self, host: str, command: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *command], **kwargs)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    def cut(self, host: str) -> None:
        """Pull the host's cable: its switch port goes down, its packets are dropped."""
        _ip("-n", self.switch, "link", "set", self.ports[host], "down")

    def pids(self, host: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.ns(host)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        """Kill what we started (our Popen objects, then anything left in our namespaces), delete the namespaces."""
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for host in self.hosts:
            for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
                for pid in self.pids(host):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + grace
                while self.pids(host) and time.monotonic() < deadline:
                    time.sleep(0.1)
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for name in [*(self.ns(h) for h in self.hosts), self.switch]:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", name)
