"""Decode a local file's video and its audio on two threads, each from its own demuxer.

On one thread, every audio packet decoded and resampled between two video packets stalls FFmpeg's
frame threads, which wait for their next packet: on two cores the real 720p clip decodes about 15%
faster split. Each stream's items come in time order, so the two are merged by time, which also
bounds how far one runs ahead of the other (each waits behind its own bounded queue).
Only for files: a live URL opened twice would be two connections (see :mod:`avfuse.stream.media.live`).

One difference from one thread: when a stream outlasts the other by more than the segmenter's
``MAX_LAG_S``, one thread hands on the shorter stream's held last frame (or last audio chunk) only
at the end of the file, after the windows that needed it were closed without it; here it comes in
time order, so those windows get it.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Generator, Iterator
from operator import attrgetter
from pathlib import Path

import av

from avfuse.stream.media.audio_track import AudioTrack
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats, completeness_check, decode_items, media_streams, open_container
from avfuse.stream.media.gop_decode import gop_video_items
from avfuse.stream.media.items import Item
from avfuse.stream.media.prefetch import prefetch


def split_items(source: str | os.PathLike, container: av.container.InputContainer, decode: DecodeConfig,
                segment: SegmentConfig, stats: DecodeStats, *, name: str, gop_workers: int = 0,
                seek_pts: int | None = None, until: float | None = None,
                audio: Callable[[], AudioTrack] | None = None) -> Generator[Item, None, None]:
    """The items of :func:`~avfuse.stream.media.decode.decode_items` for ``container`` (an open local file with video
    and audio, closed here), decoded as two streams on two threads, merged by time. A truncated file
    raises MediaError after its last item, as with one thread; ``stats`` gets both threads' counts.
    ``gop_workers`` (the plan's, :mod:`~avfuse.stream.media.decode_plan`): when > 0 the video goes to that many
    GOP workers, which open the file themselves, and ``container`` decodes the audio.

    A range of the file (:mod:`~avfuse.stream.media.range_decode`): ``audio`` gives the file's audio decoded
    already (:mod:`~avfuse.stream.media.audio_track`; not counted in ``stats``; the file may have none), and the
    video is decoded first, on this thread, from the IDR frame with pts ``seek_pts`` (the video stream's time
    base; None: the start) to its first item at or past ``until`` seconds (None: the end); only then is the
    audio asked for, so that a track still being decoded elsewhere leaves this range waiting as little as
    can be (a Ray task waiting lends its CPU to another, and then two decode on one core)."""
    if gop_workers and audio is not None:
        raise ValueError("GOP workers decode a whole file: no audio track with them")
    if audio is None and (seek_pts is not None or until is not None):
        raise ValueError("a range (seek_pts, until) is decoded with the file's audio track")
    check = completeness_check(container)
    if gop_workers:
        containers = {"audio": container}
    elif audio is not None:
        containers = {"video": container}
    else:
        try:
            containers = {"video": container, "audio": open_container(source)}
        except BaseException:
            container.close()
            raise
    ends: dict[str, float] = {}
    counts = {"video": DecodeStats(), "audio": DecodeStats()}

    def produce(c: av.container.InputContainer, only: str) -> Generator[Item, None, None]:
        if containers.pop(only, None) is None:
            return  # closed already: the consumer stopped before this thread began
        try:
            if only == "video" and seek_pts is not None:
                c.seek(seek_pts, stream=media_streams(c)[0], backward=True, any_frame=False)
            ends[only] = yield from decode_items(c, decode, counts[only], segment, only=only)
        finally:
            c.close()

    def track(get: Callable[[], AudioTrack]) -> Generator[Item, None, None]:
        decoded = get()
        ends["audio"] = decoded.end
        yield from decoded.items

    def produce_gops(workers: int) -> Iterator[Item]:
        ends["video"] = yield from gop_video_items(source, workers, decode, segment, counts["video"], has_audio=True)

    def upto(items: Generator[Item, None, None]) -> Iterator[Item]:
        for item in items:
            yield item
            if until is not None and item.t >= until:
                items.close()
                return

    short = Path(name).name
    audio_items: Generator[Item, None, None]
    if audio is not None:
        video = (item for item in list(upto(produce(containers["video"], "video"))))
        audio_items = track(audio)
    else:
        if gop_workers:
            video = prefetch(produce_gops(gop_workers), decode.queue_size, name=f"decode-video:{short}")
        else:
            video = prefetch(produce(containers["video"], "video"), decode.queue_size, name=f"decode-video:{short}")
        audio_items = prefetch(produce(containers["audio"], "audio"), decode.queue_size, name=f"decode-audio:{short}")
    try:
        yield from heapq.merge(video, audio_items, key=attrgetter("t"))  # by time
        if "video" in ends:  # (a range's video cut at ``until`` does not end with the file)
            check(max(ends.values()))
    finally:
        video.close()  # stops both threads now, which close their files
        audio_items.close()
        for only in ("video", "audio"):  # whoever takes a container out of the dict closes it
            c = containers.pop(only, None)
            if c is not None:  # its thread never began
                c.close()
        stats.add(counts["video"])
        stats.add(counts["audio"])
