"""What a run did: counts, media and wall time, real-time factor, time per stage, latency percentiles;
and a one-line progress display on a terminal."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

import numpy as np

if TYPE_CHECKING:
    from avfuse.stream.run.event_clips import ClipCounts
    from avfuse.stream.run.ray_tasks import RangeCounts

STAGES = ("decode", "inference", "postprocess", "sinks")
LATENCY_KEPT = 100_000  # percentiles are over the latest segments, so a run of days keeps flat memory


def _latest() -> deque[float]:
    return deque(maxlen=LATENCY_KEPT)


def _pct(values: deque[float] | list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


@dataclass(kw_only=True)
class RunStats:
    """Filled in by the pipeline's stages (each stage writes its own fields)."""

    sources_ok: int = 0
    sources_failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    sources_skipped: int = 0  # complete from a previous run (--resume)
    sources_interrupted: int = 0
    sources_undelivered: int = 0  # finished, but not all their records reached every sink: not done
    undelivered: dict[str, int] = field(default_factory=dict)  # sink (URL redacted) -> records not delivered
    replayed: int = 0  # records spooled by earlier runs delivered at the start of this one
    spool: str = ""  # where undelivered records are kept ("" without an output folder)
    segments: int = 0
    events: int = 0
    dropped: int = 0
    dropped_by_source: dict[str, int] = field(default_factory=dict)  # output stem -> segments dropped
    media_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    latencies: deque[float] = field(default_factory=_latest)  # decoder exit to sinks, per segment
    # live sources (streams, and files played with --loop)
    live_sources: int = 0
    live_latencies: deque[float] = field(default_factory=_latest)  # window close (wall clock) to sinks
    reconnects: int = 0
    gaps: int = 0
    lost_s: float = 0.0
    stalls: int = 0
    started: float = field(default_factory=time.perf_counter)
    wall_s: float = 0.0
    device: str = ""
    interrupted: bool = False
    clips: ClipCounts | None = None  # --clips: event clips written, truncated, not written; the ring's peak
    model_swaps: int = 0  # model files swapped in while running (avfuse.stream.run.model_swap)
    models_refused: int = 0  # model files refused (broken, or not fitting the running decode config)
    ranges: RangeCounts | None = None  # --engine ray: files cut into ranges, audio tracks, frames decoded
    stopped: str = ""  # why the run stopped before its end on its own (an output every source needs failed)

    def finish(self) -> None:
        self.wall_s = time.perf_counter() - self.started

    @property
    def rtf(self) -> float:
        """Media seconds per wall second (higher is faster; 1.0 = real time)."""
        return self.media_s / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return _pct(self.latencies, q)

    def live_percentile(self, q: float) -> float:
        return _pct(self.live_latencies, q)

    @property
    def sources_done(self) -> int:
        """Sources finished one way or another."""
        return (self.sources_ok + len(self.sources_failed) + self.sources_skipped + self.sources_interrupted
                + self.sources_undelivered)

    @property
    def records_undelivered(self) -> int:
        return sum(self.undelivered.values())

    def as_dict(self) -> dict:
        return {
            "sources": self.sources_done, "ok": self.sources_ok,
            "failed": len(self.sources_failed), "skipped": self.sources_skipped,
            "interrupted": self.sources_interrupted, "not_delivered": self.sources_undelivered,
            "records_not_delivered": self.records_undelivered, "not_delivered_by_sink": dict(self.undelivered),
            "replayed": self.replayed, "segments": self.segments, "events": self.events,
            "dropped": self.dropped, "media_s": round(self.media_s, 3), "wall_s": round(self.wall_s, 3),
            "realtime_factor": round(self.rtf, 2), "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "latency_p50_s": round(self.percentile(50), 4), "latency_p95_s": round(self.percentile(95), 4),
            "device": self.device, "stopped": self.stopped,
            "model_swaps": self.model_swaps, "models_refused": self.models_refused,
            "clips": dataclasses.asdict(self.clips) if self.clips is not None else None,
            "ranges": dataclasses.asdict(self.ranges) if self.ranges is not None else None,
            "live": {"sources": self.live_sources, "latency_p50_s": round(self.live_percentile(50), 4),
                     "latency_p95_s": round(self.live_percentile(95), 4), "dropped": self.dropped,
                     "dropped_by_source": dict(self.dropped_by_source),
                     "reconnects": self.reconnects, "gaps": self.gaps, "lost_s": round(self.lost_s, 3),
                     "stalls": self.stalls},
        }

    def render(self) -> str:
        d = self.as_dict()
        lines = [
            f"summary: {d['sources']} source(s), {d['ok']} ok, {d['failed']} failed"
            + (f", {d['skipped']} skipped (already complete)" if d["skipped"] else "")
            + (f", {d['interrupted']} interrupted" if d["interrupted"] else "")
            + (f", {d['not_delivered']} not delivered" if d["not_delivered"] else ""),
            f"  segments {d['segments']}, events {d['events']}" + (f", dropped {d['dropped']}" if d["dropped"] else ""),
            f"  media {d['media_s']:.1f} s in {d['wall_s']:.2f} s wall: {d['realtime_factor']:.1f}x real time"
            f" on {d['device'] or '?'}",
            "  stage time: " + ", ".join(f"{k} {v:.2f} s" for k, v in d["stage_s"].items()),
            f"  latency per segment: p50 {d['latency_p50_s'] * 1000:.0f} ms, p95 {d['latency_p95_s'] * 1000:.0f} ms",
        ]
        live = d["live"]
        if live["sources"]:
            lines.append(f"  live: {live['sources']} source(s), latency from window close p50 "
                         f"{live['latency_p50_s'] * 1000:.0f} ms, p95 {live['latency_p95_s'] * 1000:.0f} ms; "
                         f"dropped {live['dropped']}, reconnects {live['reconnects']}, gaps {live['gaps']} "
                         f"({live['lost_s']:.1f} s lost), stalls {live['stalls']}")
            if live["dropped_by_source"]:
                by = live["dropped_by_source"]
                lines.append("  dropped per source: " + ", ".join(f"{k} {n}" for k, n in by.items()))
        clips = d["clips"]
        if clips is not None:
            lines.append(f"  event clips: {clips['written']} written, {clips['truncated']} of them truncated, "
                         f"{clips['failed']} not written; packet buffer peak {clips['peak_packets']} packets, "
                         f"{clips['peak_bytes'] / 2**20:.1f} MiB")
        r = self.ranges
        if r is not None:
            lines.append(f"  ray: {r.files} file(s), {r.cut} cut into {r.ranges} ranges "
                         f"with {r.audio_tracks} audio track(s) decoded for them; {r.decoded.video_frames} video "
                         f"and {r.decoded.audio_frames} audio frames decoded")
        if self.model_swaps or self.models_refused:
            lines.append(f"  model: {self.model_swaps} swap(s) while running, {self.models_refused} file(s) refused "
                         "(error records; the running model went on)")
        lines += [f"  failed: {src}: {why}" for src, why in self.sources_failed]
        if self.stopped:
            lines.append(f"  stopped: {self.stopped}; the sources after it were not labelled")
        if self.replayed:
            lines.append(f"  replayed {self.replayed} record(s) spooled by an earlier run")
        where = (f"spooled in {self.spool}; the next run replays them" if self.spool else
                 "lost: without -o OUT there is no spool")
        lines += [f"  not delivered: {n} record(s) to {sink}, {where}" for sink, n in self.undelivered.items() if n]
        return "\n".join(lines)


class Progress:
    """Redraws one status line on stderr every ``period_s`` while a run goes on, only on a terminal."""

    def __init__(self, stats: RunStats, total_sources: int, *, stream: TextIO | None = None,
                 period_s: float = 0.5) -> None:
        self.stats, self.total = stats, total_sources
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def _line(self) -> str:
        s = self.stats
        done = s.sources_done
        wall = time.perf_counter() - s.started
        rtf = s.media_s / wall if wall > 0 else 0.0
        width = 24
        filled = int(width * done / self.total) if self.total else 0
        return (f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} sources, "
                f"{s.segments} segments, {s.media_s:.0f} s media, {rtf:.1f}x real time ")

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.stream.write(self._line())
            self.stream.flush()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self.stream.write(self._line() + "\n")
            self.stream.flush()
