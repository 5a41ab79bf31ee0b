"""How a source is decoded, chosen once from its first open: one demuxer on one thread, video and audio
on two (:mod:`~avfuse.stream.media.split_decode`), or the video GOP by GOP on several
(:mod:`~avfuse.stream.media.gop_decode`). Every path gives the same segments; they differ in speed and in how
often the file is opened, which :meth:`DecodePlan.opens` says.

- a URL (live or not) is opened once: a second open would be a second connection;
- a local file with video and audio is split, its first container decoding the video (or, when the video
  goes to GOP workers, the audio);
- the video of a local H.264 file whose first packets show GOPs to share out goes to GOP workers; the scan
  that decides it is the one extra open, and only for H.264.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import av

from avfuse.stream.media.config import DecodeConfig
from avfuse.stream.media.decode import is_url, media_streams
from avfuse.stream.media.gop_decode import gop_workers, worker_budget


@dataclass(frozen=True)
class DecodePlan:
    """``split``: video and audio from two demuxers on two threads; ``gop_workers``: when > 0, the video is
    decoded GOP by GOP on that many workers, each with its own demuxer."""

    split: bool = False
    gop_workers: int = 0
    scanned: bool = False  # the file was opened once more to look for GOPs

    @property
    def name(self) -> str:
        if self.gop_workers:
            return "gop+audio" if self.split else "gop"
        return "split" if self.split else "one"

    def opens(self) -> int:
        """How many times the source is opened for its media on this path (embedded captions add one)."""
        second = 1 if self.split and not self.gop_workers else 0  # with GOP workers the first one takes the audio
        return 1 + second + int(self.scanned) + self.gop_workers


def plan_decode(source: str | os.PathLike, container: av.container.InputContainer,
                decode: DecodeConfig) -> DecodePlan:
    """The plan for ``source``, whose first open is ``container`` (only its streams are looked at)."""
    video, audio = media_streams(container)
    if is_url(source) or video is None:
        return DecodePlan()
    split = audio is not None
    if video.codec_context.name != "h264" or worker_budget(decode) < 2:
        return DecodePlan(split=split)
    return DecodePlan(split=split, gop_workers=gop_workers(str(source), decode), scanned=True)
