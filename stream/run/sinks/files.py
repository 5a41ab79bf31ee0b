"""What the file sinks share: one file per source in the output folder (``STEM.<ext>``, written as
``.partial`` and renamed when the source finishes; a live source's under its final name, appended:
:mod:`avfuse.stream.run.live_output`), or one stream on stdout when there is no folder."""

from __future__ import annotations

import sys
from typing import TextIO

from avfuse.stream.run.live_output import LiveFile, Rotation
from avfuse.stream.run.outputs import AtomicFile, OutputDir
from avfuse.stream.run.sinks.base import Sink


class FileSink(Sink):
    ext = ""
    newline: str | None = None  # passed to open(); csv wants ""

    def __init__(self, out: OutputDir | None, *, stream: TextIO | None = None,
                 rotation: Rotation | None = None) -> None:
        self.out, self.rotation = out, rotation
        self.stream = stream or sys.stdout
        self._files: dict[str, AtomicFile] = {}
        self._live: dict[str, LiveFile] = {}  # live: final names, appended, rotated (run.live_output)
        if out is None:
            self.begin(self.stream)

    def begin(self, f: TextIO) -> None:
        """A new output starts (a header goes here)."""

    def file(self, key: str) -> TextIO:
        """Where ``key``'s records go."""
        if key in self._live:
            return self._live[key].stream()
        return self._files[key].file if self.out is not None else self.stream

    def open_source(self, key: str) -> None:
        if self.out is not None:
            f = AtomicFile(self.out.path(key, self.ext), newline=self.newline)
            self._files[key] = f
            self.begin(f.file)

    def open_live(self, key: str) -> None:
        if self.out is None:
            return self.open_source(key)
        self._live[key] = LiveFile(self.out.root, key, self.ext, rotation=self.rotation, newline=self.newline,
                                   begin=self.begin)

    def flush(self) -> None:
        files: list[AtomicFile | LiveFile] = [*self._files.values(), *self._live.values()]
        for f in files:
            f.flush()
        if self.out is None:
            self.stream.flush()

    def close_source(self, key: str, *, finished: bool) -> None:
        live = self._live.pop(key, None)
        if live is not None:
            live.close()
        f = self._files.pop(key, None)
        if f is not None:
            f.commit() if finished else f.abandon()

    def close(self) -> None:
        for f in self._files.values():
            f.abandon()
        self._files.clear()
        for live in self._live.values():
            live.close()
        self._live.clear()
        if self.out is None:
            self.stream.flush()
