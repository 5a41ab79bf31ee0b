"""Events: runs of consecutive segments with the same label, merged into one record with a start,
an end and a score (the mean segment score). A segment whose score is under ``threshold`` breaks a
run; an event shorter than ``min_duration_s`` is not reported."""

from __future__ import annotations

from dataclasses import dataclass

from avfuse.stream.errors import ConfigError
from avfuse.stream.records import EventRecord, as_dict


@dataclass(frozen=True, kw_only=True)
class EventConfig:
    threshold: float = 0.5
    min_duration_s: float = 0.0
    max_gap_s: float = 1e-3  # a gap in media time longer than this (e.g. drops on a live source) ends a run

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ConfigError(f"event threshold must be in [0, 1], got {self.threshold}")
        if self.min_duration_s < 0 or self.max_gap_s < 0:
            raise ConfigError(f"event min duration and max gap must be >= 0 s, got "
                              f"{self.min_duration_s}, {self.max_gap_s}")


@dataclass(kw_only=True)
class _Run:
    """The open event: consecutive segments of one label."""

    source: str
    label: str
    start: float
    end: float
    last_end: float  # end of the latest segment in the run (the next one must start by then)
    total: float  # sum of the segment scores
    n: int = 1


class EventTracker:
    """Feed one source's segment records in order with ``update``; it returns the events that ended.
    ``finish`` returns the last open one. One instance per source."""

    def __init__(self, config: EventConfig) -> None:
        self.config = config
        self._open: _Run | None = None

    def _close(self) -> list[dict]:
        run, self._open = self._open, None
        if run is None or run.end - run.start < self.config.min_duration_s - 1e-9:
            return []
        return [as_dict(EventRecord(source=run.source, label=run.label, start=round(run.start, 6),
                                    end=round(run.end, 6), score=round(run.total / run.n, 6)))]

    def update(self, record: dict) -> list[dict]:
        label, score, start, end = record["label"], record["score"], record["start"], record["end"]
        run = self._open
        if score < self.config.threshold:
            return self._close()
        # Overlapping windows (hop < window) overlap here too: a run continues while segments touch.
        if run is not None and run.label == label and start <= run.last_end + self.config.max_gap_s:
            run.end = max(run.end, end)
            run.last_end = end
            run.total += score
            run.n += 1
            return []
        ended = self._close()
        self._open = _Run(source=record["source"], label=label, start=start, end=end, last_end=end, total=score)
        return ended

    def finish(self) -> list[dict]:
        return self._close()
