"""The segment: one window of decoded media, the unit the model labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avfuse.stream.errors import MediaError
from avfuse.stream.media.discontinuity import Discontinuity

MODALITIES = ("video", "audio", "text")


@dataclass(frozen=True, kw_only=True)
class Present:
    """Which modalities the source really had for a window (padding does not count)."""

    video: bool
    audio: bool
    text: bool

    def as_array(self) -> np.ndarray:
        """float32 [3] in the order video, audio, text: the model's ``present`` input row."""
        return np.array([self.video, self.audio, self.text], dtype=np.float32)

    def as_dict(self) -> dict[str, bool]:
        return {"video": self.video, "audio": self.audio, "text": self.text}


@dataclass(frozen=True, kw_only=True)
class Segment:
    """``window_s`` seconds of one source, starting at ``start`` (seconds of media time).

    frames: uint8 [T, H, W, 3] RGB; audio: float32 [S] mono in [-1, 1]; text: captions
    overlapping the window ("" when none). The range is half-open: [start, end); a window the media
    ends in ends there (its frames and audio are still T and S, padded).
    """

    source: str
    index: int
    start: float
    end: float
    frames: np.ndarray
    audio: np.ndarray
    text: str
    present: Present
    wallclock: float | None = None  # for live sources: wall-clock time (epoch s) the window closed
    notices: tuple[Discontinuity, ...] = ()  # what the decoder met before this window: warning records

    def __post_init__(self) -> None:
        f, a = self.frames, self.audio
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise MediaError(f"segment frames must be uint8 [T, H, W, 3], got {f.dtype} {f.shape}")
        if a.dtype != np.float32 or a.ndim != 1:
            raise MediaError(f"segment audio must be float32 [S], got {a.dtype} {a.shape}")
        if not self.end > self.start:
            raise MediaError(f"segment end {self.end} must be after start {self.start}")

    @property
    def duration(self) -> float:
        return self.end - self.start
