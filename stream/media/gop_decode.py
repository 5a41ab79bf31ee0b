"""Decode an H.264 file's video on several threads, one GOP (an IDR frame up to the next) each in turn.

An IDR frame resets the decoder: nothing after it refers to anything before it, so GOP g decoded on
its own gives the frames a decoder running through the whole file gives. Worker w opens the file
itself, reads every packet and decodes the GOPs g with g % workers == w, each on one thread. On two
cores this beats FFmpeg's frame threads (bunny 720p: 1.16 s against 1.43 s, and 10% less CPU), which
wait on each other's reference rows. Workers also pick the frames a window can sample and scale
them; :func:`gop_video_items` takes the GOPs back in order and makes the one decision that depends on
what came before (keep the last frame of a window that has none yet), as :func:`decode_items` does.

Used for local H.264 files (avcC: MP4, MOV, Matroska) whose first packets show GOPs short enough to
share out, and whose frames are either not reordered or reordered (B-frames) as deep as the stream's
SPS declares: a fresh decoder left to guess the reorder depth at a GOP in the middle could differ
from one that guessed it at the start. Anything else decodes as before.

Known differences from one pass, both on damaged or unusual streams: after a damaged IDR frame one
pass shows the decoder's concealment built on the previous GOP, where a worker starting there skips
to the next frame it can decode (windows keep the last good frame); and a stream that changes its
parameter sets (SPS/PPS) inside a GOP without repeating them at later IDR frames would reach a worker
that never saw the change (MP4 and Matroska keep them in the header, as encoders write them).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.codec.context import ThreadType

from avfuse.stream.errors import MediaError
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import (
    EPS,
    DecodeStats,
    FrameScaler,
    SampleClock,
    decoder_threads,
    demuxed,
    frame_end,
    media_start,
    media_streams,
    open_container,
)
from avfuse.stream.media.items import Item, TickItem, VideoItem
from avfuse.stream.media.prefetch import prefetch

log = logging.getLogger(__name__)

SCAN_PACKETS = 400  # packets looked at before deciding: 2+ IDR frames, timestamps, no undeclared reordering
MAX_WORKERS = 4
_IDR = 5  # H.264 NAL unit type of an IDR slice


def _nal_length_size(stream: av.video.stream.VideoStream) -> int | None:
    """Bytes of each NAL unit's length prefix in avcC packets (MP4/Matroska), None for Annex B."""
    extra = stream.codec_context.extradata or b""
    return (extra[4] & 3) + 1 if len(extra) > 6 and extra[0] == 1 else None


def is_idr(packet: av.Packet, nal_size: int) -> bool:
    """Does this avcC packet hold an IDR slice?"""
    if not packet.is_keyframe:
        return False
    data = bytes(packet)
    i = 0
    while i + nal_size < len(data):
        if data[i + nal_size] & 0x1F == _IDR:
            return True
        i += nal_size + int.from_bytes(data[i:i + nal_size], "big")
    return False


def worker_budget(decode: DecodeConfig) -> int:
    """The most GOP workers a file may get with ``decode``; under 2 means none."""
    return min(decoder_threads(decode), MAX_WORKERS)


def gop_workers(source: str | os.PathLike, decode: DecodeConfig) -> int:
    """How many GOP workers ``source`` gets: 0 when it must decode as before (see the module text)."""
    workers = worker_budget(decode)
    if workers < 2:
        return 0
    try:
        with av.open(str(source)) as c:
            video = media_streams(c)[0]
            if video is None or video.codec_context.name != "h264":
                return 0
            nal = _nal_length_size(video)
            if nal is None:
                return 0
            declared = bool(video.codec_context.has_b_frames)  # the SPS says how deep frames are reordered
            idr, last_pts = 0, None
            for i, packet in enumerate(c.demux(video)):
                if i >= SCAN_PACKETS:
                    break
                if not packet.size:
                    continue
                if packet.pts is None:
                    return 0
                if last_pts is not None and packet.pts <= last_pts and not declared:
                    return 0  # reordered frames (B-frames) the stream does not declare
                last_pts = packet.pts
                idr += is_idr(packet, nal)
            return workers if idr >= 2 else 0
    except (av.error.FFmpegError, OSError):
        return 0  # decoding as before reports it properly


@dataclass(frozen=True, slots=True)
class _Head:
    """A GOP's first frame was decoded, at ``t`` (nothing before it in that GOP)."""

    t: float


@dataclass(frozen=True, slots=True, eq=False)
class _Frame:
    """A frame a window may keep, and the time of the frame after it."""

    t: float
    t_next: float
    rgb: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class _Last:
    """A GOP's last frame: whether it is kept depends on the frame after it, which only the next GOP that
    decodes anything knows."""

    t: float
    rgb: np.ndarray


@dataclass(frozen=True, slots=True)
class _GopEnd:
    """After each of a worker's GOPs: its last frame's time and end (-inf if none)."""

    gop: int
    last_t: float
    end: float


@dataclass(frozen=True, slots=True)
class _Eof:
    """Once, with the number of GOPs in the file."""

    gops: int


_Message = _Head | _Frame | _Last | _GopEnd | _Eof


class _Worker:
    """Decodes GOPs ``index``, ``index + workers``, ... of ``source``; yields its :data:`_Message` s.
    ``stats`` holds its counts so far."""

    def __init__(self, source: str | os.PathLike, index: int, workers: int, decode: DecodeConfig,
                 segment: SegmentConfig):
        self.source, self.index, self.workers = source, index, workers
        self.clock, self.scale = SampleClock(decode, segment), FrameScaler(decode)
        self.stats = DecodeStats()

    def __iter__(self) -> Iterator[_Message]:
        container = open_container(self.source)
        try:
            yield from self._run(container)
        finally:
            container.close()

    def _run(self, container: av.container.InputContainer) -> Iterator[_Message]:
        video, self.name = media_streams(container)[0], str(self.source)
        nal = None if video is None else _nal_length_size(video)
        if video is None or nal is None:  # gop_workers gives no workers to such a file
            raise MediaError(f"{self.name}: no H.264 video stream with length-prefixed NAL units to split by GOP")
        video.thread_type, video.thread_count = ThreadType.SLICE, 1
        self.ctx = video.codec_context
        self.vtb, self.t0 = float(video.time_base) if video.time_base else 0.0, media_start(container)
        self.step = 1.0 / float(video.average_rate) if video.average_rate else 0.04
        gop, mine = -1, False
        self.pending: tuple[float, av.VideoFrame] | None = None
        self.last_t = -math.inf
        for packet in demuxed(container, [video], self.name, lambda: self.last_t):
            if not packet.size:
                continue
            at = None if packet.pts is None else packet.pts * self.vtb - self.t0
            if gop < 0 or (at is not None and is_idr(packet, nal)):  # an untimed IDR frame: the GOP goes on
                if mine:
                    yield from self._finish(gop)
                gop += 1
                mine = gop % self.workers == self.index
                self.gop_start = at if at is not None else 0.0
            if mine:
                self.stats.packets += 1
                yield from self._frames(packet)
        if mine:
            yield from self._finish(gop)
        yield _Eof(gop + 1)

    def _decoded(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        try:
            return self.ctx.decode(packet)
        except (av.error.InvalidDataError, av.error.UndefinedError, av.error.PatchWelcomeError) as e:
            self.stats.corrupt_packets += 1
            log.debug("%s: skipping corrupt video packet: %s", self.name, e)
            return []
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.name}: decoding the video stream failed ({e})") from e

    def _frames(self, packet: av.Packet | None) -> Iterator[_Message]:
        for frame in self._decoded(packet):
            self.stats.video_frames += 1
            if frame.pts is not None:
                t = frame.pts * self.vtb - self.t0
            else:
                t = self.last_t + self.step if self.pending is not None else self.gop_start
            if t < self.last_t - EPS:
                continue  # goes back in time: dropped, as decode_items drops it
            if self.pending is None:
                yield _Head(t)
            elif self.clock.may_need(self.pending[0], t):
                yield _Frame(self.pending[0], t, self.scale(self.pending[1]))
            self.pending, self.last_t = (t, frame), t

    def _finish(self, gop: int) -> Iterator[_Message]:
        yield from self._frames(None)  # the frames the decoder still holds
        if self.pending is not None:
            yield _Last(self.pending[0], self.scale(self.pending[1]))
            yield _GopEnd(gop, self.last_t, frame_end(self.pending[1], self.last_t, self.vtb, self.step))
        else:
            yield _GopEnd(gop, -math.inf, -math.inf)
        self.ctx.flush_buffers()
        self.pending, self.last_t = None, -math.inf


def gop_video_items(source: str | os.PathLike, workers: int, decode: DecodeConfig, segment: SegmentConfig,
                    stats: DecodeStats, *, has_audio: bool) -> Generator[Item, None, float]:
    """The video items of :func:`~avfuse.stream.media.decode.decode_items` (``only="video"``) for ``source``, decoded
    by ``workers`` GOP workers (see :func:`gop_workers`), the video's end tick included. Returns the
    video's end (the last frame's time plus its duration)."""
    clock = SampleClock(decode, segment)
    short = Path(str(source)).name
    readers = [_Worker(source, w, workers, decode, segment) for w in range(workers)]
    its = [prefetch(r, decode.queue_size, name=f"decode-gop{w}:{short}") for w, r in enumerate(readers)]
    last_kept: float | None = None
    last_t = video_end = -math.inf
    boundary: _Last | None = None  # a GOP's last frame, waiting for the next frame's time

    def keep(t: float, rgb: np.ndarray) -> Iterator[Item]:
        nonlocal last_kept
        last_kept = t
        yield VideoItem(t, rgb)

    try:
        gop = 0
        while True:
            item = next(its[gop % workers])
            if isinstance(item, _Eof):  # past the file's last GOP
                break
            if isinstance(item, _GopEnd):
                last_t, gop = max(last_t, item.last_t), gop + 1
                video_end = max(video_end, item.end)
            elif isinstance(item, _Head) and boundary is not None:
                held, boundary = boundary, None
                # A next frame that goes back in time is dropped (as in decode_items), and which later one
                # counts is not known here: keep the frame then, which changes no window (see the tests).
                if item.t < last_t - EPS or clock.needed(held.t, item.t, last_kept):
                    yield from keep(held.t, held.rgb)
            elif isinstance(item, _Last) and item.t >= last_t - EPS:
                boundary = item
            elif isinstance(item, _Frame) and item.t >= last_t - EPS and clock.needed(item.t, item.t_next, last_kept):
                yield from keep(item.t, item.rgb)
        if boundary is not None and (has_audio or clock.needed_last(boundary.t, last_kept)):
            yield from keep(boundary.t, boundary.rgb)  # the stream's last frame
        if video_end > -math.inf:
            yield TickItem(video_end)
    finally:
        for it in its:
            it.close()
        for r in readers:  # counts so far, also after an error or an early stop
            stats.add(r.stats)
    return video_end
