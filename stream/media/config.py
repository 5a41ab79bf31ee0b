"""Typed, frozen configuration for decoding and segmenting. The CLI only builds these."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from avfuse.stream.errors import ConfigError

RESIZE_POLICIES = ("stretch", "letterbox", "crop")
TIME_TOLERANCE_S = 1e-6  # media times this close are the same instant


@dataclass(frozen=True, kw_only=True)
class DecodeConfig:
    """How a source is decoded: frame rate and size of sampled frames, audio rate."""

    fps: float = 4.0
    height: int = 160
    width: int = 160
    resize: str = "stretch"  # stretch | letterbox (pad, keep aspect) | crop (centre, keep aspect)
    sample_rate: int = 16000
    threads: int = 0  # FFmpeg decoder threads; 0: one per usable core (see decoder_threads)
    queue_size: int = 64  # decoded items buffered between the decode thread and the segmenter

    def __post_init__(self) -> None:
        if not 0 < self.fps <= 120:
            raise ConfigError(f"fps must be in (0, 120], got {self.fps!r}")
        if not (8 <= self.height <= 4096 and 8 <= self.width <= 4096):
            raise ConfigError(f"frame size must be 8..4096 on each side, got {self.width}x{self.height}")
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if not 1000 <= self.sample_rate <= 192000:
            raise ConfigError(f"sample_rate must be 1000..192000 Hz, got {self.sample_rate!r}")
        if self.threads < 0 or self.queue_size < 1:
            raise ConfigError(f"threads must be >= 0 and queue_size >= 1, got {self.threads}, {self.queue_size}")


@dataclass(frozen=True, kw_only=True)
class SegmentConfig:
    """How decoded media is cut into windows: ``window_s`` long, one every ``hop_s`` seconds.

    A window is emitted only where real media covers at least ``min_coverage`` of it: a window that
    starts at ``start`` exists while the media's real end (its last frame's end or its last real audio
    sample's end, codec padding left out) is at least ``start + min_coverage * window_s``."""

    window_s: float = 2.0
    hop_s: float | None = None  # None means hop = window (no overlap)
    min_coverage: float = 0.5  # share of a window, in (0, 1], that real media must cover

    def __post_init__(self) -> None:
        if not 0.1 <= self.window_s <= 600:
            raise ConfigError(f"window_s must be 0.1..600 seconds, got {self.window_s!r}")
        if self.hop_s is not None and not 0.05 <= self.hop_s <= 600:
            raise ConfigError(f"hop_s must be 0.05..600 seconds, got {self.hop_s!r}")
        if not 0 < self.min_coverage <= 1:
            raise ConfigError(f"min_coverage must be a share of the window in (0, 1], got {self.min_coverage!r}")

    @property
    def hop(self) -> float:
        return self.window_s if self.hop_s is None else self.hop_s

    def windows(self, media_end: float | None) -> int:
        """How many windows (k = 0, 1, ...) media from time 0 to ``media_end`` seconds gives (0 for None)."""
        if media_end is None:
            return 0
        room = media_end + TIME_TOLERANCE_S - self.min_coverage * self.window_s
        return math.floor(room / self.hop) + 1 if room >= 0 else 0


def frames_per_window(decode: DecodeConfig, segment: SegmentConfig) -> int:
    """T = round(fps * window_s), at least 1."""
    return max(1, round(decode.fps * segment.window_s))


def samples_per_window(decode: DecodeConfig, segment: SegmentConfig) -> int:
    """S = sample_rate * window_s."""
    return round(decode.sample_rate * segment.window_s)


def decode_metadata(decode: DecodeConfig, segment: SegmentConfig) -> dict:
    """The ``avfuse.decode`` metadata dict that is stored in every exported model."""
    return {
        "fps": decode.fps,
        "frames": frames_per_window(decode, segment),
        "height": decode.height,
        "width": decode.width,
        "resize": decode.resize,
        "sample_rate": decode.sample_rate,
        "samples": samples_per_window(decode, segment),
        "window_s": segment.window_s,
        "hop_s": segment.hop,
        "min_coverage": segment.min_coverage,
    }


def configs_from_metadata(meta: dict) -> tuple[DecodeConfig, SegmentConfig]:
    """Rebuild the configs from an ``avfuse.decode`` dict (inverse of :func:`decode_metadata`).

    A model exported before ``min_coverage`` was saved gets the default."""
    try:
        coverage = {"min_coverage": float(meta["min_coverage"])} if "min_coverage" in meta else {}
        decode = DecodeConfig(
            fps=float(meta["fps"]),
            height=int(meta["height"]),
            width=int(meta["width"]),
            resize=str(meta.get("resize", "stretch")),
            sample_rate=int(meta["sample_rate"]),
        )
        segment = SegmentConfig(window_s=float(meta["window_s"]), hop_s=float(meta["hop_s"]), **coverage)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"avfuse.decode metadata is incomplete or invalid: {meta!r}") from e
    return decode, segment


def as_dict(config: DecodeConfig | SegmentConfig) -> dict:
    return asdict(config)
