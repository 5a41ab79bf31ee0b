"""CPU seconds a process and all its descendants take while a block runs (Linux ``/proc``): what a
benchmark's configuration really got of the machine's cores, Ray's worker processes (children of its
raylet) included.

The tree is sampled every ``period_s`` and each process's latest reading kept, so a worker that exits
mid-run (Ray stops idle ones) still counts, but for what it did after its last sample."""

from __future__ import annotations

import os
import threading
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


def _stat(pid_dir: Path) -> tuple[int, int, float] | None:
    """(pid, parent pid, user + system CPU seconds) of one /proc entry, None when it is gone."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return int(pid_dir.name), int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds so far of ``root`` and each of its living descendants, by pid."""
    stats = [s for d in _PROC.iterdir() if d.name.isdigit() and (s := _stat(d)) is not None]
    children: dict[int, list[int]] = {}
    for p, parent, _ in stats:
        children.setdefault(parent, []).append(p)
    cpu = {p: c for p, _, c in stats}
    out, todo = {}, [root]
    while todo:
        p = todo.pop()
        if p in cpu:
            out[p] = cpu[p]
        todo.extend(children.get(p, []))
    return out


class TreeCpuMeter:
    """``with TreeCpuMeter() as m: ...``, then ``m.seconds``: the CPU the tree of ``pid`` (default: this
    process) took in the block; None without /proc."""

    def __init__(self, pid: int | None = None, *, period_s: float = 0.2):
        self.pid, self.period_s = os.getpid() if pid is None else pid, period_s
        self.seconds: float | None = None
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-cpu", daemon=True)
        self._on = _PROC.is_dir()

    def _sample(self) -> None:
        self._last.update(tree_cpu(self.pid))

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def __enter__(self) -> TreeCpuMeter:
        if self._on:
            self._start = tree_cpu(self.pid)
            self._last = dict(self._start)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self._on:
            return
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = sum(c - self._start.get(p, 0.0) for p, c in self._last.items())
