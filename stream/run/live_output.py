"""Output files of live sources, which never finish: written under their final name from the first
record, one line at a time (line-buffered, so ``tail -f`` sees each record as it is written), and
appended to by a restarted run, which goes on from the last record (:func:`resume_point`).

``--rotate`` starts a new file per period (``1h``, ``30m``, ``1d``: aligned to the UTC clock) or once a
file reaches a size (``10MB``); a rotated file is named ``STEM.YYYYmmddTHHMMSSZ.EXT`` after the UTC time
its period started. Files of finite sources keep the ``.partial`` + rename of :mod:`avfuse.stream.run.outputs`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.live import ResumePoint

STAMP = "%Y%m%dT%H%M%SZ"
_STAMP_RE = r"\d{8}T\d{6}Z"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_ROTATE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|kb|mb|gb)", re.IGNORECASE)
TAIL_BYTES = 256 * 1024  # how much of the latest file a restarted run reads to find its last record


@dataclass(frozen=True, kw_only=True)
class Rotation:
    """A new file every ``seconds`` (aligned to the UTC clock) or once a file holds ``size`` bytes."""

    seconds: float | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.size is None):
            raise ConfigError("rotation needs exactly one of a period or a size")
        if self.seconds is not None and not 1 <= self.seconds <= 366 * 86400:
            raise ConfigError(f"rotation period must be 1 s..366 d, got {self.seconds!r} s")
        if self.size is not None and not 1000 <= self.size <= 10**12:
            raise ConfigError(f"rotation size must be 1KB..1000GB, got {self.size!r} bytes")

    @classmethod
    def parse(cls, text: str) -> Rotation:
        """``1h``, ``30m``, ``90s``, ``1d`` or ``10MB``, ``500kb``, ``1GB``."""
        m = _ROTATE.fullmatch(text.strip())
        if m is None:
            raise ConfigError(f"--rotate must be a period (90s, 30m, 1h, 1d) or a size (500KB, 10MB, 1GB), "
                              f"got {text!r}")
        n, unit = float(m.group(1)), m.group(2).lower()
        if unit in ("s", "m", "h", "d"):
            return cls(seconds=n * _UNITS[unit])
        return cls(size=int(n * _UNITS[unit]))


def stamp(t: float) -> str:
    return time.strftime(STAMP, time.gmtime(t))


def live_files(root: Path, stem: str, ext: str) -> list[Path]:
    """The output files of ``stem`` that live runs wrote, oldest first (the unrotated one first)."""
    rotated = re.compile(re.escape(stem) + r"\." + _STAMP_RE + r"\." + re.escape(ext))
    found = sorted(p for p in root.glob(f"{glob_escape(stem)}.*.{ext}") if rotated.fullmatch(p.name))
    plain = root / f"{stem}.{ext}"
    return ([plain] if plain.is_file() else []) + found


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


class LiveFile:
    """One live source's output file (with ``rotation``, the current one of its series)."""

    def __init__(self, root: Path, stem: str, ext: str, *, rotation: Rotation | None, newline: str | None,
                 begin: Callable[[TextIO], None]) -> None:
        self.root, self.stem, self.ext, self.rotation = root, stem, ext, rotation
        self.newline, self.begin = newline, begin
        self.file: TextIO | None = None
        self.path: Path | None = None
        self._period: float | None = None  # start of the current file's period (UTC seconds)
        existing = live_files(root, stem, ext)
        latest = existing[-1] if existing else None
        if rotation is None:
            self._open(root / f"{stem}.{ext}")
        elif latest is not None and latest.name != f"{stem}.{ext}" and not self._due(latest, self._start_of(latest)):
            self._open(latest, period=self._start_of(latest))
        else:
            self._rotate()

    @staticmethod
    def _start_of(path: Path) -> float:
        import calendar
        return float(calendar.timegm(time.strptime(path.name.split(".")[-2], STAMP)))

    def _period_start(self, now: float) -> float:
        if self.rotation is not None and self.rotation.seconds is not None:
            return math.floor(now / self.rotation.seconds) * self.rotation.seconds
        return math.floor(now)

    def _due(self, path: Path, period: float) -> bool:
        r = self.rotation
        if r is None:
            return False
        if r.seconds is not None:
            return self._period_start(time.time()) > period
        return r.size is not None and path.exists() and path.stat().st_size >= r.size  # one of the two is set

    def _open(self, path: Path, *, period: float | None = None) -> None:
        if self.file is not None:
            self.file.close()
        new = not path.exists() or path.stat().st_size == 0
        self.file = open(path, "a", encoding="utf-8", newline=self.newline, buffering=1)  # noqa: SIM115
        self.path, self._period = path, period
        if new:
            self.begin(self.file)

    def _rotate(self) -> None:
        start = self._period_start(time.time())
        if self._period is not None and start <= self._period:  # by size, twice in a second: names stay apart
            start = self._period + 1
        self._open(self.root / f"{self.stem}.{stamp(start)}.{self.ext}", period=start)

    def stream(self) -> TextIO:
        """Where the next record goes: a new file first when the current one's period or size is up."""
        if self.path is not None and self._period is not None and self._due(self.path, self._period):
            self._rotate()
        if self.file is None:  # __init__ opens one
            raise RuntimeError(f"{self.stem}.{self.ext}: no live output file open")
        return self.file

    def flush(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()


def resume_point(root: Path, stem: str) -> ResumePoint | None:
    """From the last segment record in the latest JSON-lines file of ``stem``; None when there is none."""
    for path in reversed(live_files(root, stem, "jsonl")):
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
        for line in reversed(lines):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(rec, dict) and rec.get("type") == "segment" and isinstance(rec.get("index"), int) \
                    and isinstance(rec.get("end"), int | float) and isinstance(rec.get("wallclock"), int | float):
                return ResumePoint(next_index=rec["index"] + 1, media_end=float(rec["end"]),
                                   wallclock=float(rec["wallclock"]))
    return None
