"""A long H.264 file cut at IDR frames into time ranges that decode independently, each giving exactly
the segments one pass gives (same index, start, end, frames, audio, text, present).

Range r starts at an IDR frame at ``seek_s`` and owns the windows ``first <= k < stop`` (``stop`` None:
to the end of the file), ``first`` being the first window starting after that IDR frame. The IDR frame
resets the decoder (the premise of :mod:`avfuse.stream.media.gop_decode`, whose IDR test and reordering rule this
module shares), so from it on the video decodes as in one pass; every sample time of the range's
windows lies at or after it, so the latest frame at or before it comes from the range itself, and a
window holds a frame exactly when one pass finds one there. Audio cannot be cut so (a fresh AAC decoder
and resampler after a seek give slightly other samples): it is decoded once per file, from its start
(:mod:`avfuse.stream.media.audio_track`), and every range merges those same items with its video by time in
:func:`~avfuse.stream.media.split_decode.split_items`, as one pass merges its two threads; the same
:class:`~avfuse.stream.media.segmenter.Segmenter` cuts the windows, and those outside the range are dropped.

Files that are not H.264 in MP4/MOV/Matroska, or whose pts go back without declared B-frames, or
shorter than two ranges, get one range: the whole file, decoded as the local engine decodes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from avfuse.stream.media.audio_track import AudioTrack, decode_audio_track
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import EPS, DecodeStats, media_duration, media_start, media_streams, open_container
from avfuse.stream.media.gop_decode import _nal_length_size, is_idr
from avfuse.stream.media.segment import Segment
from avfuse.stream.media.segmenter import Segmenter, _captions_for, iter_segments
from avfuse.stream.media.split_decode import split_items

RANGE_S = 20.0  # default media seconds per range: long enough that its decoder start-up is small


@dataclass(frozen=True, kw_only=True)
class Range:
    """Windows ``first <= k < stop`` of a file (``stop`` None: to its end), video decoded from the IDR
    frame at ``seek_s`` media seconds (``seek_pts`` in the video stream's time base; None: the start)."""

    index: int
    first: int
    stop: int | None
    seek_s: float = 0.0
    seek_pts: int | None = None

    @property
    def whole(self) -> bool:
        return self.first == 0 and self.stop is None


WHOLE = Range(index=0, first=0, stop=None)


def _idr_times(path: str, container: av.container.InputContainer) -> list[tuple[float, int]] | None:
    """(media seconds, pts) of every IDR frame of the video, or None when the file cannot be cut."""
    video = media_streams(container)[0]
    if video is None or video.codec_context.name != "h264":
        return None
    nal = _nal_length_size(video)
    if nal is None:
        return None
    declared = bool(video.codec_context.has_b_frames)
    if video.time_base is None:
        return None
    tb, t0 = float(video.time_base), media_start(container)
    out, last = [], None
    for packet in container.demux(video):
        if not packet.size:
            continue
        if packet.pts is None or (last is not None and packet.pts <= last and not declared):
            return None  # untimed, or reordered without saying so (see avfuse.stream.media.gop_decode)
        last = packet.pts
        if is_idr(packet, nal):
            out.append((packet.pts * tb - t0, packet.pts))
    return out


def plan_ranges(path: str, segment: SegmentConfig, *, range_s: float = RANGE_S) -> list[Range]:
    """Cut ``path`` at IDR frames about every ``range_s`` media seconds (see the module text).
    A file that cannot be opened gets the whole range: decoding it reports why."""
    if not range_s > 0:
        raise ValueError(f"range length must be > 0 s, got {range_s}")
    try:
        with av.open(str(path)) as c:
            duration = media_duration(c)
            if duration is not None and duration < 2 * range_s:
                return [WHOLE]  # one range anyway: not worth reading every packet to find out
            idrs = _idr_times(path, c)
    except (av.error.FFmpegError, OSError):
        return [WHOLE]
    if not idrs:
        return [WHOLE]
    ranges, next_cut = [Range(index=0, first=0, stop=None)], range_s
    for t, pts in idrs:
        if t < next_cut - EPS:
            continue
        first = math.ceil((t + 2 * EPS) / segment.hop - 1e-9)
        if first <= ranges[-1].first:
            continue
        prev = ranges[-1]
        ranges[-1] = Range(index=prev.index, first=prev.first, stop=first, seek_s=prev.seek_s, seek_pts=prev.seek_pts)
        ranges.append(Range(index=len(ranges), first=first, stop=None, seek_s=t, seek_pts=pts))
        next_cut = t + range_s
    return ranges


def range_segments(path: str, rng: Range, *, decode: DecodeConfig, segment: SegmentConfig,
                   audio: AudioTrack | Callable[[], AudioTrack] | None = None,
                   stats: DecodeStats | None = None) -> Iterator[Segment]:
    """The segments of ``path`` in ``rng``, exactly as one pass of ``iter_segments`` gives them.

    ``audio``: the file's audio decoded once (:func:`~avfuse.stream.media.audio_track.decode_audio_track`), or
    a function giving it, called once the range's video is decoded; None: this range decodes it itself, from
    the file's start. The whole file (one range) is one pass and ignores it. ``stats`` gets what this range
    decoded. The range's video is decoded before its first segment comes out (see ``split_items``)."""
    stats = stats if stats is not None else DecodeStats()
    if rng.whole:
        yield from iter_segments(path, decode=decode, segment=segment, stats=stats)
        return
    if audio is None:
        track = decode_audio_track(path, decode=decode, segment=segment)
        stats.add(track.stats)
        audio = track
    yield from _cut(path, rng, decode, segment, audio if callable(audio) else (lambda: audio), stats)


def _cut(path: str, rng: Range, decode: DecodeConfig, segment: SegmentConfig, audio: Callable[[], AudioTrack],
         stats: DecodeStats) -> Iterator[Segment]:
    name = str(Path(path))
    container = open_container(path)
    try:
        caps = _captions_for(path, container, None, None, None)
        vstream, astream = media_streams(container)
    except BaseException:
        container.close()
        raise
    seg = Segmenter(source=name, decode=decode, segment=segment, captions=caps,
                    has_video=vstream is not None, has_audio=astream is not None)
    # the video up to its first frame past the range's last window (which that frame closes)
    until = None if rng.stop is None else (rng.stop - 1) * segment.hop + segment.window_s - EPS
    items = split_items(path, container, decode, segment, stats, name=name, seek_pts=rng.seek_pts, until=until,
                        audio=audio)
    try:
        last = None if rng.stop is None else rng.stop - 1
        for item in items:
            for s in seg.push(item):
                if s.index >= rng.first:
                    yield s
                if s.index == last:
                    return  # no more decoding: the next range has the media after it
        for s in seg.finish():
            if s.index >= rng.first and (rng.stop is None or s.index < rng.stop):
                yield s
    finally:
        items.close()
