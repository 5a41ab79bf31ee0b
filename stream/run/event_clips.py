"""Event clips (``avfuse run ... --clips DIR [--clip-pad S]``): for each event, the media from ``pad_s``
before it to ``pad_s`` after it, remuxed (packets copied, never re-encoded) from a :class:`PacketRing`
into ``DIR/STEM.<start ms>.<label>.mkv``, starting at a keyframe.

Where the packets come from: a live source (a stream, or a file with ``--loop``) hands every packet its
reader demuxes to the ring (``LiveSource.packets``); a file gets a second, demux-only reader of its own,
advanced only as far as the labelled segments plus the pad, so the decoders (one thread, split, or a GOP
per thread) are left as they are and the segments do not change.

A clip is written once the ring holds media past the event's end plus the pad, or when the source ends.
The event record's ``clip`` is the clip's absolute path (the folder may be outside OUT, and webhook and
MQTT sinks have no OUT). A clip that could not be written, or lacks part of its span (the ring dropped it:
the event was longer than ``buffer_s`` or ``max_bytes`` allow, a reconnect, a stop), is a ``warning``
record and counted in the summary (``clips_failed``, ``clips_truncated``); the run exits 3.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.decode import media_start, media_streams, open_container
from avfuse.stream.media.packet_ring import Packet, PacketRing
from avfuse.stream.records import WarningRecord, as_dict
from avfuse.stream.run.outputs import check_writable, output_error
from avfuse.stream.run.sources import Source

log = logging.getLogger(__name__)
CLIP_EXT = ".mkv"  # Matroska holds any codec a source may send, H.264 in Annex B or avcC alike
_LABEL = re.compile(r"[^A-Za-z0-9_-]+")
PAD_S = 2.0  # --clip-pad
BUFFER_S = 60.0  # --clip-buffer


@dataclass(frozen=True, kw_only=True)
class ClipConfig:
    folder: Path
    pad_s: float = PAD_S
    buffer_s: float = BUFFER_S  # media kept per source: pad + the longest event a clip can hold whole + lag
    max_bytes: int = 256 * 2**20  # and at most this many bytes of packets per source

    def __post_init__(self) -> None:
        if not 0 <= self.pad_s <= 600:
            raise ConfigError(f"clip pad must be in [0, 600] s, got {self.pad_s}")
        if not self.buffer_s > 2 * self.pad_s:
            raise ConfigError(f"clip buffer ({self.buffer_s} s) must be longer than twice the pad ({self.pad_s} s)")
        if self.max_bytes < 2**16:
            raise ConfigError(f"clip buffer must allow >= 64 KiB, got {self.max_bytes} bytes")


@dataclass(kw_only=True)
class ClipCounts:
    written: int = 0
    failed: int = 0
    truncated: int = 0
    peak_packets: int = 0  # the most packets and bytes one source's ring held at once
    peak_bytes: int = 0


@dataclass(kw_only=True)
class _Pending:
    event: dict
    path: Path
    start: float  # the span wanted: event start - pad ...
    end: float  # ... to event end + pad


def clip_name(stem: str, event: dict) -> str:
    label = _LABEL.sub("_", str(event["label"]))[:40] or "event"
    return f"{stem}.{max(0, round(event['start'] * 1000)):09d}.{label}{CLIP_EXT}"


def write_clip(path: Path, packets: list[Packet]) -> None:
    """Remux ``packets`` (of one generation) into ``path`` (written beside it, then renamed), timestamps
    moved so it starts at 0."""
    templates = packets[0].templates
    bases = [t.time_base for t in templates]
    zero = min(p.t for p in packets)
    base: dict[int, int] = {}  # per stream, the timestamp that is media time ``zero``
    for p in packets:
        if p.stream not in base:
            ts = p.pts if p.pts is not None else p.dts
            base[p.stream] = ts - round(Fraction(p.t - zero) / bases[p.stream])
    tmp = path.with_name(path.name + ".partial")
    try:
        with av.open(str(tmp), "w", format="matroska") as out:
            streams = [out.add_stream_from_template(t) for t in templates]
            for p in packets:
                pkt = av.Packet(p.data)
                pkt.stream = streams[p.stream]
                pkt.time_base = bases[p.stream]
                pkt.pts = None if p.pts is None else p.pts - base[p.stream]
                pkt.dts = None if p.dts is None else p.dts - base[p.stream]
                pkt.duration = p.duration
                pkt.is_keyframe = p.keyframe
                out.mux(pkt)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written is left under a clip's name
        raise


class SourceClips:
    """One source's ring and the clips it still owes. ``file``: read packets from this local file
    (a file source); otherwise a live reader pushes them (``open``/``push`` of :attr:`ring`)."""

    def __init__(self, stem: str, config: ClipConfig, counts: ClipCounts, *, file: Path | None = None,
                 unavailable: str = "") -> None:
        self.stem, self.config, self.counts = stem, config, counts
        self.ring = PacketRing(max_s=config.buffer_s, max_bytes=config.max_bytes)
        self.pending: list[_Pending] = []
        self._file = file
        self._demux: Iterator[av.Packet] | None = None
        self._container: av.container.InputContainer | None = None
        self._read_error = unavailable  # why there are no packets for this source's clips, when so

    # ---- a file's own demux-only reader ----

    def _advance(self, upto: float) -> None:
        if self._file is None or self.ring.ended:
            return
        try:
            if self._demux is None:
                container = self._container = open_container(self._file)
                streams = [s for s in media_streams(container) if s is not None]
                self.ring.open(streams, t0=media_start(container))
                self._demux = container.demux(*streams)
            while self.ring.settled < upto:  # the video too, not only the audio the file stores ahead of it
                self.ring.push(next(self._demux))
        except StopIteration:
            self._close_file()
        except (av.error.FFmpegError, OSError, ValueError) as e:  # the decoder reports the file itself
            self._read_error = str(e)
            self._close_file()

    def _close_file(self) -> None:
        self.ring.end()
        if self._container is not None:
            self._container.close()
            self._container = None

    # ---- events ----

    def add(self, events: list[dict], upto: float) -> list[dict]:
        """Take the events that ended (their records get ``clip``) now that segments up to ``upto`` are
        labelled; write the clips whose span the ring holds. Returns warning records."""
        for ev in events:
            path = (self.config.folder / clip_name(self.stem, ev)).absolute()
            ev["clip"] = str(path)
            self.pending.append(_Pending(event=ev, path=path, start=ev["start"] - self.config.pad_s,
                                         end=ev["end"] + self.config.pad_s))
        if self.pending:
            self._advance(max(p.end for p in self.pending))
        else:
            self._advance(upto + self.config.pad_s)
        return self._write(final=False)

    def finish(self, events: list[dict]) -> list[dict]:
        """The source ended: its last events, and every clip still owed, written with what there is."""
        out = self.add(events, math.inf if self._file is not None else -math.inf)
        out += self._write(final=True)
        self._close_file()
        self.counts.peak_packets = max(self.counts.peak_packets, self.ring.peak_packets)
        self.counts.peak_bytes = max(self.counts.peak_bytes, self.ring.peak_bytes)
        self.ring.close()
        return out

    def _write(self, *, final: bool) -> list[dict]:
        warnings, keep = [], []
        latest = self.ring.latest
        for p in self.pending:
            if not final and not self.ring.ended and latest < p.end:
                keep.append(p)
                continue
            warnings += self._one(p)
        self.pending = keep
        return warnings

    def _one(self, p: _Pending) -> list[dict]:
        ring = self.ring
        packets, current = ring.span(p.start, p.end)
        if not packets:
            why = self._read_error or "no media of it is left in the packet buffer"
            return [self._warn(p, "clip not written", why, failed=True)]
        try:
            p.path.parent.mkdir(parents=True, exist_ok=True)
            write_clip(p.path, packets)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            return [self._warn(p, "clip not written", f"{p.path}: {e}", failed=True)]
        short_start = ring.lost_until >= p.start - 1e-6
        short_end = current and not ring.ended and ring.latest < p.end - 1e-6  # (an earlier connection ended)
        if short_start or short_end:
            have = f"{packets[0].t:.3f}..{packets[-1].t:.3f} s"
            return [self._warn(p, "clip truncated", f"{p.path}: holds {have} of {max(p.start, 0):.3f}.."
                               f"{p.end:.3f} s (the packet buffer keeps {self.config.buffer_s:g} s)", failed=False)]
        self.counts.written += 1
        return []

    def _warn(self, p: _Pending, what: str, detail: str, *, failed: bool) -> dict:
        if failed:
            self.counts.failed += 1
        else:
            self.counts.truncated += 1
            self.counts.written += 1
        log.warning("%s: %s: %s", p.event["source"], what, detail)
        return as_dict(WarningRecord(source=p.event["source"], warning=what, start=p.event["start"],
                                     end=p.event["end"], clip=str(p.path), detail=detail))


class EventClips:
    """The run's clips: one :class:`SourceClips` per source, made by whichever thread needs it first."""

    def __init__(self, config: ClipConfig) -> None:
        self.config = config
        self.counts = ClipCounts()
        self._sources: dict[str, SourceClips] = {}
        self._lock = threading.Lock()

    def check(self) -> None:
        """Make the folder; raise OutputError naming it unless clips can be written there (before the run)."""
        folder = self.config.folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(folder, e) from e
        check_writable(folder)

    def source(self, stem: str, source: Source, *, live: bool) -> SourceClips:
        with self._lock:
            clips = self._sources.get(stem)
            if clips is None:
                file = None if live or source.path is None else source.path
                why = "" if live or file is not None else "clips of a file read over the network are not kept"
                clips = self._sources[stem] = SourceClips(stem, self.config, self.counts, file=file, unavailable=why)
            return clips

    def add(self, stem: str, events: list[dict], upto: float) -> list[dict]:
        """:meth:`SourceClips.add` of source ``stem``."""
        with self._lock:
            clips = self._sources.get(stem)
        return clips.add(events, upto) if clips is not None else []

    def finish(self, stem: str, events: list[dict]) -> list[dict]:
        with self._lock:
            clips = self._sources.pop(stem, None)
        return clips.finish(events) if clips is not None else []
