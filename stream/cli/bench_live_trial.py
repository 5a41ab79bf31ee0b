"""One measurement of ``avfuse bench live``: the real :class:`~avfuse.stream.run.pipeline.Pipeline`, as
``avfuse run`` builds it (live readers, the drop-oldest queue, micro-batches, the engine, postprocess, a JSONL
file per source), on N live streams at once, for a fixed time after every stream delivered its first segment
and a warm-up.

A count of streams is *held* when, over the measured time, every stream delivered at least :data:`ON_TIME` of the
windows that time holds, nothing was dropped, no stream lost its connection or had a gap, no source failed, and
the p95 latency (window close, wall clock, to its record leaving the sinks: ``RunStats.live_latencies``), and each
stream's own p95 (window close to its label), are at most the target. The CPU time the process spent meanwhile is
measured too: on a machine shared with other work, cores per stream tell what the pipeline itself costs, where the
held count also tells what the others left it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avfuse.stream.infer.engine import Engine
from avfuse.stream.media.segment import Segment
from avfuse.stream.run.outputs import OutputDir
from avfuse.stream.run.pipeline import Pipeline, PipelineConfig
from avfuse.stream.run.sinks import make_sinks
from avfuse.stream.run.sources import Source
from avfuse.stream.run.summary import RunStats

ON_TIME = 0.9  # share of a stream's windows that must be delivered in the measured time
WARMUP_S = 2.0  # after every stream delivered its first segment: connection start-up is not steady state
FIRST_SEGMENT_S = 60.0  # every stream must deliver a segment within this long of the run starting
_POLL_S = 0.05


@dataclass
class Trial:
    streams: int
    seconds: float
    hop: float
    target_s: float
    segments: list[int] = field(default_factory=list)  # per stream, delivered in the measured time
    latencies: list[float] = field(default_factory=list)  # window close to sinks, measured time only
    worst_stream_p95: float = float("nan")  # the slowest stream's p95 (window close to inference done)
    dropped: int = 0
    gaps: int = 0
    reconnects: int = 0
    cpu_s: float = 0.0  # CPU time of this process (every thread) over the measured time
    errors: list[str] = field(default_factory=list)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    @property
    def expected(self) -> float:
        """Windows each stream closes in the measured time."""
        return self.seconds / self.hop

    @property
    def cores_per_stream(self) -> float:
        """CPU the pipeline spent per stream, in cores (1.0: one core busy all the time)."""
        return self.cpu_s / self.seconds / self.streams

    @property
    def on_time(self) -> bool:
        return len(self.segments) == self.streams and min(self.segments) >= ON_TIME * self.expected - 1

    @property
    def held(self) -> bool:
        return (not (self.dropped or self.gaps or self.reconnects or self.errors) and self.on_time
                and max(self.pct(95), self.worst_stream_p95) <= self.target_s)


class _Tally:
    """A pipeline tap: segments labelled per source, and each one's latency from its window's close."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.latencies: dict[str, list[float]] = {}

    def __call__(self, key: str, segment: Segment, records: list[dict]) -> None:
        self.counts[key] += 1
        if segment.wallclock is not None:
            self.latencies.setdefault(key, []).append(time.time() - segment.wallclock)


@dataclass(frozen=True)
class _Mark:
    counts: dict[str, int]
    lat_n: dict[str, int]
    live_n: int
    dropped: int
    gaps: int
    reconnects: int
    cpu_s: float


def _mark(stats: RunStats, tally: _Tally) -> _Mark:
    return _Mark(dict(tally.counts), {k: len(v) for k, v in tally.latencies.items()}, len(stats.live_latencies),
                 stats.dropped, stats.gaps, stats.reconnects, time.process_time())


def run_trial(urls: list[str], engine: Engine, config: PipelineConfig, *, seconds: float, target_s: float,
              out: Path, taps: Sequence[Callable] = (), attach: Callable[[RunStats], None] | None = None) -> Trial:
    """Run the pipeline on ``urls`` (one live source each) and measure ``seconds`` of steady state.
    ``taps`` and ``attach``: more pipeline taps (the live view) and what gets the run's stats."""
    n = len(urls)
    trial = Trial(streams=n, seconds=seconds, hop=engine.spec.segment.hop, target_s=target_s)
    tally = _Tally()
    sinks = make_sinks(["jsonl"], OutputDir(out))
    pipeline = Pipeline(engine, sinks, config=config, out=OutputDir(out), taps=[tally, *taps])
    if attach is not None:
        attach(pipeline.stats)
    marks: list[_Mark] = []

    def control() -> None:
        deadline = time.monotonic() + FIRST_SEGMENT_S
        while len(tally.counts) < n:
            if time.monotonic() > deadline:
                trial.errors.append(f"only {len(tally.counts)} of {n} streams delivered a segment "
                                    f"within {FIRST_SEGMENT_S:g} s")
                pipeline.stop()
                return
            time.sleep(_POLL_S)
        time.sleep(WARMUP_S)
        marks.append(_mark(pipeline.stats, tally))
        time.sleep(seconds)
        marks.append(_mark(pipeline.stats, tally))
        pipeline.stop()

    quiet = logging.getLogger("avfuse.stream.run.pipeline")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the stop at the end of each trial is no news
    controller = threading.Thread(target=control, name="bench-live-control", daemon=True)
    try:
        controller.start()
        stats = pipeline.run([Source(name=u) for u in urls])
    finally:
        pipeline.stop()
        controller.join(seconds + FIRST_SEGMENT_S + WARMUP_S)
        quiet.setLevel(level)
    trial.errors += [f"{name}: {why}" for name, why in stats.sources_failed]
    if len(marks) == 2:
        a, b = marks
        keys = sorted(b.counts)
        trial.segments = [b.counts[k] - a.counts.get(k, 0) for k in keys]
        trial.latencies = list(stats.live_latencies)[a.live_n:b.live_n]
        per = [tally.latencies[k][a.lat_n.get(k, 0):b.lat_n[k]] for k in keys]
        trial.worst_stream_p95 = max(float(np.percentile(p, 95)) if p else float("inf") for p in per)
        trial.dropped, trial.gaps = b.dropped - a.dropped, b.gaps - a.gaps
        trial.reconnects = b.reconnects - a.reconnects
        trial.cpu_s = b.cpu_s - a.cpu_s
    return trial


def merge(trials: list[Trial]) -> Trial:
    """Trials of the same streams run one after another, as one longer measurement."""
    first = trials[0]
    out = Trial(streams=first.streams, seconds=sum(t.seconds for t in trials), hop=first.hop, target_s=first.target_s)
    if all(len(t.segments) == first.streams for t in trials):
        out.segments = [sum(column) for column in zip(*(t.segments for t in trials), strict=True)]
    for t in trials:
        out.latencies += t.latencies
        out.dropped += t.dropped
        out.gaps += t.gaps
        out.reconnects += t.reconnects
        out.cpu_s += t.cpu_s
        out.errors += t.errors
    out.worst_stream_p95 = max(t.worst_stream_p95 for t in trials)
    return out
