"""JSON lines: one file per source in the output folder (``STEM.jsonl``), or one stream on stdout."""

from __future__ import annotations

import json

from avfuse.stream.run.sinks.files import FileSink


class JsonlSink(FileSink):
    name = ext = "jsonl"

    def write(self, key: str, record: dict) -> None:
        self.file(key).write(json.dumps(record) + "\n")
