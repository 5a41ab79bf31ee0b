"""Where records go. ``make_sinks`` builds them from ``--sink`` values:
``jsonl`` (default), ``csv``, ``table``, an ``http(s)://`` URL (webhook) or an ``mqtt://HOST[:PORT]/TOPIC`` URL."""

from __future__ import annotations

from collections.abc import Sequence

from stream.errors import ConfigError
from stream.outputs import OutputDir
from stream.sinks.base import Sink

NAMES = ("jsonl", "csv", "table")


def make_sinks(specs: Sequence[str], out: OutputDir | None, *, webhook_timeout_s: float = 5.0,
               webhook_retries: int = 3) -> list[Sink]:
    sinks: list[Sink] = []
    on_stdout = []
    for spec in specs or ["jsonl"]:
        if spec == "jsonl":
            from stream.sinks.jsonl import JsonlSink
            sinks.append(JsonlSink(out))
        elif spec == "csv":
            from stream.sinks.csv import CsvSink
            sinks.append(CsvSink(out))
        elif spec == "table":
            from stream.sinks.table import TableSink
            sinks.append(TableSink())
        elif spec.startswith(("http://", "https://")):
            from stream.sinks.webhook import WebhookSink
            sinks.append(WebhookSink(spec, timeout_s=webhook_timeout_s, retries=webhook_retries))
        elif spec.startswith("mqtt://"):
            from stream.sinks.mqtt import MqttSink
            sinks.append(MqttSink(spec))
        else:
            raise ConfigError(f"unknown sink {spec!r}: expected one of {', '.join(NAMES)}, an http(s):// URL "
                              "(webhook) or mqtt://HOST[:PORT]/TOPIC")
        if spec == "table" or (spec in ("jsonl", "csv") and out is None):
            on_stdout.append(spec)
    if len(on_stdout) > 1:
        for s in sinks:
            s.close()
        raise ConfigError(f"sinks {', '.join(on_stdout)} would all write to stdout; give -o OUT for the "
                          "file sinks")
    return sinks
