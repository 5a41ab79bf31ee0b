"""Cut timed video frames and audio chunks into Segments (see ARCHITECTURE.md, "The segment").

Window k covers [k*hop, k*hop + window) seconds of media time, where time 0 is the file's first
timestamp (the minimum start_time over its video and audio streams): a file whose pts start at 10 s
still starts its first segment at 0.0. A window holds exactly T = round(fps * window) frames, frame i
being the latest frame at or before start + (i + 0.5) * window / T (black before the first frame), and
exactly S = sample_rate * window audio samples (zeros where there was no audio). Windows are emitted
in order from 0 while real media covers at least ``SegmentConfig.min_coverage`` of them (see
:meth:`SegmentConfig.windows`): the media's real end is the later of the video's end (its last frame's
time plus its duration, which the decoder's last "tick" says) and the end of the last real audio sample
(codec padding is dropped by the decoder), so a sliver of padding or one stray frame past the last
window makes no window. A window past the media's end is padded (last frame repeated, audio
zero-padded), its ``end`` is the media's end, and ``present`` says which modalities were really there.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Generator, Iterator
from pathlib import Path

import av
import numpy as np

from avfuse.stream.errors import CaptionError, MediaError
from avfuse.stream.media.captions import Captions, embedded_captions, load_captions, sidecar_for
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, frames_per_window, samples_per_window
from avfuse.stream.media.decode import (
    EPS,
    DecodeStats,
    check_complete,
    decode_items,
    is_url,
    media_streams,
    open_container,
)
from avfuse.stream.media.decode_plan import plan_decode
from avfuse.stream.media.discontinuity import Discontinuity
from avfuse.stream.media.gop_decode import gop_video_items
from avfuse.stream.media.items import AudioItem, Item, JumpItem, VideoItem
from avfuse.stream.media.prefetch import prefetch
from avfuse.stream.media.redact import redact
from avfuse.stream.media.segment import Present, Segment
from avfuse.stream.media.split_decode import split_items

log = logging.getLogger(__name__)

MAX_LAG_S = 8.0  # a stream this far behind the other is taken to have a gap; windows are not held for it
_SNAP = 2  # audio chunks starting within this many samples of the previous chunk's end are contiguous


class Segmenter:
    """Turns timed decoded items into Segments. Used by :func:`iter_segments` and by live sources."""

    def __init__(self, *, source: str, decode: DecodeConfig, segment: SegmentConfig,
                 captions: Captions | None = None, has_video: bool, has_audio: bool):
        self.source, self.captions = source, captions
        self.has_video, self.has_audio = has_video, has_audio
        self.segment, self.window, self.hop = segment, segment.window_s, segment.hop
        self.T, self.S = frames_per_window(decode, segment), samples_per_window(decode, segment)
        self.rate = decode.sample_rate
        self.shape = (decode.height, decode.width, 3)
        self.next_index = 0
        self._frames: list[tuple[float, np.ndarray]] = []  # (t, rgb), t increasing
        self._video_t = -math.inf  # time of the latest frame pushed
        self._video_seen = -math.inf  # time of the latest frame decoded, pushed or not (see tick)
        self._audio = np.zeros(0, np.float32)
        self._real = np.zeros(0, bool)  # which buffered samples are real audio
        self._abase = 0  # absolute sample index of self._audio[0]
        self._aend = 0  # absolute sample index just after the last real sample pushed
        self._any_audio = False
        self._notices: list[Discontinuity] = []  # met since the last window: handed on with the next

    # ---- input -------------------------------------------------------------------------------
    def push_video(self, t: float, rgb: np.ndarray) -> list[Segment]:
        """Add a frame at ``t`` seconds (rgb [H, W, 3] uint8, already scaled). Times must not go back."""
        if rgb.shape != self.shape or rgb.dtype != np.uint8:
            raise MediaError(f"{self.source}: frame must be uint8 {self.shape}, got {rgb.dtype} {rgb.shape}")
        if t < self._video_t - EPS:
            log.debug("%s: frame at %.3f s is older than %.3f s; dropped", self.source, t, self._video_t)
            return []
        self._frames.append((t, rgb))
        self._video_t = t
        return self._emit_ready()

    def tick(self, t: float) -> list[Segment]:
        """A video frame at ``t`` was decoded (and maybe not pushed: no window samples it), or the video
        ended at ``t``; every frame before ``t`` that a window needs has been pushed. Windows ending at or
        before ``t`` can close."""
        if t > self._video_seen:
            self._video_seen = t
            return self._emit_ready()
        return []

    def push(self, item: Item) -> list[Segment]:
        """One item of :func:`~avfuse.stream.media.decode.decode_items` (:mod:`avfuse.stream.media.items`); a
        jump's :class:`Discontinuity` is handed on with the next window as one of its ``notices``."""
        if isinstance(item, VideoItem):
            return self.push_video(item.t, item.rgb)
        if isinstance(item, AudioItem):
            return self.push_audio(item.t, item.samples)
        if isinstance(item, JumpItem):
            self._notices.append(item.jump)
            return []
        return self.tick(item.t)

    def push_audio(self, t: float, samples: np.ndarray) -> list[Segment]:
        """Add float32 mono samples at ``sample_rate`` whose first sample is at ``t`` seconds."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        start = round(t * self.rate)
        if self._any_audio and abs(start - self._aend) <= _SNAP:
            start = self._aend
        if start < self._abase:  # before time 0 or into windows already emitted
            samples = samples[self._abase - start:]
            start = self._abase
        if samples.size == 0:
            return []
        end = start + samples.size
        need = end - self._abase
        if need > self._audio.size:  # grow geometrically; the space past the data stays zero / not real
            size = max(need, 2 * self._audio.size, self.S)
            audio, real = np.zeros(size, np.float32), np.zeros(size, bool)
            audio[:self._audio.size], real[:self._real.size] = self._audio, self._real
            self._audio, self._real = audio, real
        self._audio[start - self._abase:end - self._abase] = samples
        self._real[start - self._abase:end - self._abase] = True
        self._aend = max(self._aend, end)
        self._any_audio = True
        return self._emit_ready()

    def finish(self) -> list[Segment]:
        """Flush the remaining windows that real media covers enough of; they end at the media's end."""
        end = self._media_end()
        out = []
        count = self.segment.windows(end)
        while self.next_index < count:
            out.append(self._make(self.next_index, media_end=end))
        if end is not None and self.next_index * self.hop < end - EPS:
            log.debug("%s: the last %.3f s of media cover less than %g of a window; no window for them",
                      self.source, end - self.next_index * self.hop, self.segment.min_coverage)
        return out

    # ---- windows -----------------------------------------------------------------------------
    def _start(self, k: int) -> float:
        return k * self.hop

    def _sample_times(self, k: int) -> np.ndarray:
        return self._start(k) + (np.arange(self.T) + 0.5) * (self.window / self.T)

    def _media_end(self) -> float | None:
        """Where the real media seen so far ends: the video's end (the latest frame or tick) or the end
        of the last real audio sample, whichever is later; None before any."""
        ends = [max(self._video_t, self._video_seen), self._aend / self.rate if self._any_audio else -math.inf]
        return max(ends) if max(ends) > -math.inf else None

    def _ready(self, k: int) -> bool:
        """Can window k close before the end: each stream is done with it or far ahead, and the media is
        known to reach its end (so the window is whole)."""
        end = self._start(k) + self.window
        audio_t = self._aend / self.rate if self._any_audio else -math.inf
        video_done = max(self._video_t, self._video_seen) >= end - EPS
        audio_done = self._aend >= round(self._start(k) * self.rate) + self.S
        video_ok = not self.has_video or video_done or audio_t > end + MAX_LAG_S
        audio_ok = not self.has_audio or audio_done or max(self._video_t, self._video_seen) > end + MAX_LAG_S
        return video_ok and audio_ok and (video_done or audio_done)

    def _emit_ready(self) -> list[Segment]:
        out = []
        while self._ready(self.next_index):
            out.append(self._make(self.next_index))
        return out

    def _make(self, k: int, media_end: float | None = None) -> Segment:
        """Window k; one that ``media_end`` (the end, once the source has ended) falls in ends there."""
        start = self._start(k)
        end = start + self.window if media_end is None else min(start + self.window, media_end)
        frames, video = self._window_frames(k, start, end)
        audio, real_audio = self._window_audio(start)
        text = self.captions.text_between(start, end) if self.captions is not None else ""
        self.next_index = k + 1
        self._prune()
        notices, self._notices = tuple(self._notices), []
        return Segment(source=self.source, index=k, start=round(start, 6), end=round(end, 6), frames=frames,
                       audio=audio, text=text, present=Present(video=video, audio=real_audio, text=bool(text)),
                       notices=notices)

    def _window_frames(self, k: int, start: float, end: float) -> tuple[np.ndarray, bool]:
        out = np.zeros((self.T, *self.shape), np.uint8)
        times = [t for t, _ in self._frames]
        for i, s in enumerate(self._sample_times(k)):
            j = np.searchsorted(times, s + EPS, side="right") - 1
            if j >= 0:
                out[i] = self._frames[j][1]
        real = any(start - EPS <= t < end - EPS for t in times)
        return out, real

    def _window_audio(self, start: float) -> tuple[np.ndarray, bool]:
        lo = round(start * self.rate) - self._abase
        out = np.zeros(self.S, np.float32)
        src = self._audio[max(lo, 0):lo + self.S]
        real = self._real[max(lo, 0):lo + self.S]
        if src.size:
            out[max(-lo, 0):max(-lo, 0) + src.size] = src
        return out, bool(real.any())

    def _prune(self) -> None:
        """Drop frames and samples no later window can use (keep the latest frame before the next window)."""
        start = self._start(self.next_index)
        keep = 0
        for j, (t, _) in enumerate(self._frames):
            if t <= start - EPS:
                keep = j
        if keep:
            del self._frames[:keep]
        drop = round(start * self.rate) - self._abase
        if drop > 0:
            self._audio, self._real = self._audio[drop:], self._real[drop:]
            self._abase += drop


def _captions_for(source: str, container: av.container.InputContainer, captions: str | os.PathLike | None,
                  options: dict[str, str] | None, timeout: float | tuple[float, float] | None) -> Captions | None:
    """An explicit caption file, else a sidecar beside a local file, else the embedded subtitle stream."""
    if captions is not None:
        return load_captions(captions)
    if not is_url(source):
        sidecar = sidecar_for(source)
        if sidecar is not None:
            log.debug("%s: using sidecar captions %s", source, sidecar)  # a file: no credentials
            return load_captions(sidecar)
    if not container.streams.subtitles:
        return None
    if is_url(source):
        log.info("%s: embedded subtitles in a URL are not read (pass captions=)", redact(source))
        return None
    second = open_container(source, options=options, timeout=timeout)
    try:
        return embedded_captions(second)
    except CaptionError as e:
        log.warning("%s", e)
        return None
    finally:
        second.close()


def iter_segments(source: str | os.PathLike, *, decode: DecodeConfig = DecodeConfig(),  # noqa: B008 (frozen)
                  segment: SegmentConfig = SegmentConfig(),  # noqa: B008 (frozen, so a shared default is safe)
                  captions: str | os.PathLike | None = None,
                  stats: DecodeStats | None = None, options: dict[str, str] | None = None,
                  timeout: float | tuple[float, float] | None = None) -> Generator[Segment, None, None]:
    """Decode ``source`` on a background thread and yield its Segments in order. ``captions``: a caption
    file to use instead of the sidecar/embedded ones. ``options``/``timeout`` go to av.open (for URLs).

    Raises SourceError / MediaError / CodecError (naming the source) for sources that cannot be used;
    a video-only or audio-only source is fine (``present`` says what is missing)."""
    name = redact(source) if is_url(source) else str(Path(source))  # what segments and logs call it
    stats = stats if stats is not None else DecodeStats()
    container = open_container(source, options=options, timeout=timeout)
    try:
        caps = _captions_for(str(source), container, captions, options, timeout)
        plan = plan_decode(source, container, decode)  # the one choice of how to decode it
    except BaseException:
        container.close()
        raise
    vstream, astream = media_streams(container)
    seg = Segmenter(source=name, decode=decode, segment=segment, captions=caps,
                    has_video=vstream is not None, has_audio=astream is not None)

    def produce() -> Iterator[Item]:
        try:
            if plan.gop_workers:  # a video-only H.264 file: its GOPs on several threads (each opens the file)
                end = yield from gop_video_items(str(source), plan.gop_workers, decode, segment, stats,
                                                 has_audio=False)
            else:
                end = yield from decode_items(container, decode, stats, segment)
            if not is_url(source):
                check_complete(container, end)
        finally:
            container.close()

    if plan.split:
        items = split_items(source, container, decode, segment, stats, name=name, gop_workers=plan.gop_workers)
    else:
        items = prefetch(produce(), decode.queue_size, name=f"decode:{Path(name).name}")
    try:
        for item in items:
            yield from seg.push(item)
        yield from seg.finish()
    finally:
        items.close()  # now, not when a traceback holding this frame is freed: stops the thread, closes the file
        log.debug("%s: %s", name, stats)
