"""CSV: one file per source (``STEM.csv``) or one stream on stdout; segment, event and error rows share
one set of columns, ``top`` is JSON."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from stream.sinks.files import FileSink

COLUMNS = ("type", "source", "index", "start", "end", "label", "score", "top", "gate_video", "gate_audio",
           "gate_text", "error", "detail")


def row(record: dict) -> dict:
    out = {k: record.get(k, "") for k in COLUMNS}
    if "top" in record:
        out["top"] = json.dumps(record["top"])
    for m, g in record.get("gates", {}).items():
        out[f"gate_{m}"] = g
    return out


def _writer(f: TextIO) -> csv.DictWriter:
    return csv.DictWriter(f, COLUMNS, lineterminator="\n")


class CsvSink(FileSink):
    name = ext = "csv"
    newline = ""

    def begin(self, f: TextIO) -> None:
        _writer(f).writeheader()

    def write(self, key: str, record: dict) -> None:
        _writer(self.file(key)).writerow(row(record))
