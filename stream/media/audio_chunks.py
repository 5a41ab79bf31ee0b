"""Decoded audio as timed float32 mono chunks: resampled with ``av.AudioResampler``, timed by the running
sample count (restarted where the stream's timestamps jump), and without the codec's padding past the
stream's declared end (AAC fills its last frame with it, so a 6.0 s file decodes to 6.016 s)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import av
import numpy as np

from avfuse.stream.media.discontinuity import JUMP_BACK_S

log = logging.getLogger(__name__)

AUDIO_CHUNK_S = 0.5  # resampled audio is handed on in chunks of at least this long
AUDIO_RESYNC_S = 0.05  # audio pts drifting further than this from the running sample count restarts the clock
# Decoded audio past the stream's declared end by at most this is codec padding (AAC fills its last
# 1024-sample frame: up to 21 ms at 48 kHz, 128 ms at 8 kHz) and is dropped; further past, the declared
# end is taken to be wrong and nothing is dropped.
MAX_PADDING_S = 0.2


def declared_end(stream: av.stream.Stream, t0: float) -> float | None:
    """Where ``stream`` says it ends (its start_time plus its duration, relative to t0), or None."""
    if stream.start_time is None or not stream.duration or stream.time_base is None:
        return None
    return float((stream.start_time + stream.duration) * stream.time_base) - t0


class AudioChunker:
    """Resample decoded audio frames to float32 mono and time them by the running sample count.

    Output is batched into chunks of at least ``chunk_s`` seconds (fewer, larger items downstream).
    ``limit``: where the stream declares it ends; samples past it (codec padding, at most
    ``MAX_PADDING_S``) are held back and dropped at the end."""

    def __init__(self, rate: int, t0: float, chunk_s: float = AUDIO_CHUNK_S, limit: float | None = None):
        self.rate, self.t0, self.limit = rate, t0, limit
        self._min = max(1, round(chunk_s * rate))
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        self._base: float | None = None  # time of the first output sample since the last resync
        self._count = 0  # output samples since the last resync, batched or not
        self._batch: list[np.ndarray] = []
        self._batch_n = 0
        self._offset = 0.0  # added to the timestamps after each discontinuity
        self._jumps: list[tuple[float, float]] = []

    @property
    def end(self) -> float:
        """Time just after the last sample resampled so far (-inf before any)."""
        return -math.inf if self._base is None else self._base + self._count / self.rate

    def push(self, frame: av.AudioFrame | None) -> Iterator[tuple[float, np.ndarray]]:
        """Feed one decoded frame (None at the end, to flush) and yield the chunks that are ready."""
        if frame is not None and frame.pts is not None and frame.time_base is not None:
            t = float(frame.pts * frame.time_base) - self.t0 + self._offset
            expected = None if self._base is None else self._base + self._count / self.rate
            if expected is not None and t < expected - JUMP_BACK_S:  # timestamps start again: carry on from here
                self._offset += expected - t
                self._jumps.append((expected, expected - t))
                self.limit = None  # the declared end is the first part's
                t = expected
            if expected is None or abs(t - expected) > AUDIO_RESYNC_S:
                if expected is not None:
                    log.debug("audio timestamp jump %.3f s -> %.3f s; resyncing", expected, t)
                    yield from self._resample(None, flush=True, final=False)
                    self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
                self._base, self._count = t, 0
        elif frame is not None and self._base is None:
            self._base = 0.0
        yield from self._resample(frame, flush=frame is None, final=frame is None)

    def jumps(self) -> list[tuple[float, float]]:
        """The discontinuities met since last asked: (media time it continues at, seconds it went back)."""
        out, self._jumps = self._jumps, []
        return out

    def _padding(self) -> int:
        """Samples resampled past the declared end (0 when none, or when so many the end must be wrong)."""
        if self.limit is None or self._base is None:
            return 0
        past = self.end - self.limit
        if past > MAX_PADDING_S:
            log.debug("audio goes on %.3f s past its declared end %.3f s; the end is ignored", past, self.limit)
            self.limit = None
            return 0
        return max(0, round(past * self.rate))

    def _resample(self, frame: av.AudioFrame | None, *, flush: bool,
                  final: bool) -> Iterator[tuple[float, np.ndarray]]:
        if self._base is None:
            return
        for out in self._resampler.resample(frame):
            samples = out.to_ndarray().reshape(-1)
            if samples.size:
                self._batch.append(samples)
                self._batch_n += samples.size
                self._count += samples.size
        padding = self._padding() if self._batch_n else 0
        if padding and not flush:
            return  # maybe codec padding: held until the end shows whether more audio follows
        if self._batch_n and (flush or self._batch_n >= self._min):
            chunk = self._batch[0] if len(self._batch) == 1 else np.concatenate(self._batch)
            if final and padding:
                cut = min(padding, chunk.size)
                chunk, self._count, self._batch_n = chunk[:chunk.size - cut], self._count - cut, self._batch_n - cut
                if not chunk.size:
                    self._batch, self._batch_n = [], 0
                    return
            # FFmpeg's mono downmix adds channels at 0.707 each, so a loud stereo track can exceed 1
            yield self._base + (self._count - self._batch_n) / self.rate, np.clip(chunk, -1.0, 1.0, dtype=np.float32)
            self._batch, self._batch_n = [], 0
