"""How a run turns a Source into Segments: files through ``iter_segments``; live streams and files
played as if live (``loop``) through a :class:`LiveFeed` of a ``LiveSource``, whose counters
(reconnects, gaps, lost seconds, stalls) the run reports as they grow (:class:`LiveCounts`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from avfuse.stream.infer.modelspec import ModelSpec
from avfuse.stream.media.live import LiveConfig
from avfuse.stream.run.sources import Source

if TYPE_CHECKING:
    from avfuse.stream.media.live import Gap
    from avfuse.stream.media.segment import Segment

Opener = Callable[[Source, threading.Event], Iterable]


class LiveCounters(Protocol):
    """The counters of a live source a run reports (``avfuse.stream.media.live.LiveStats``)."""

    @property
    def reconnects(self) -> int: ...
    @property
    def gaps(self) -> int: ...
    @property
    def lost_s(self) -> float: ...
    @property
    def stalls(self) -> int: ...


class LiveSegments(Protocol):
    """What a run needs of a live source (``avfuse.stream.media.live.LiveSource``, imported when first needed)."""

    @property
    def stats(self) -> LiveCounters: ...

    def segments(self, stop: threading.Event) -> Iterator[Segment | Gap]: ...


@dataclass
class LiveFeed:
    """A LiveSource's segments (and gaps) until ``stop``, with its ``stats`` to report."""

    source: LiveSegments
    stop: threading.Event

    def __iter__(self) -> Iterator[Segment | Gap]:
        return self.source.segments(self.stop)

    @property
    def stats(self) -> LiveCounters:
        return self.source.stats


@dataclass
class LiveCounts:
    """A live source's counters as last reported."""

    reconnects: int = 0
    gaps: int = 0
    lost_s: float = 0.0
    stalls: int = 0

    def update(self, now: LiveCounters | None) -> LiveCounts | None:
        """Take the counters ``now`` (a LiveStats, or None for a file) and return what they gained, or
        None when nothing changed."""
        if now is None:
            return None
        gained = LiveCounts(reconnects=now.reconnects - self.reconnects, gaps=now.gaps - self.gaps,
                            lost_s=now.lost_s - self.lost_s, stalls=now.stalls - self.stalls)
        if gained == LiveCounts():
            return None
        self.reconnects, self.gaps, self.lost_s, self.stalls = now.reconnects, now.gaps, now.lost_s, now.stalls
        return gained


def open_source(spec: ModelSpec, live: LiveConfig) -> Opener:
    """The default opener of a run of a model with ``spec`` whose live sources follow ``live``."""

    def opener(source: Source, stop: threading.Event) -> Iterable:
        if live.is_live(source.live):
            feed = live.source(source.name, decode=spec.decode, segment=spec.segment, loop_file=not source.live)
            return LiveFeed(feed, stop)
        from avfuse.stream.media.segmenter import iter_segments
        if source.path is not None:
            return iter_segments(source.name, decode=spec.decode, segment=spec.segment)
        from avfuse.stream.media.netsource import network_options, until_stopped  # a finite URL: bounded, and stoppable
        t = live.timeout_s
        return until_stopped(iter_segments(source.name, decode=spec.decode, segment=spec.segment,
                                           options=network_options(source.name, t), timeout=(t, t)),
                             stop, name=source.shown)

    return opener
