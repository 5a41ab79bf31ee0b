"""A file's audio decoded once, whole, into the items one pass's audio thread hands the segmenter.

The ranges of a long file (:mod:`avfuse.stream.media.range_decode`) decode their video from an IDR frame
each, but audio cannot be cut so: a fresh AAC decoder and resampler after a seek give slightly other
samples. So the audio is decoded once, from the file's start, by :func:`decode_audio_track`, and every
range merges the same items with its video (:func:`avfuse.stream.media.split_decode.split_items`): exactly
the audio of one pass, at the cost of one pass. At 16 kHz the track holds 3.84 MB of float32 per minute.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats, decode_items, media_streams, open_container
from avfuse.stream.media.items import AudioItem, JumpItem


@dataclass(frozen=True, kw_only=True)
class AudioTrack:
    """``items``: the file's audio chunks and timestamp jumps in time order, as ``decode_items(only="audio")``
    yields them (none for a file without audio); ``end``: where its last sample ends (-inf: none);
    ``stats``: what decoding it took."""

    items: tuple[AudioItem | JumpItem, ...] = ()
    end: float = -math.inf
    stats: DecodeStats = field(default_factory=DecodeStats)

    @property
    def nbytes(self) -> int:
        return sum(i.samples.nbytes for i in self.items if isinstance(i, AudioItem))


def decode_audio_track(path: str | os.PathLike, *, decode: DecodeConfig, segment: SegmentConfig) -> AudioTrack:
    """The audio of the local file ``path``, decoded from its start to its end on this thread."""
    container = open_container(path)
    try:
        if media_streams(container)[1] is None:
            return AudioTrack()
        stats = DecodeStats()
        gen = decode_items(container, decode, stats, segment, only="audio")
        items: list[AudioItem | JumpItem] = []
        while True:
            try:
                item = next(gen)
            except StopIteration as done:
                return AudioTrack(items=tuple(items), end=done.value, stats=stats)
            if isinstance(item, AudioItem | JumpItem):  # (the audio stream alone gives no other kind)
                items.append(item)
    finally:
        container.close()
