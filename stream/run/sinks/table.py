"""A readable live table on stdout: one line per segment, events and errors marked."""

from __future__ import annotations

import sys
from typing import TextIO

from avfuse.stream.run.sinks.base import Sink


class TableSink(Sink):
    name = "table"

    def __init__(self, *, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stdout
        self.width = width
        self._header = False

    def write(self, key: str, record: dict) -> None:
        if not self._header:
            self.stream.write(f"{'source':<{self.width}} {'time':>17}  {'label':<16} {'score':>5}  runner-up\n")
            self._header = True
        src = record["source"]
        src = src if len(src) <= self.width else "…" + src[-self.width + 1:]
        kind = record["type"]
        if kind == "segment":
            second = record["top"][1] if len(record["top"]) > 1 else ("", 0.0)
            span = f"{record['start']:8.2f}-{record['end']:8.2f}"
            line = (f"{src:<{self.width}} {span}  {record['label']:<16} {record['score']:5.2f}  "
                    f"{second[0]} {second[1]:.2f}")
        elif kind == "event":
            span = f"{record['start']:8.2f}-{record['end']:8.2f}"
            line = f"{src:<{self.width}} {span}  EVENT {record['label']:<10} {record['score']:5.2f}"
        elif kind == "error":
            line = f"{src:<{self.width}} {'ERROR':>17}  {record['error']}: {record['detail']}"
        else:
            detail = ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("type", "source"))
            line = f"{src:<{self.width}} {kind.upper():>17}  {detail}"
        self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()
