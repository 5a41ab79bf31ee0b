"""A bounded ring of demuxed packets, copied (bytes and timing) as they leave the demuxer, from which
event clips are remuxed (:mod:`avfuse.stream.run.event_clips`).

The ring keeps the latest ``max_s`` seconds of media and at most ``max_bytes`` bytes, whichever is less,
and drops whole GOPs from the front (a video keyframe to the next), so what is left always starts at a
keyframe. Times are seconds of media time as segments count it (``t = pts * time_base - t0 + offset``).
Packets are pushed on the demuxing thread and read on another: every method takes the lock.

Each connection (a file, a looped file's pass, a live stream's reconnect) is a generation with the
codec parameters of its own streams; packets of earlier ones stay until trimmed, so an event that ends
with a lost connection still has its clip. A clip is cut from one generation. A live source's offset
after a reconnect is known only once the new connection delivers its first window: ``set_shift``
moves the current generation's packets then.
"""

from __future__ import annotations

import dataclasses
import io
import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import av

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.segmenter import MAX_LAG_S


@dataclass(frozen=True, kw_only=True)
class Packet:
    """A demuxed packet, detached from its container: its bytes and timing, in its stream's time base."""

    stream: int  # index into ``templates``
    templates: tuple  # the codec parameters of its generation's streams
    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool
    t: float  # media time of pts (dts when pts is missing), seconds


class PacketRing:
    """Packets of one source's current connection, bounded by media time and bytes (see module doc)."""

    def __init__(self, *, max_s: float, max_bytes: int) -> None:
        if not max_s > 0 or max_bytes < 1:
            raise ConfigError(f"packet ring must hold > 0 s and >= 1 byte, got {max_s} s, {max_bytes} bytes")
        self.max_s, self.max_bytes = max_s, max_bytes
        self._lock = threading.Lock()
        self._packets: deque[Packet] = deque()
        self.bytes = 0
        self.peak_bytes = 0
        self.peak_packets = 0
        self.lost_until = -math.inf  # media time of the latest packet dropped from the front
        self.latest = -math.inf  # media time of the latest packet pushed
        self._latest_by: dict[int, float] = {}  # the same per stream of the current generation
        self.ended = False  # the media ended (a file's last packet is in)
        self.templates: tuple = ()  # the current generation's codec parameters, alive after the source closes
        self.time_bases: list = []
        self._current = 0  # how many packets at the back belong to the current generation
        self._video: int | None = None
        self._offset = 0.0
        self._t0 = 0.0
        self._index: dict[int, int] = {}

    # ---- the demuxing side ----

    def open(self, streams: Sequence[av.stream.Stream], *, t0: float, offset: float = 0.0) -> None:
        """A connection (or a file, or a looped file's pass) starts a generation: the codec parameters
        of ``streams`` (video first, if any) are copied into streams of an unwritten in-memory container
        (which they keep alive), so clips can be written after the source is closed."""
        holder = av.open(io.BytesIO(), "w", format="matroska")
        templates = tuple(holder.add_stream_from_template(s) for s in streams)
        with self._lock:
            self.templates, self._current, self._latest_by = templates, 0, {}
            self.time_bases = [s.time_base for s in streams]
            self._index = {s.index: i for i, s in enumerate(streams)}
            self._video = next((i for i, s in enumerate(streams) if s.type == "video"), None)
            self._t0, self._offset, self.ended = t0, offset, False

    def push(self, packet: av.Packet) -> None:
        """Copy ``packet`` into the ring (packets of streams not opened, and empty ones, are ignored)."""
        i = self._index.get(packet.stream.index)
        ts = packet.pts if packet.pts is not None else packet.dts
        if i is None or not packet.size or ts is None:
            return
        t = float(ts * self.time_bases[i]) - self._t0 + self._offset
        keyframe = bool(packet.is_keyframe) if i == self._video else self._video is None
        p = Packet(stream=i, templates=self.templates, data=bytes(packet), pts=packet.pts, dts=packet.dts,
                   duration=packet.duration or 0, keyframe=keyframe, t=t)
        with self._lock:
            self._packets.append(p)
            self._current += 1
            self.bytes += len(p.data)
            self.latest = max(self.latest, t)
            self._latest_by[i] = max(self._latest_by.get(i, -math.inf), t)
            self._trim()
            self.peak_bytes = max(self.peak_bytes, self.bytes)
            self.peak_packets = max(self.peak_packets, len(self._packets))

    def set_shift(self, shift: float) -> None:
        """The current generation's media time starts ``shift`` s later than its packets were pushed
        with: move them, and the packets still to come."""
        with self._lock:
            d = shift - self._offset
            if not d:
                return
            self._offset = shift
            n = min(self._current, len(self._packets))
            moved = [dataclasses.replace(p, t=p.t + d) for p in list(self._packets)[len(self._packets) - n:]]
            for _ in range(n):
                self._packets.pop()
            self._packets.extend(moved)
            self._latest_by = {i: v + d for i, v in self._latest_by.items()}
            self.latest = max((p.t for p in self._packets), default=-math.inf)

    @property
    def settled(self) -> float:
        """Media time every stream of the current generation has reached (a file interleaves its audio
        up to a second or so ahead of its video): -inf until each has a packet. A stream more than
        ``MAX_LAG_S`` behind the latest is taken to have ended (as the segmenter does)."""
        with self._lock:
            if len(self._latest_by) < len(self.templates):
                return -math.inf
            return min(v for v in self._latest_by.values() if v >= self.latest - MAX_LAG_S)

    def end(self) -> None:
        with self._lock:
            self.ended = True

    def _trim(self) -> None:
        """Drop whole GOPs from the front while the ring is over its bytes, or while the second GOP
        alone still covers ``max_s``. A single GOP over the cap is cut at packets, keyframe or not
        (counted by ``lost_until``; a clip from it is truncated)."""
        while self._packets:
            nxt = self._next_gop()
            over_bytes = self.bytes > self.max_bytes
            if nxt is None:
                if not over_bytes:
                    return
                self._drop(1)
                continue
            if not over_bytes and self._packets[nxt].t > self.latest - self.max_s:
                return
            self._drop(nxt)

    def _next_gop(self) -> int | None:
        for j in range(1, len(self._packets)):
            if self._packets[j].keyframe:
                return j
        return None

    def _drop(self, n: int) -> None:
        for _ in range(n):
            p = self._packets.popleft()
            self.bytes -= len(p.data)
            self.lost_until = max(self.lost_until, p.t)
        self._current = min(self._current, len(self._packets))

    # ---- the reading side ----

    def span(self, start: float, end: float) -> tuple[list[Packet], bool]:
        """The packets from the last keyframe at or before ``start`` (the first one after it when none is)
        to the last packet, in demux order, before ``end``, all of that keyframe's generation (a copy, so
        the demuxer can go on); and whether that generation is the current one."""
        with self._lock:
            packets, templates = list(self._packets), self.templates
        first = 0
        for j, p in enumerate(packets):
            if p.keyframe and p.t <= start + 1e-6:
                first = j
            elif p.t > start:
                break
        while first < len(packets) and not packets[first].keyframe:
            first += 1
        if first == len(packets):
            return [], True
        gen = packets[first].templates
        last = max((j for j in range(first, len(packets)) if packets[j].t < end - 1e-6 and packets[j].templates
                    is gen), default=first - 1)
        return [p for p in packets[first:last + 1] if p.templates is gen], gen is templates

    def __len__(self) -> int:
        with self._lock:
            return len(self._packets)

    def close(self) -> None:
        with self._lock:
            self._packets.clear()
            self.bytes, self._current, self.templates = 0, 0, ()
