"""What the decoders hand the segmenter, in time order (``decode_items``, the GOP workers, the live reader):
a sampled video frame, a chunk of audio, a tick (media up to ``t`` has been seen: a window may close) or a
timestamp jump that was followed. ``t`` is media seconds from the source's first timestamp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avfuse.stream.media.discontinuity import Discontinuity


@dataclass(frozen=True, slots=True, eq=False)
class VideoItem:
    """A frame some window samples, scaled: uint8 ``[H, W, 3]`` RGB."""

    t: float
    rgb: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class AudioItem:
    """float32 mono samples at the decode rate, the first at ``t``."""

    t: float
    samples: np.ndarray


@dataclass(frozen=True, slots=True)
class TickItem:
    """Nothing more comes before ``t``: a decoded frame no window samples, or the video's end."""

    t: float


@dataclass(frozen=True, slots=True)
class JumpItem:
    """The stream's timestamps jumped back; media time goes on at ``t`` (handed on as a window's notice)."""

    t: float
    jump: Discontinuity


Item = VideoItem | AudioItem | TickItem | JumpItem
