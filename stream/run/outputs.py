"""Output files that never look complete when they are not.

Each output file is written as ``NAME.partial`` and renamed to ``NAME`` only when its source is
finished; a source that finished cleanly also gets a completion marker ``OUT/.done/STEM.json`` (written
atomically, last; it names the source as shown, never with its credentials). The marker records what
``--resume`` checks before it skips a source: the source file (size, modification time), the model
file's SHA-256, the sinks, and each output file with its size; a source is skipped only when all of
them still match (each sink of this run was one of that run's), and otherwise labelled again, with a
warning saying why. A killed run leaves only ``.partial`` files and no marker for the sources it was
working on.

A write that fails (disk full, name too long, read-only, a directory in the way) raises
:class:`~avfuse.stream.errors.OutputError` naming the file and the reason. A run holds an exclusive lock on
``OUT/.lock`` (:meth:`OutputDir.lock`): a second run into the same folder is refused.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from avfuse.stream.errors import OutputError
from avfuse.stream.run.sources import Source

log = logging.getLogger(__name__)
PARTIAL = ".partial"
DONE_DIR = ".done"
PENDING_DIR = ".pending"  # finished, but some records are still spooled: done once they are delivered
LOCK_FILE = ".lock"


def output_error(where: str | os.PathLike, e: OSError) -> OutputError:
    """``e`` as one line naming ``where`` and the reason; keeps its errno (a full disk stops the run)."""
    err = OutputError(f"{where}: cannot write ({e.strerror or e})")
    err.errno = e.errno
    return err


def check_writable(folder: Path, *, name: str | os.PathLike | None = None) -> None:
    """Raise OutputError (naming ``name``, or the folder) unless a file can be created in ``folder``."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".avfuse-check-"):
            pass
    except OSError as e:
        raise output_error(name or folder, e) from e


def check_target(path: Path) -> None:
    """``path`` (a file the run writes at its end, such as ``--summary-json``) can be written."""
    if path.is_dir():
        raise OutputError(f"{path}: cannot write (is a directory)")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: cannot write (no folder {path.parent})")
    check_writable(path.parent, name=path)


def _fingerprint(source: Source) -> dict:
    path = source.path
    if path is None or not path.is_file():
        return {}
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + PARTIAL)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise output_error(path, e) from e


class _CheckedText(io.TextIOWrapper):
    """A UTF-8 text file whose write errors are OutputErrors naming it. Text that is not valid Unicode
    (a file name that is not UTF-8) is written with backslash escapes rather than failing."""

    def __init__(self, path: Path, *, newline: str | None) -> None:
        self.where = path
        try:
            raw = open(path, "wb")  # noqa: SIM115 (closed by this wrapper)
        except OSError as e:
            raise output_error(path, e) from e
        super().__init__(raw, encoding="utf-8", errors="backslashreplace", newline=newline)

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as e:
            raise output_error(self.where, e) from e

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            raise output_error(self.where, e) from e


class AtomicFile:
    """A text file written under ``path.partial`` and moved to ``path`` by ``commit``."""

    def __init__(self, path: Path, *, newline: str | None = None) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL)
        self.file = _CheckedText(self.partial, newline=newline)

    def flush(self) -> None:
        self.file.flush()

    def commit(self) -> None:
        """fsync, close and rename to the final name."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.partial, self.path)
        except OSError as e:
            self.abandon()
            raise output_error(self.partial, e) from e

    def abandon(self) -> None:
        """Close, leaving the ``.partial`` file for a person to look at (not complete). What cannot be
        flushed any more (a full disk) is lost: the file is incomplete either way."""
        if self.file.closed:
            return
        try:
            self.file.close()
        except OSError as e:
            log.debug("%s: closed incomplete (%s)", self.partial, e)


@dataclass(frozen=True, kw_only=True)
class RunOutputs:
    """What a run writes per source, recorded in each marker and checked by ``--resume``."""

    model_sha256: str = ""
    sinks: tuple[str, ...] = ()  # the --sink values, credentials redacted, sorted
    exts: tuple[str, ...] = ()  # the extensions of the per-source files in OUT


class OutputDir:
    """The ``-o OUT`` folder: output paths per source and completion markers."""

    def __init__(self, root: str | Path, *, outputs: RunOutputs | None = None) -> None:
        self.root = Path(root)
        self.outputs = outputs or RunOutputs()
        self._lock: io.TextIOBase | None = None
        try:
            (self.root / DONE_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.root}: cannot create the output folder ({e.strerror})") from e

    def check(self) -> None:
        """Every folder the run writes in takes a new file (before the first source starts)."""
        for folder in (self.root, self.root / DONE_DIR):
            check_writable(folder)

    def lock(self) -> None:
        """Hold ``OUT/.lock`` until :meth:`unlock`: two runs into one folder would race on its files."""
        path = self.root / LOCK_FILE
        try:
            f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until unlock)
        except OSError as e:
            raise output_error(path, e) from e
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise OutputError(f"{self.root}: in use by another avfuse run (pid {pid}); wait for it to end "
                              "or give another -o") from e
        try:  # the pid only helps the message of a run refused; a full disk must not stop this one here
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
        except OSError as e:
            log.debug("%s: pid not written (%s)", path, e.strerror)
        self._lock = f

    def unlock(self) -> None:
        if self._lock is not None:
            try:
                self._lock.close()
            except OSError as e:  # the pid still buffered on a full disk; the lock goes with the file
                log.debug("%s: %s", self.root / LOCK_FILE, e.strerror)
            self._lock = None

    def path(self, stem: str, ext: str) -> Path:
        return self.root / f"{stem}.{ext}"

    def _marker(self, stem: str, folder: str = DONE_DIR) -> Path:
        return self.root / folder / f"{stem}.json"

    def claims(self) -> dict[str, str]:
        """Stem -> the source (as shown) that a done marker gave it: a source keeps its outputs' names
        when a same-named source joins it later (:func:`avfuse.stream.run.sources.output_stems`)."""
        out = {}
        for p in (self.root / DONE_DIR).glob("*.json"):
            try:
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))["source"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def mark_done(self, source: Source, stem: str, info: dict, *, pending: bool = False) -> None:
        """``source`` is finished; with ``pending``, some of its records wait in a sink's spool, and
        the marker becomes a done marker only when :meth:`promote` finds them delivered."""
        o = self.outputs
        files = {}
        for ext in o.exts:
            path = self.path(stem, ext)
            try:
                files[path.name] = path.stat().st_size
            except OSError as e:
                raise OutputError(f"{path}: not written ({e.strerror})") from e
        record = {"source": source.shown, **_fingerprint(source), "finished": time.time(), **info,
                  "model_sha256": o.model_sha256, "sinks": list(o.sinks), "outputs": files}
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

    def redo_reason(self, source: Source, stem: str) -> str | None:
        """Why ``source`` must be labelled again although a marker says a run finished it; None when
        everything the marker records still matches (and "" when there is no marker)."""
        try:
            record = json.loads(self._marker(stem).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return ""
        except (OSError, ValueError) as e:
            return f"its marker cannot be read ({e})"
        if not isinstance(record, dict) or record.get("source") != source.shown:
            return "its marker is for another source"
        fp = _fingerprint(source)
        if any(record.get(k) != v for k, v in fp.items()):
            return "the source file changed since"
        o = self.outputs
        if "outputs" not in record:
            return "its marker is from an avfuse that did not record the model, sinks and outputs"
        if record.get("model_sha256") != o.model_sha256:
            return "it was labelled with another model file (its SHA-256 differs)"
        added = sorted(set(o.sinks) - set(record.get("sinks") or []))  # a sink dropped since misses nothing
        if added:
            return f"sink {', '.join(added)} was not in that run"
        files = record["outputs"] if isinstance(record["outputs"], dict) else {}
        for name in sorted(self.path(stem, ext).name for ext in o.exts):
            path = self.root / name
            if name not in files:
                return f"{path} was not written by that run"
            try:
                size = path.stat().st_size
            except OSError:
                return f"{path} is missing"
            if size != files[name]:
                return f"{path} is {size} bytes, {files[name]} when it was finished"
        return None

    def is_done(self, source: Source, stem: str) -> bool:
        """True when a previous run finished ``source`` and nothing it recorded has changed since; a
        warning says why a source with a marker is labelled again."""
        why = self.redo_reason(source, stem)
        if why:
            log.warning("%s: labelled again (--resume): %s", source.shown, why)
        return why is None
