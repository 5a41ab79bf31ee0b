"""From model outputs to segment records: temporal smoothing of the class probabilities per source,
then the top-k labels. Records follow ARCHITECTURE.md "Records"."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.segment import MODALITIES, Segment
from avfuse.stream.records import ErrorRecord, SegmentRecord, as_dict

SMOOTHING = ("none", "mean", "ema")


@dataclass(frozen=True, kw_only=True)
class PostprocessConfig:
    """``smoothing``: none, ``mean`` (moving average over the last ``window`` segments) or ``ema``
    (exponential moving average with weight ``alpha`` on the newest segment)."""

    top_k: int = 3
    smoothing: str = "none"
    window: int = 3
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if self.smoothing not in SMOOTHING:
            raise ConfigError(f"smoothing must be one of {SMOOTHING}, got {self.smoothing!r}")
        if self.window < 1:
            raise ConfigError(f"smoothing window must be >= 1 segment, got {self.window}")
        if not 0 < self.alpha <= 1:
            raise ConfigError(f"smoothing alpha must be in (0, 1], got {self.alpha}")


def parse_smoothing(text: str) -> dict:
    """``none``, ``mean:K`` or ``ema:ALPHA`` (from the command line) -> PostprocessConfig keywords."""
    kind, _, arg = text.partition(":")
    try:
        if kind == "none" and not arg:
            return {"smoothing": "none"}
        if kind == "mean":
            return {"smoothing": "mean", "window": int(arg or 3)}
        if kind == "ema":
            return {"smoothing": "ema", "alpha": float(arg or 0.5)}
    except ValueError as e:
        raise ConfigError(f"smoothing {text!r}: {arg!r} is not a number") from e
    raise ConfigError(f"smoothing {text!r}: expected none, mean:K (segments) or ema:ALPHA (0..1]")


class Smoother:
    """Smooths one source's probability rows over time. One instance per source."""

    def __init__(self, config: PostprocessConfig) -> None:
        self.config = config
        self._recent: deque[np.ndarray] = deque(maxlen=config.window)
        self._ema: np.ndarray | None = None

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        kind = self.config.smoothing
        if kind == "mean":
            self._recent.append(probs)
            return np.mean(self._recent, axis=0)
        if kind == "ema":
            a = self.config.alpha
            self._ema = probs.copy() if self._ema is None else a * probs + (1 - a) * self._ema
            return self._ema
        return probs


def top_k(probs: np.ndarray, labels: tuple[str, ...], k: int) -> list[tuple[str, float]]:
    """The k most probable labels, best first (ties keep the label order)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(labels[i], round(float(probs[i]), 6)) for i in order]


def segment_record(segment: Segment, probs: np.ndarray, gates: np.ndarray, labels: tuple[str, ...],
                   k: int, *, model: str | None = None) -> dict:
    """The record of ``segment``; ``model``: what labelled it (the model file's SHA-256 prefix)."""
    top = top_k(probs, labels, k)
    return as_dict(SegmentRecord(
        source=segment.source, index=segment.index, start=round(segment.start, 6), end=round(segment.end, 6),
        label=top[0][0], score=top[0][1], top=tuple(top),
        gates={m: round(float(g), 6) for m, g in zip(MODALITIES, gates, strict=True)},
        present=segment.present.as_dict(), wallclock=segment.wallclock, model=model))


def error_record(source: str, error: BaseException) -> dict:
    return as_dict(ErrorRecord(source=source, error=type(error).__name__, detail=str(error)))
