"""Output files that never look complete when they are not.

Each output file is written as ``NAME.partial`` and renamed to ``NAME`` only when its source is
finished; a source that finished cleanly also gets a completion marker ``OUT/.done/STEM.json`` (written
atomically, last; it names the source as shown, never with its credentials). ``--resume`` skips the
sources whose marker matches the source file (same size and modification time) and reprocesses the
rest. A killed run leaves only ``.partial`` files and no marker for the sources it was working on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TextIO

from stream.errors import SourceError
from stream.sources import Source

log = logging.getLogger(__name__)
PARTIAL = ".partial"
DONE_DIR = ".done"
PENDING_DIR = ".pending"  # finished, but some records are still spooled: done once they are delivered


def _fingerprint(source: Source) -> dict:
    path = source.path
    if path is None or not path.is_file():
        return {}
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + PARTIAL)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AtomicFile:
    """A text file written under ``path.partial`` and moved to ``path`` by ``commit``."""

    def __init__(self, path: Path, *, newline: str | None = None) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL)
        self.file: TextIO = open(self.partial, "w", encoding="utf-8", newline=newline)  # noqa: SIM115

    def flush(self) -> None:
        self.file.flush()

    def commit(self) -> None:
        """fsync, close and rename to the final name."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.path)

    def abandon(self) -> None:
        """Close, leaving the ``.partial`` file for a person to look at (not complete)."""
        if not self.file.closed:
            self.file.flush()
            self.file.close()


class OutputDir:
    """The ``-o OUT`` folder: output paths per source and completion markers."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            (self.root / DONE_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SourceError(f"{self.root}: cannot create the output folder ({e.strerror})") from e

    def path(self, stem: str, ext: str) -> Path:
        return self.root / f"{stem}.{ext}"

    def _marker(self, stem: str, folder: str = DONE_DIR) -> Path:
        return self.root / folder / f"{stem}.json"

    def mark_done(self, source: Source, stem: str, info: dict, *, pending: bool = False) -> None:
        """``source`` is finished; with ``pending``, some of its records wait in a sink's spool, and
        the marker becomes a done marker only when :meth:`promote` finds them delivered."""
        record = {"source": source.shown, **_fingerprint(source), "finished": time.time(), **info}
        if pending:
            self._marker(stem).unlink(missing_ok=True)
            self._marker(stem, PENDING_DIR).parent.mkdir(exist_ok=True)
        write_atomic(self._marker(stem, PENDING_DIR if pending else DONE_DIR), json.dumps(record) + "\n")
        if not pending:
            self.clear_pending(stem)

    def clear_pending(self, stem: str) -> None:
        self._marker(stem, PENDING_DIR).unlink(missing_ok=True)

    def promote(self, undelivered: set[str]) -> list[str]:
        """Pending markers of sources with nothing left in ``undelivered`` become done markers; their stems."""
        done = sorted(p.stem for p in (self.root / PENDING_DIR).glob("*.json") if p.stem not in undelivered)
        for stem in done:
            os.replace(self._marker(stem, PENDING_DIR), self._marker(stem))
        return done

    def is_done(self, source: Source, stem: str) -> bool:
        """True when a previous run finished ``source`` and the source has not changed since."""
        try:
            record = json.loads(self._marker(stem).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return False
        if record.get("source") != source.shown:
            return False
        fp = _fingerprint(source)
        return all(record.get(k) == v for k, v in fp.items())
