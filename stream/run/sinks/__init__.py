"""Where records go. ``make_sinks`` builds them from ``--sink`` values:
``jsonl`` (default), ``csv``, ``table``, an ``http(s)://`` URL (webhook) or an ``mqtt://HOST[:PORT]/TOPIC`` URL.
The network sinks retry, and spool what they cannot deliver under ``OUT/.spool``
(:mod:`avfuse.stream.run.sinks.spool`)."""

from __future__ import annotations

from collections.abc import Sequence

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.redact import redact
from avfuse.stream.run.live_output import Rotation
from avfuse.stream.run.outputs import OutputDir
from avfuse.stream.run.sinks.base import Sink
from avfuse.stream.run.sinks.spool import DeliveryConfig, Spool, spool_path

NAMES = ("jsonl", "csv", "table")


def make_sinks(specs: Sequence[str], out: OutputDir | None, *, delivery: DeliveryConfig | None = None,
               rotation: Rotation | None = None) -> list[Sink]:
    """Build the sinks named by ``specs``; when one cannot be built, those already built are closed.
    ``rotation``: how live sources' files rotate (--rotate)."""
    specs = list(specs) or ["jsonl"]
    on_stdout = [s for s in specs if s == "table" or (s in ("jsonl", "csv") and out is None)]
    if len(on_stdout) > 1:
        raise ConfigError(f"sinks {', '.join(on_stdout)} would all write to stdout; give -o OUT for the file sinks")
    sinks: list[Sink] = []
    try:
        for spec in specs:
            sinks.append(_make(spec, out, delivery or DeliveryConfig(), rotation))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks


def _spool(out: OutputDir | None, kind: str, url: str) -> Spool | None:
    return None if out is None else Spool(spool_path(out, kind, url))


def _make(spec: str, out: OutputDir | None, delivery: DeliveryConfig, rotation: Rotation | None = None) -> Sink:
    if spec == "jsonl":
        from avfuse.stream.run.sinks.jsonl import JsonlSink
        return JsonlSink(out, rotation=rotation)
    if spec == "csv":
        from avfuse.stream.run.sinks.csv import CsvSink
        return CsvSink(out, rotation=rotation)
    if spec == "table":
        from avfuse.stream.run.sinks.table import TableSink
        return TableSink()
    if spec.startswith(("http://", "https://")):
        from avfuse.stream.run.sinks.webhook import WebhookSink
        return WebhookSink(spec, config=delivery, spool=_spool(out, "webhook", spec))
    if spec.startswith("mqtt://"):
        from avfuse.stream.run.sinks.mqtt import MqttSink
        return MqttSink(spec, config=delivery, spool=_spool(out, "mqtt", spec))
    raise ConfigError(f"unknown sink {redact(spec)!r}: expected one of {', '.join(NAMES)}, an http(s):// URL "
                      "(webhook) or mqtt://HOST[:PORT]/TOPIC")
