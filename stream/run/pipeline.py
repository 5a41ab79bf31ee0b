"""The run: sources -> decode -> [bounded queue] -> micro-batches -> engine -> postprocess -> sinks.

Three stages on three threads: the reader (opens each file in turn; the decoder itself runs on its
own thread inside ``iter_segments``), inference (batches, the engine, smoothing, events) and the sinks.
Live sources (streams, and files played as if live with ``loop``) are read concurrently instead, one
reader thread each, all feeding the same queue. Between the stages, ``Channel``s: files get
backpressure (nothing dropped); segments of live sources may be dropped oldest-first when inference is
behind, and are counted. End-of-source markers travel with the segments, so each sink sees a source
open, its records, and its close, in order.

Latency is measured twice: from a segment leaving the decoder to its record leaving the sinks (every
source), and for live sources from the wall-clock time the window closed (``Segment.wallclock``) to
the record leaving the sinks: what a user watching a camera waits.

``stop()`` (SIGINT/SIGTERM) stops the reading, lets the batch in flight finish, discards what was
queued, and closes every source as unfinished: the sinks flush what they have, and no output of an
unfinished source is renamed to its final name. A stage that fails hands its error on and the run
ends with it; nothing waits forever.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import methodcaller

from avfuse.stream.errors import AvfuseError, ConfigError, SourceError
from avfuse.stream.infer.engine import Engine
from avfuse.stream.infer.events import EventConfig, EventTracker
from avfuse.stream.infer.postprocess import PostprocessConfig, Smoother, error_record, segment_record
from avfuse.stream.media.live import LiveConfig
from avfuse.stream.media.segment import Segment
from avfuse.stream.run.batching import Channel, micro_batches
from avfuse.stream.run.event_clips import EventClips
from avfuse.stream.run.live_output import resume_point
from avfuse.stream.run.metrics import Metrics
from avfuse.stream.run.model_swap import ModelSwap, model_version
from avfuse.stream.run.opener import LiveCounts, Opener, open_source
from avfuse.stream.run.outputs import OutputDir
from avfuse.stream.run.sink_guard import SinkGuard
from avfuse.stream.run.sinks.base import Sink
from avfuse.stream.run.sinks.spool import SPOOL_DIR, spooled_keys
from avfuse.stream.run.sources import Source, output_stems
from avfuse.stream.run.summary import RunStats

log = logging.getLogger(__name__)
_JOIN_POLL_S = 0.2
FILE_WAIT_MS = 50.0  # default longest wait to fill a batch, for runs of files only
_GAUGE_EVERY_S = 1.0  # how often the live latency percentile gauges are recomputed
# Sees each labelled segment on the inference thread: (source key, segment, its record and the events it ended).
# Returns at once and never raises (avfuse.stream.run.report: --thumbnails, --ui-port).
Tap = Callable[[str, Segment, list[dict]], None]


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    batch: int = 8
    max_wait_ms: float | None = None  # None: FILE_WAIT_MS, or 0 when a source is live (see batch_wait_s)
    queue_size: int = 32  # segments waiting for inference
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    events: EventConfig = field(default_factory=EventConfig)
    resume: bool = False
    live: LiveConfig = field(default_factory=LiveConfig)  # live sources, and files played as if live

    def __post_init__(self) -> None:
        if self.batch < 1 or self.queue_size < 1:
            raise ConfigError(f"batch and queue size must be >= 1 segment, got {self.batch}, {self.queue_size}")
        if self.max_wait_ms is not None and self.max_wait_ms < 0:
            raise ConfigError(f"max wait for a batch must be >= 0 ms, got {self.max_wait_ms}")

    def batch_wait_s(self, live: bool) -> float:
        """How long a batch waits to fill. Files: a little (throughput; their queue is mostly full anyway).
        A run with live sources: not at all unless told: a live segment goes to inference as soon as it is
        ready, and batches still form from what queues up while inference runs."""
        if self.max_wait_ms is not None:
            return self.max_wait_ms / 1000
        return 0.0 if live else FILE_WAIT_MS / 1000

    def is_live(self, source: Source) -> bool:
        """Read as live: a stream, or any source when files are looped."""
        return self.live.is_live(source.live)


@dataclass
class _Item:
    key: str
    segment: Segment
    t: float  # perf_counter when the segment came out of the decoder
    live: bool


@dataclass
class _Start:
    key: str
    source: Source


@dataclass
class _End:
    key: str
    source: Source
    error: BaseException | None = None
    interrupted: bool = False


@dataclass
class _Records:
    key: str
    records: list[dict]
    times: list[tuple[float, float | None]]  # per segment record: (decoder exit, window close wall clock)


class Pipeline:
    def __init__(self, engine: Engine, sinks: Sequence[Sink], *, config: PipelineConfig | None = None,
                 out: OutputDir | None = None, metrics: Metrics | None = None, opener: Opener | None = None,
                 taps: Sequence[Tap] = (), clips: EventClips | None = None, models: ModelSwap | None = None):
        self.engine, self.sinks = engine, list(sinks)
        self.clips = clips  # --clips: each event's media remuxed into a file (avfuse.stream.run.event_clips)
        self.models = models  # the model file watched and swapped between batches (avfuse.stream.run.model_swap)
        # what records say labelled them when the file is not watched: it cannot change during the run
        self._version = "" if models is not None else model_version(engine.spec.path)
        self.taps = list(taps)  # see Tap: thumbnails, the live view
        self.config = config or PipelineConfig()
        self.out, self.metrics = out, metrics or Metrics()
        self.opener = opener or open_source(engine.spec, self.config.live)
        self.stats = RunStats(device=engine.device)
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._segments: Channel | None = None
        self._records: Channel | None = None
        self._lock = threading.Lock()  # live readers update the run's stats concurrently
        self._gauges_at = 0.0
        self._wait_s = self.config.batch_wait_s(live=False)
        self._guard = SinkGuard(self.sinks, on_stop=self._halt)

    def stop(self) -> None:
        """Stop reading; the batch in flight finishes and the sinks are flushed and closed."""
        if not self._stop.is_set():
            log.warning("stopping: finishing the batch in flight, flushing the outputs")
            self.stats.interrupted = True
            self._stop.set()

    def _halt(self, error: BaseException) -> None:
        """Stop the run for an output every later source would fail on too (a full disk): as ``stop``."""
        self.stats.stopped = str(error)
        self._stop.set()

    def _abort(self, error: BaseException) -> None:
        self._errors.append(error)
        self._stop.set()
        for ch in (self._segments, self._records):
            if ch is not None:
                ch.fail(error)

    # ---- stage 1: readers ----

    def _read(self, sources: list[Source], stems: dict[str, str]) -> None:
        """Files one after another on this thread; each live source on a thread of its own, started
        as it comes up in the list. The segment channel closes once every reader is done."""
        seg_ch = _running(self._segments)
        live: list[threading.Thread] = []
        try:
            for source in sources:
                if self._stop.is_set():
                    break
                key = stems[source.name]
                if self.config.resume and self.out is not None and self.out.is_done(source, key):
                    log.info("%s: complete in %s already; skipped (--resume)", source.shown, self.out.root)
                    self.stats.sources_skipped += 1
                    continue
                if self.config.is_live(source) and source.error is None:
                    t = threading.Thread(target=self._read_live, args=(source, key), daemon=True,
                                         name=f"avfuse-live-{len(live)}")
                    t.start()
                    live.append(t)
                    continue
                if not seg_ch.put(_Start(key, source)):
                    return
                if not seg_ch.put(self._read_one(source, key)):
                    return
            for t in live:
                while t.is_alive():
                    t.join(_JOIN_POLL_S)
        except BaseException as e:  # a bug here must not leave the other stages waiting
            self._abort(e)
        else:
            seg_ch.close()

    def _read_live(self, source: Source, key: str) -> None:
        with self._lock:
            self.stats.live_sources += 1
        try:
            seg_ch = _running(self._segments)
            if seg_ch.put(_Start(key, source)):
                seg_ch.put(self._read_one(source, key))
        except BaseException as e:
            self._abort(e)

    def _read_one(self, source: Source, key: str) -> _End:
        """Put one source's segments on the queue; return its end marker (with the error, if any)."""
        if source.error:
            return _End(key, source, SourceError(f"{source.shown}: {source.error}"))
        seg_ch = _running(self._segments)
        live = self.config.is_live(source)
        feed: Iterable | None = None
        it: Iterator | None = None
        seen = LiveCounts()
        try:
            feed = self.opener(source, self._stop)
            if live and self.clips is not None and hasattr(feed, "source"):  # its reader feeds the clips' ring
                feed.source.packets = self.clips.source(key, source, live=True)
            if live and self.out is not None and hasattr(feed, "source"):  # a restarted run goes on
                feed.source.resume = resume_point(self.out.root, key)
            it = iter(feed)
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:  # a live source ends only when stopped; any source that ends once
                    return _End(key, source, interrupted=self._stop.is_set())  # stopped may be cut short
                t1 = time.perf_counter()
                self.stats.stage_s["decode"] += t1 - t0
                if isinstance(item, Segment):
                    if item.notices:  # a discontinuity the decoder followed: a warning record
                        seg_ch.put(_Records(key, [n.as_record() for n in item.notices], []))
                    if not seg_ch.put(_Item(key, item, t1, live)):
                        return _End(key, source, interrupted=True)
                elif hasattr(item, "as_record"):  # a live source's Gap
                    seg_ch.put(_Records(key, [item.as_record()], []))
                self._count_live(feed, seen)
            return _End(key, source, interrupted=True)
        except Exception as e:  # one bad source (or a decoder bug it triggers) must not end the run
            text = str(e)  # avfuse's errors name the source already
            log.error("%s", text if source.shown in text else f"{source.shown}: {text}",
                      exc_info=not isinstance(e, AvfuseError | OSError))
            return _End(key, source, e)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            self._count_live(feed, seen)

    def _dropped(self, item: _Item) -> None:
        """The segment channel discarded ``item`` (called under its lock, by whichever reader put)."""
        self.stats.dropped += 1
        self.stats.dropped_by_source[item.key] = self.stats.dropped_by_source.get(item.key, 0) + 1
        self.metrics.dropped.inc()
        self.metrics.dropped_by_source.labels(source=item.key).inc()

    def _count_live(self, feed: object, seen: LiveCounts) -> None:
        """Add what a live source's counters gained since last time to the run's stats and metrics."""
        d = seen.update(getattr(feed, "stats", None))
        if d is None:
            return
        with self._lock:
            self.stats.reconnects += d.reconnects
            self.stats.gaps += d.gaps
            self.stats.lost_s += d.lost_s
            self.stats.stalls += d.stalls
        m = self.metrics
        m.live_reconnects.inc(d.reconnects)
        m.live_gaps.inc(d.gaps)
        m.live_lost_seconds.inc(max(d.lost_s, 0.0))
        m.live_stalls.inc(d.stalls)

    # ---- stage 2: inference + postprocess ----

    def _infer(self) -> None:
        cfg = self.config
        shown: dict[str, str] = {}  # the open sources: where a refused model's error record goes
        smoothers: dict[str, Smoother] = {}
        trackers: dict[str, EventTracker] = {}
        failed: dict[str, BaseException] = {}
        cut: set[str] = set()  # sources whose queued segments were dropped on stop
        last_end: dict[str, float] = {}
        out, seg_ch = _running(self._records), _running(self._segments)
        try:
            for batch in micro_batches(seg_ch, size=cfg.batch, max_wait_s=self._wait_s,
                                       is_item=lambda x: isinstance(x, _Item)):
                self.metrics.queue_depth.set(len(seg_ch))
                first = batch[0]
                if isinstance(first, _Start):
                    if self.clips is not None:
                        self.clips.source(first.key, first.source, live=cfg.is_live(first.source))
                    smoothers[first.key] = Smoother(cfg.post)
                    trackers[first.key] = EventTracker(cfg.events)
                    shown[first.key] = first.source.shown
                    failed.pop(first.key, None)
                    out.put(first)
                    continue
                if isinstance(first, _End):
                    events = trackers.pop(first.key).finish()
                    smoothers.pop(first.key, None)
                    shown.pop(first.key, None)
                    if first.error is None and first.key in failed:
                        first.error = failed[first.key]
                    if first.key in cut:
                        first.interrupted = True
                    if events:
                        self.stats.events += len(events)
                        self.metrics.events.inc(len(events))
                    if self.clips is not None:  # stopping, the sinks drop these events: no clips for them
                        events += self.clips.finish(first.key, [] if self._stop.is_set() else events)
                    if events:
                        out.put(_Records(first.key, events, []))
                    out.put(first)
                    continue
                if isinstance(first, _Records):
                    out.put(first)
                    continue
                items = [i for i in batch if i.key not in failed]
                if items and self._stop.is_set():
                    cut.update(i.key for i in items)  # after stop, queued segments are dropped
                    continue
                if not items:
                    continue
                engine, version = self._engine(shown)
                t0 = time.perf_counter()
                try:
                    outputs = engine.run_segments([i.segment for i in items])
                except AvfuseError as e:
                    for i in items:
                        failed.setdefault(i.key, e)
                    log.error("%s", e)
                    continue
                t1 = time.perf_counter()
                self.stats.stage_s["inference"] += t1 - t0
                self.metrics.inference.observe(t1 - t0)
                self.metrics.batch_size.observe(len(items))
                by_key: dict[str, _Records] = {}
                for n, i in enumerate(items):
                    rec = segment_record(i.segment, smoothers[i.key](outputs.probs[n]), outputs.gates[n],
                                         engine.spec.labels, cfg.post.top_k, model=version or None)
                    group = by_key.setdefault(i.key, _Records(i.key, [], []))
                    group.records.append(rec)
                    group.times.append((i.t, i.segment.wallclock if i.live else None))
                    events = trackers[i.key].update(rec)
                    group.records += events
                    if self.clips is not None:  # sets each event's clip; warnings for clips it could not write
                        group.records += self.clips.add(i.key, events, i.segment.end)
                    for tap in self.taps:
                        tap(i.key, i.segment, [rec, *events])
                    self.stats.events += len(events)
                    self.metrics.events.inc(len(events))
                    seg = i.segment
                    media = seg.end - max(seg.start, last_end.get(i.key, seg.start))
                    last_end[i.key] = max(seg.end, last_end.get(i.key, 0.0))
                    self.stats.media_s += max(media, 0.0)
                    self.metrics.media_seconds.inc(max(media, 0.0))
                self.stats.segments += len(items)
                self.metrics.segments.inc(len(items))
                self.stats.stage_s["postprocess"] += time.perf_counter() - t1
                for group in by_key.values():
                    if not out.put(group):
                        return
        except BaseException as e:
            self._abort(e)
        else:
            out.close()

    def _engine(self, shown: dict[str, str]) -> tuple[Engine, str]:
        """The engine for the next batch, and its version (the model file's SHA-256 prefix): a new model
        file loaded meanwhile takes over here; one refused is an error record in each open source."""
        if self.models is None:
            return self.engine, self._version
        for refused in self.models.take():
            self.stats.models_refused += 1
            for key, name in shown.items():
                _running(self._records).put(_Records(key, [refused.as_record(name)], []))
        self.stats.model_swaps = self.models.swaps
        self.engine = self.models.engine
        return self.engine, self.models.version

    # ---- stage 3: sinks ----

    def _write(self) -> None:
        open_keys: dict[str, Source] = {}
        cut: set[str] = set()  # sources some of whose records were discarded after stop
        try:
            for msg in _running(self._records):
                t0 = time.perf_counter()
                if self._stop.is_set():
                    # Stopping: what the sinks have not written yet is discarded; those sources stay unfinished.
                    if isinstance(msg, _Records | _Start):
                        cut.add(msg.key)
                        continue
                    if msg.key in cut:
                        msg.interrupted = True
                    if msg.key not in open_keys:
                        self.stats.sources_interrupted += 1
                        continue
                if isinstance(msg, _Start):
                    if not self.config.is_live(msg.source):  # made again: what earlier runs spooled is stale
                        for s in self.sinks:
                            s.forget(msg.key)
                        if self.out is not None:
                            self.out.clear_pending(msg.key)
                    self._guard.failed.pop(msg.key, None)
                    live = self.config.is_live(msg.source)  # a live source's files are appended to
                    self._guard.each(msg.key, methodcaller("open_live" if live else "open_source", msg.key))
                    open_keys[msg.key] = msg.source
                elif isinstance(msg, _Records):
                    self._guard.each(msg.key, functools.partial(_write_records, records=msg))
                    if msg.times:
                        self._latency(msg.times)
                    self._count_undelivered()
                else:
                    self._close_source(msg)
                    open_keys.pop(msg.key, None)
                self.stats.stage_s["sinks"] += time.perf_counter() - t0
        except BaseException as e:
            self._abort(e)
        finally:
            for key in open_keys:  # a failure elsewhere: flush what there is, finish nothing
                self._guard.each(key, methodcaller("close_source", key, finished=False))

    def _latency(self, times: list[tuple[float, float | None]]) -> None:
        now, wall = time.perf_counter(), time.time()
        live = False
        for t, closed in times:
            self.stats.latencies.append(now - t)
            self.metrics.latency.observe(now - t)
            if closed is not None:
                live = True
                self.stats.live_latencies.append(wall - closed)
                self.metrics.live_latency.observe(wall - closed)
        if live and now - self._gauges_at >= _GAUGE_EVERY_S:
            self._gauges_at = now
            self.metrics.live_latency_p50.set(self.stats.live_percentile(50))
            self.metrics.live_latency_p95.set(self.stats.live_percentile(95))

    def _close_source(self, end: _End) -> None:
        """Close a source's outputs; mark it done only when every one of them was written."""
        guard, key = self._guard, end.key
        if end.error is not None:
            rec = error_record(end.source.shown, end.error)
            guard.each(key, lambda s: s.write(key, rec))
        guard.each(key, lambda s: s.close_source(key, finished=not end.interrupted))
        undelivered = sum(s.pending(key) for s in self.sinks)
        out = self.out
        if end.error is None and not end.interrupted and out is not None:
            guard.attempt(key, lambda: out.mark_done(end.source, key, {"device": self.engine.device},
                                                     pending=undelivered > 0))
        failed = guard.failed.pop(key, None)  # an output of it could not be written
        end.error = end.error or failed
        if end.error is not None:
            why = str(end.error).removeprefix(f"{end.source.shown}: ")  # avfuse's errors name the source
            self.stats.sources_failed.append((end.source.shown, why))
            self.metrics.sources.labels(status="failed").inc()
        elif end.interrupted:
            self.stats.sources_interrupted += 1
            self.metrics.sources.labels(status="interrupted").inc()
        else:
            if undelivered:
                self.stats.sources_undelivered += 1
                self.metrics.sources.labels(status="undelivered").inc()
            else:
                self.stats.sources_ok += 1
                self.metrics.sources.labels(status="ok").inc()

    # ---- delivery: what network sinks could not deliver (avfuse.stream.run.sinks.spool) ----

    def _replay(self) -> None:
        """What earlier runs spooled goes out first; sources left pending by them become done when
        nothing of theirs is left in any spool."""
        self.stats.replayed = sum(s.replay() for s in self.sinks)
        if self.out is not None:
            self.stats.spool = str(self.out.root / SPOOL_DIR)
            for stem in self.out.promote(spooled_keys(self.out)):
                log.info("%s: its spooled records are delivered; complete", stem)

    def _count_undelivered(self) -> None:
        for s in self.sinks:
            n, before = s.pending(), self.stats.undelivered.get(str(s), 0)
            if n > before:
                self.metrics.undelivered.labels(sink=s.name).inc(n - before)
                self.stats.undelivered[str(s)] = n

    # ---- the run ----

    def run(self, sources: Sequence[Source]) -> RunStats:
        """Process ``sources`` and return the stats. Call from the main thread (signals arrive there)."""
        sources = list(sources)
        stems = output_stems(sources, claims=self.out.claims() if self.out is not None else None)
        live = any(self.config.is_live(s) for s in sources)
        self._wait_s = self.config.batch_wait_s(live)
        self._segments = Channel(self.config.queue_size, policy="drop_oldest" if live else "block",
                                 name="segments", droppable=lambda x: isinstance(x, _Item) and x.live,
                                 on_drop=self._dropped, group=lambda x: x.key)  # drops shared by source
        self._records = Channel(4, name="records")  # small: slow sinks hold inference back, not memory
        self._replay()
        threads = [threading.Thread(target=self._read, args=(sources, stems), name="avfuse-read", daemon=True),
                   threading.Thread(target=self._infer, name="avfuse-infer", daemon=True),
                   threading.Thread(target=self._write, name="avfuse-sinks", daemon=True)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(_JOIN_POLL_S)
        finally:
            for s in self.sinks:
                try:
                    s.close()
                except Exception as e:  # one sink that fails to close must not keep the others open...
                    log.error("closing the %s sink failed: %s", s.name, e)
                    self._errors.append(e)  # ...but the run still ends with its error
            self._count_undelivered()
            if self.clips is not None:
                self.stats.clips = self.clips.counts
            self.stats.finish()
            if self.stats.live_latencies:
                self.metrics.live_latency_p50.set(self.stats.live_percentile(50))
                self.metrics.live_latency_p95.set(self.stats.live_percentile(95))
        if self._errors:
            raise self._errors[0]
        return self.stats


def _running(channel: Channel | None) -> Channel:
    """A channel of the run in progress (``run`` makes them before it starts the stages)."""
    if channel is None:
        raise RuntimeError("the pipeline's channels exist only once run() has begun")
    return channel


def _write_records(sink: Sink, records: _Records) -> None:
    for r in records.records:
        sink.write(records.key, r)
    sink.flush()
