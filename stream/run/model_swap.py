"""A model swapped under a running ``avfuse run`` without a gap: when the model file is replaced (renamed
over, as ``mv new.onnx model.onnx`` does) or the process gets SIGHUP, the new file is loaded on a thread
of its own while the old model goes on labelling; the inference thread takes the new engine between two
batches (:meth:`ModelSwap.take`), so no segment is dropped or labelled twice. Every segment record says
which file labelled it: ``model``, the first 12 hex digits of the file's SHA-256.

The new file must decode exactly as the running one (``avfuse.decode``: frames, size, sample rate,
window and hop) and give as many classes (smoothing carries probabilities across the swap); its labels
may differ. A file that cannot be loaded, or does not fit, is refused: an ``error`` record in each open
source's output, counted in the summary, and the old model keeps running. The file is looked at again
when it changes again, or on SIGHUP.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avfuse.stream.errors import AvfuseError, ModelError
from avfuse.stream.infer.engine import Engine
from avfuse.stream.infer.modelspec import file_sha256

log = logging.getLogger(__name__)
POLL_S = 0.5  # --watch-model: how often the model file is looked at
VERSION_DIGITS = 12


def model_version(path: Path) -> str:
    """What records call a model file: the start of its SHA-256."""
    return file_sha256(path)[:VERSION_DIGITS]


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # between an unlink and a rename, or gone: nothing to load yet
    return st.st_ino, st.st_mtime_ns, st.st_size


def check_compatible(running: Engine, new: Engine) -> None:
    """Raise ModelError naming what differs when ``new`` cannot take over from ``running``."""
    old, spec = running.spec, new.spec
    for what, a, b in (("decode config (avfuse.decode)", old.decode, spec.decode),
                       ("segment config (window and hop)", old.segment, spec.segment),
                       ("number of classes", old.num_classes, spec.num_classes)):
        if a != b:
            raise ModelError(f"{new.path}: refused: its {what} is {b}, the running model's is {a}")


@dataclass(frozen=True, kw_only=True)
class Refused:
    """A model file that was not swapped in, and why (an ``error`` record)."""

    path: Path
    reason: str

    def as_record(self, source: str) -> dict:
        return {"type": "error", "source": source, "error": "ModelError",
                "detail": f"{self.reason}; still labelling with the running model"}


class ModelSwap:
    """Holds the running engine; a watcher thread loads a replaced file, :meth:`take` swaps it in."""

    def __init__(self, engine: Engine, load: Callable[[Path], Engine], *, poll_s: float = POLL_S) -> None:
        if poll_s < 0:
            raise ModelError(f"model watch interval must be >= 0 s (0: on SIGHUP only), got {poll_s}")
        self.engine, self.path, self.poll_s = engine, Path(engine.path), poll_s
        self.version = model_version(self.path)
        self._load = load
        self._seen = _signature(self.path)
        self._hup = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready: tuple[Engine, str] | None = None
        self._refused: list[Refused] = []
        self.swaps = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._watch, name="avfuse-model-watch", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Load the file again now (SIGHUP), changed or not. Safe from a signal handler."""
        self._hup.set()

    def close(self) -> None:
        self._stop.set()
        self._hup.set()
        self._thread.join(timeout=5)

    def take(self) -> list[Refused]:
        """On the inference thread, between batches: swap in a loaded engine, if one is ready (then
        ``engine`` and ``version`` are the new ones); return the files refused since the last call."""
        with self._lock:
            ready, self._ready = self._ready, None
            refused, self._refused = self._refused, []
        if ready is not None:
            old = self.version
            self.engine, self.version = ready
            self.swaps += 1
            log.warning("model %s swapped: %s -> %s", self.path, old, self.version)
        return refused

    def _watch(self) -> None:
        while not self._stop.is_set():
            forced = self._hup.wait(self.poll_s if self.poll_s > 0 else None)
            self._hup.clear()
            if self._stop.is_set():
                return
            sig = _signature(self.path)
            if sig is None or (sig == self._seen and not forced):
                continue
            self._seen = sig
            self._try_load()

    def _try_load(self) -> None:
        path = self.path
        try:
            version = model_version(path)
            if version == self._pending_version():
                log.info("model %s: unchanged (%s)", path, version)
                return
            engine = self._load(path)
            check_compatible(self.engine, engine)
            if model_version(path) != version:  # replaced again while loading: the next look takes that one
                return
        except (AvfuseError, OSError, RuntimeError, ValueError) as e:  # onnxruntime's errors are RuntimeErrors
            reason = str(e) if str(path) in str(e) else f"{path}: {e}"
            log.error("%s; still labelling with model %s", reason, self.version)
            with self._lock:
                self._refused.append(Refused(path=path, reason=reason))
                self.refused += 1
            return
        with self._lock:
            self._ready = (engine, version)

    def _pending_version(self) -> str:
        with self._lock:
            return self._ready[1] if self._ready is not None else self.version
