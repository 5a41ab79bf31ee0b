"""The run's outputs, kept from ending the run for one source's sake.

Every call the sink stage makes for a source (open its files, write its records, close them, mark it
done) goes through :meth:`SinkGuard.attempt`. An output that cannot be written (an
:class:`~avfuse.stream.errors.OutputError` naming the file, or a bare ``OSError`` from stdout) fails that
source alone: one error line, its files closed unfinished (left as ``.partial``, never marked done),
nothing more written for it. A full disk, a read-only file system or a closed stdout
(``avfuse run ... | head -1``) would fail every source after it too: that stops the run, cleanly, with
its summary.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence

from avfuse.stream.errors import OutputError
from avfuse.stream.run.outputs import output_error
from avfuse.stream.run.sinks.base import Sink

log = logging.getLogger(__name__)
STOPS_THE_RUN = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EPIPE})


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that went away (``| head``) is
    dropped, rather than failing again at every flush and at exit (as the Python docs advise)."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to point elsewhere
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _where(sink: Sink | None) -> str:
    stream = getattr(sink, "stream", None)
    if stream is not None and stream is sys.stdout and getattr(sink, "out", None) is None:
        return "stdout"
    return f"the {sink} sink" if sink is not None else "outputs"


class SinkGuard:
    """Per-source output failures for the sink stage. ``on_stop(error)`` is called once when an error
    would fail every later source too."""

    def __init__(self, sinks: Sequence[Sink], *, on_stop: Callable[[OutputError], None]) -> None:
        self.sinks = list(sinks)
        self.on_stop = on_stop
        self.failed: dict[str, OutputError] = {}  # source key -> why its outputs failed
        self.stopped: OutputError | None = None

    def attempt(self, key: str, call: Callable[[], object], *, sink: Sink | None = None) -> bool:
        """Run ``call`` for source ``key`` (on ``sink``); False (and nothing run) once ``key``'s outputs
        have failed."""
        if key in self.failed:
            return False
        try:
            call()
        except OSError as e:
            # The file sinks raise OutputError naming their file; a bare OSError comes from their stream.
            self._fail(key, e if isinstance(e, OutputError) else output_error(_where(sink), e))
            return False
        return True

    def each(self, key: str, call: Callable[[Sink], object]) -> bool:
        """``call(sink)`` for every sink, for source ``key``, until one fails."""
        return all(self.attempt(key, functools.partial(call, s), sink=s) for s in self.sinks)

    def _fail(self, key: str, error: OutputError) -> None:
        if error.errno == errno.EPIPE:
            _silence_stdout()
        self.failed[key] = error
        log.error("%s", error)
        for s in self.sinks:  # what it wrote so far stays .partial
            try:
                s.close_source(key, finished=False)
            except OSError as again:
                log.debug("%s: closing after the failure: %s", key, again)
        if error.errno in STOPS_THE_RUN and self.stopped is None:
            self.stopped = error
            self.on_stop(error)
