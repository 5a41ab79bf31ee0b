"""Real Ray clusters on this machine for the tests: started with ``ray start`` on free ports in a temp
dir of their own, and stopped by killing exactly their processes (``ray stop`` would stop every Ray
cluster of this user on the machine, other test runs' included)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
STORE_BYTES = 200 * 1024 * 1024


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


TOKEN = secrets.token_hex(16)  # token authentication, kept out of ~/.ray (other runs share it)


def ray_env() -> dict[str, str]:
    """The environment of the clusters' nodes and of the drivers that join them."""
    return {**os.environ, "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}


def _node_args() -> list[str]:
    p = free_ports(7)
    return ["--num-cpus", "1", "--object-store-memory", str(STORE_BYTES), "--node-manager-port", str(p[0]),
            "--object-manager-port", str(p[1]), "--metrics-export-port", str(p[2]),
            "--dashboard-agent-listen-port", str(p[3]), "--dashboard-agent-grpc-port", str(p[4]),
            "--runtime-env-agent-port", str(p[5])]


class Cluster:
    """A head node and ``nodes - 1`` worker nodes, one CPU each, at ``self.address``."""

    def __init__(self, nodes: int):
        self.temp = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))  # short: Ray's socket paths have a limit
        port, = free_ports(1)
        self.address = f"127.0.0.1:{port}"
        common = ["--temp-dir", str(self.temp), "--disable-usage-stats"]
        try:
            self._start(port, nodes, common)
        except BaseException:
            self.stop()
            raise

    def _start(self, port: int, nodes: int, common: list[str]) -> None:
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                        "--include-dashboard=false",
                        *common, *_node_args()], env=ray_env(), check=True, capture_output=True, timeout=120)
        for _ in range(nodes - 1):
            subprocess.run([RAY, "start", "--address", self.address, "--node-ip-address", "127.0.0.1", *common,
                            *_node_args()], env=ray_env(), check=True, capture_output=True, timeout=120)

    def pids(self) -> list[int]:
        """This cluster's processes: those naming its temp dir, and their descendants (the workers)."""
        parents: dict[int, int] = {}
        mine: set[int] = set()
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes()
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if str(self.temp).encode() in cmd and int(d.name) != os.getpid():
                mine.add(int(d.name))
        grew = True
        while grew:
            more = {p for p, pp in parents.items() if pp in mine and p not in mine}
            mine |= more
            grew = bool(more)
        return sorted(mine)

    def workers_named(self, title: str) -> list[int]:
        out = []
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title.encode()):
                    out.append(pid)
            except OSError:
                pass
        return out

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists()]
                time.sleep(0.1)
        shutil.rmtree(self.temp, ignore_errors=True)
