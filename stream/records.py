"""The records a run writes, one dataclass per type (ARCHITECTURE.md, "Records"). Every record is built here
and leaves as the JSON object :func:`as_dict` makes of it; the CSV sink's columns are these fields
(:data:`CSV_COLUMNS`). Shared by all rooms, like :mod:`avfuse.stream.errors`: it imports nothing of them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

MODALITIES = ("video", "audio", "text")
OPTIONAL = {"optional": True}  # a field left out of the JSON object while it is None


def optional() -> Any:
    return field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class SegmentRecord:
    """A labelled segment: its window, the top labels, each modality's gate and presence."""

    TYPE: ClassVar[str] = "segment"
    source: str
    index: int
    start: float
    end: float
    label: str
    score: float
    top: tuple[tuple[str, float], ...]
    gates: dict[str, float]
    present: dict[str, bool]
    wallclock: float | None = None
    model: str | None = optional()  # the first 12 hex digits of the labelling file's SHA-256 (avfuse run)


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """Consecutive segments of one label, merged."""

    TYPE: ClassVar[str] = "event"
    source: str
    label: str
    start: float
    end: float
    score: float
    clip: str | None = optional()  # with --clips: the absolute path of the event's clip


@dataclass(frozen=True, kw_only=True)
class GapRecord:
    """Wall-clock time a live source lost (a dropped or stalled connection, or a run that was down)."""

    TYPE: ClassVar[str] = "gap"
    source: str
    start_wallclock: float
    end_wallclock: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class WarningRecord:
    """Something the run followed rather than failed on: timestamps that jump back (``stream``, ``back_s``), an
    event clip truncated or not written (``clip``)."""

    TYPE: ClassVar[str] = "warning"
    source: str
    warning: str
    start: float
    end: float
    detail: str
    stream: str | None = optional()
    back_s: float | None = optional()
    clip: str | None = optional()


@dataclass(frozen=True, kw_only=True)
class ErrorRecord:
    """A source that failed: the error's type and its one-line message."""

    TYPE: ClassVar[str] = "error"
    source: str
    error: str
    detail: str


Record = SegmentRecord | EventRecord | GapRecord | WarningRecord | ErrorRecord
RECORD_TYPES: tuple[type, ...] = (SegmentRecord, EventRecord, GapRecord, WarningRecord, ErrorRecord)
_NESTED = {"gates": "gate", "present": "present"}  # dict fields: one CSV column per modality


def as_dict(record: Record) -> dict[str, Any]:
    """The JSON object of ``record``: ``type`` first, then its fields in order."""
    out: dict[str, Any] = {"type": record.TYPE}
    for f in fields(record):
        value = getattr(record, f.name)
        if value is None and f.metadata.get("optional"):
            continue
        out[f.name] = [list(t) for t in value] if f.name == "top" else value
    return out


def _csv_columns() -> tuple[str, ...]:
    columns = ["type"]
    for cls in RECORD_TYPES:
        for f in fields(cls):
            names = [f"{_NESTED[f.name]}_{m}" for m in MODALITIES] if f.name in _NESTED else [f.name]
            columns += [n for n in names if n not in columns]
    return (*columns, "extra")


CSV_COLUMNS = _csv_columns()  # "extra": any key no record type declares, as JSON, so nothing is dropped


def flat(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (a JSON object of any type) as one CSV row: gates and present one column per modality,
    ``top`` as JSON, keys of no declared field gathered in ``extra``."""
    import json

    out: dict[str, Any] = dict.fromkeys(CSV_COLUMNS, "")
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if key in _NESTED and isinstance(value, dict):
            for m, v in value.items():
                column = f"{_NESTED[key]}_{m}"
                if column in out:
                    out[column] = v
                else:
                    extra.setdefault(key, {})[m] = v
        elif key == "top":
            out["top"] = json.dumps(value)
        elif key in out and key != "extra":
            out[key] = "" if value is None else value
        else:
            extra[key] = value
    if extra:
        out["extra"] = json.dumps(extra, sort_keys=True)
    return out
