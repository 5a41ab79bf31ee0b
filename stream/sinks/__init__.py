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
    """Build the sinks named by ``specs``; when one cannot be built, those already built are closed."""
    specs = list(specs) or ["jsonl"]
    on_stdout = [s for s in specs if s == "table" or (s in ("jsonl", "csv") and out is None)]
    if len(on_stdout) > 1:
        raise ConfigError(f"sinks {', '.join(on_stdout)} would all write to stdout; give -o OUT for the file sinks")
    sinks: list[Sink] = []
    try:
        for spec in specs:
            sinks.append(_make(spec, out, webhook_timeout_s, webhook_retries))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks


def _make(spec: str, out: OutputDir | None, webhook_timeout_s: float, webhook_retries: int) -> Sink:
    if spec == "jsonl":
        from stream.sinks.jsonl import JsonlSink
        return JsonlSink(out)
    if spec == "csv":
        from stream.sinks.csv import CsvSink
        return CsvSink(out)
    if spec == "table":
        from stream.sinks.table import TableSink
        return TableSink()
    if spec.startswith(("http://", "https://")):
        from stream.sinks.webhook import WebhookSink
        return WebhookSink(spec, timeout_s=webhook_timeout_s, retries=webhook_retries)
    if spec.startswith("mqtt://"):
        from stream.sinks.mqtt import MqttSink
        return MqttSink(spec)
    raise ConfigError(f"unknown sink {spec!r}: expected one of {', '.join(NAMES)}, an http(s):// URL "
                      "(webhook) or mqtt://HOST[:PORT]/TOPIC")
