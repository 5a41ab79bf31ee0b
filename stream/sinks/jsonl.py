"""JSON lines: one file per source in the output folder (``STEM.jsonl``), or one stream on stdout."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from stream.outputs import AtomicFile, OutputDir
from stream.sinks.base import Sink


class JsonlSink(Sink):
    name = "jsonl"

    def __init__(self, out: OutputDir | None, *, stream: TextIO | None = None) -> None:
        self.out = out
        self.stream = stream or sys.stdout
        self._files: dict[str, AtomicFile] = {}

    def open_source(self, key: str) -> None:
        if self.out is not None:
            self._files[key] = AtomicFile(self.out.path(key, "jsonl"))

    def write(self, key: str, record: dict) -> None:
        f = self._files[key].file if self.out is not None else self.stream
        f.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()
        if self.out is None:
            self.stream.flush()

    def close_source(self, key: str, *, finished: bool) -> None:
        f = self._files.pop(key, None)
        if f is not None:
            f.commit() if finished else f.abandon()

    def close(self) -> None:
        for f in self._files.values():
            f.abandon()
        self._files.clear()
        if self.out is None:
            self.stream.flush()
