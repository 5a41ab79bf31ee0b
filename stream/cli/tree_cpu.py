"""CPU seconds used so far by a process and all its descendants (Linux ``/proc``): what a benchmark's
configuration really got of the machine's cores, Ray's worker processes (children of its raylet) included.

Each process counts its own time and that of its children that ended and were waited for, so a worker
that exits between two readings (Ray stops idle ones) still counts, in its parent."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid_dir: Path) -> tuple[int, int, float] | None:
    """(pid, parent pid, user + system CPU seconds of it and its waited-for children) of one /proc entry,
    None when it is gone."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return int(pid_dir.name), int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK  # utime ... cstime


def tree_cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU seconds of ``pid`` (default: this process) and its descendants, living or ended
    and waited for; None without /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    root = os.getpid() if pid is None else pid
    stats = [s for d in proc.iterdir() if d.name.isdigit() and (s := _stat(d)) is not None]
    children: dict[int, list[int]] = {}
    for p, parent, _ in stats:
        children.setdefault(parent, []).append(p)
    cpu = {p: c for p, _, c in stats}
    total, todo = 0.0, [root]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total
