"""Small JPEG pictures of frames the run already decoded: one per segment for the report (``--thumbnails``,
written under ``OUT/thumbs/STEM/INDEX.jpg``) and the latest one of a live source for the live view.

Encoded with PyAV's mjpeg encoder from the segment's own sampled frames: nothing is decoded twice.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avfuse.stream.errors import MediaError
from avfuse.stream.media.segment import Segment

log = logging.getLogger(__name__)
THUMBS_DIR = "thumbs"
MAX_SIDE = 160  # px: a thumbnail's longer side at most (frames at model size are usually smaller already)
QUALITY = {"qmin": "2", "qmax": "12"}  # mjpeg quantiser bounds: small files, still legible


def middle_frame(segment: Segment) -> np.ndarray:
    """The sampled frame in the middle of the window: uint8 [H, W, 3] RGB."""
    return segment.frames[len(segment.frames) // 2]


def jpeg(rgb: np.ndarray, *, max_side: int = MAX_SIDE) -> bytes:
    """``rgb`` (uint8 [H, W, 3]) as JPEG bytes, scaled down so its longer side is at most ``max_side``."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise MediaError(f"a thumbnail needs a uint8 [H, W, 3] frame, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    width, height = max(2, round(w * scale)), max(2, round(h * scale))
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    frame = frame.reformat(width=width, height=height, format="yuvj420p")
    frame.pts = 0
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.options = dict(QUALITY)
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


def thumb_path(root: Path, key: str, index: int) -> Path:
    """Where the run writes segment ``index`` of source ``key`` (its output stem)."""
    return root / THUMBS_DIR / key / f"{index:06d}.jpg"


class ThumbnailWriter:
    """A pipeline tap: writes the middle frame of every labelled segment as a JPEG under ``root``.

    Called on the inference thread; one encode of a frame at model size takes about a millisecond."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._made: set[str] = set()
        self._failed = False

    def __call__(self, key: str, segment: Segment, records: list[dict]) -> None:
        path = thumb_path(self.root, key, segment.index)
        try:
            if key not in self._made:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(key)
            data = jpeg(middle_frame(segment))
            tmp = path.with_suffix(".jpg.partial")
            tmp.write_bytes(data)
            tmp.replace(path)
        except (OSError, MediaError, av.FFmpegError) as e:  # a picture must never cost the labels
            if not self._failed:
                log.warning("thumbnails: %s: %s (no more thumbnails are reported failing)", path, e)
            self._failed = True
