"""CSV: one file per source (``STEM.csv``) or one stream on stdout; segment, event and error rows share
one set of columns, ``top`` is JSON."""

from __future__ import annotations

import csv
import json
import sys
from typing import TextIO

from stream.outputs import AtomicFile, OutputDir
from stream.sinks.base import Sink

COLUMNS = ("type", "source", "index", "start", "end", "label", "score", "top", "gate_video", "gate_audio",
           "gate_text", "error", "detail")


def row(record: dict) -> dict:
    out = {k: record.get(k, "") for k in COLUMNS}
    if "top" in record:
        out["top"] = json.dumps(record["top"])
    for m, g in record.get("gates", {}).items():
        out[f"gate_{m}"] = g
    return out


class CsvSink(Sink):
    name = "csv"

    def __init__(self, out: OutputDir | None, *, stream: TextIO | None = None) -> None:
        self.out = out
        self._files: dict[str, tuple[AtomicFile, csv.DictWriter]] = {}
        self._stream_writer = None
        if out is None:
            self.stream = stream or sys.stdout
            self._stream_writer = csv.DictWriter(self.stream, COLUMNS, lineterminator="\n")
            self._stream_writer.writeheader()

    def open_source(self, key: str) -> None:
        if self.out is not None:
            f = AtomicFile(self.out.path(key, "csv"), newline="")
            w = csv.DictWriter(f.file, COLUMNS, lineterminator="\n")
            w.writeheader()
            self._files[key] = (f, w)

    def write(self, key: str, record: dict) -> None:
        w = self._files[key][1] if self.out is not None else self._stream_writer
        w.writerow(row(record))

    def flush(self) -> None:
        for f, _ in self._files.values():
            f.flush()
        if self.out is None:
            self.stream.flush()

    def close_source(self, key: str, *, finished: bool) -> None:
        entry = self._files.pop(key, None)
        if entry is not None:
            entry[0].commit() if finished else entry[0].abandon()

    def close(self) -> None:
        for f, _ in self._files.values():
            f.abandon()
        self._files.clear()
