"""Exponential backoff with jitter, for reconnecting live sources."""

from __future__ import annotations

import random
from dataclasses import dataclass

from avfuse.stream.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Delay before reconnect attempt ``n`` (1-based): ``initial * factor**(n-1)``, at most ``cap``,
    then scaled by a random factor in ``[1 - jitter, 1]`` so that many cameras dropped at once do
    not all retry in the same instant."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= 3600:
            raise ConfigError(f"backoff initial delay must be 0..3600 s, got {self.initial!r}")
        if not 1.0 <= self.factor <= 10.0:
            raise ConfigError(f"backoff factor must be 1..10, got {self.factor!r}")
        if not self.initial <= self.cap <= 3600:
            raise ConfigError(f"backoff cap must be between the initial delay and 3600 s, got {self.cap!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(f"backoff jitter must be 0..1, got {self.jitter!r}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt`` (1 = the first retry)."""
        if attempt < 1:
            raise ConfigError(f"attempt must be >= 1, got {attempt}")
        base = min(self.cap, self.initial * self.factor ** min(attempt - 1, 64))
        r = (rng or random).random()
        return base * (1.0 - self.jitter * r)
