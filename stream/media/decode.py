"""Decode a source with PyAV into timed items: scaled RGB frames and 16 kHz mono audio chunks.

Times are seconds of media time relative to the file's first timestamp (the minimum ``start_time``
over its video and audio streams), so a file whose pts start at 10 s yields its first frame at 0.0.
Frames are scaled in libswscale (``VideoReformatter``); only frames that a segment can sample are
converted. Audio goes through ``av.AudioResampler`` (see :mod:`avfuse.stream.media.audio_chunks`). Corrupt packets are
skipped and counted.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import av
import numpy as np
from av.codec.context import ThreadType
from av.video.reformatter import Interpolation, VideoReformatter

from avfuse.stream.errors import CodecError, MediaError, SourceError
from avfuse.stream.media.audio_chunks import AUDIO_CHUNK_S, AudioChunker, declared_end
from avfuse.stream.media.config import TIME_TOLERANCE_S, DecodeConfig, SegmentConfig, frames_per_window
from avfuse.stream.media.discontinuity import JUMP_BACK_S, Discontinuity
from avfuse.stream.media.items import AudioItem, Item, JumpItem, TickItem, VideoItem
from avfuse.stream.media.redact import redact, redact_text, scrub, secrets_of

log = logging.getLogger(__name__)

EPS = TIME_TOLERANCE_S  # seconds; a frame at t counts as "at or before" a sample time s when t <= s + EPS
INTERPOLATION = Interpolation.AREA  # anti-aliased for big downscales (720p -> 160), and fast

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://|file:)")


@dataclass
class DecodeStats:
    """Counters filled while decoding (mutable; share one across sources to total them)."""

    packets: int = 0
    corrupt_packets: int = 0
    video_frames: int = 0
    audio_frames: int = 0

    def add(self, other: DecodeStats) -> None:
        """Add ``other``'s counts to these (the threads of one source each keep their own)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def is_url(source: str | os.PathLike) -> bool:
    """``scheme://...`` or ``file:...``: opened by FFmpeg as given, never looked for on disk."""
    return _URL.match(str(source)) is not None


def _jumped(name: str, stream: str, at: float, back_s: float) -> Discontinuity:
    jump = Discontinuity(source=name, stream=stream, at=at, back_s=back_s)
    log.warning("%s", jump.text)
    return jump


def open_container(source: str | os.PathLike, *, options: dict[str, str] | None = None,
                   timeout: float | tuple[float, float] | None = None) -> av.container.InputContainer:
    """Open a file or URL for reading, with one typed error naming the source and the reason.

    SourceError: missing/empty file, unreachable URL. MediaError: not media, or no video/audio stream.
    CodecError: a video or audio stream uses a codec this FFmpeg cannot decode.
    """
    url = str(source)
    name = redact(url)  # errors name the source without the credentials of a URL
    if not is_url(source):
        path = Path(source)
        if not path.exists():
            raise SourceError(f"{name}: no such file")
        if path.is_dir():
            raise SourceError(f"{name}: is a directory, not a media file")
        if path.stat().st_size == 0:
            raise SourceError(f"{name}: file is empty")
    try:
        container = av.open(url, "r", options=options or {}, timeout=timeout)
    except av.error.InvalidDataError as e:
        raise MediaError(f"{name}: not a readable media file ({_reason(e, url)})") from without_secrets(e, url)
    except (av.error.DemuxerNotFoundError, av.error.DecoderNotFoundError) as e:
        raise MediaError(f"{name}: unrecognised format ({_reason(e, url)})") from without_secrets(e, url)
    except (av.error.FFmpegError, OSError) as e:
        raise SourceError(f"{name}: cannot open ({_reason(e, url)})") from without_secrets(e, url)
    try:
        _check_streams(name, container)
    except BaseException:
        container.close()
        raise
    return container


def without_secrets(e: BaseException, url: str) -> BaseException:
    """``e``, or where it quotes a URL with credentials (PyAV errors carry it as ``filename``), a copy
    of the same type without it: what goes into ``raise ... from`` and so into tracebacks."""
    if not secrets_of(url) or not isinstance(e, av.error.FFmpegError | OSError):
        return e
    try:
        # PyAV's stub wants an int and a str; an OSError's errno and strerror may be None, which both take
        return type(e)(e.errno, e.strerror)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return RuntimeError(_reason(e, url))


def _reason(e: BaseException, url: str) -> str:
    """The reason an FFmpeg/OS error gives, with the URL's secrets removed (its str() quotes the URL)."""
    return redact_text(scrub(str(getattr(e, "strerror", None) or e), url))


def is_picture(stream: av.stream.Stream) -> bool:
    """A cover image stored as a video stream (``attached_pic``, as in music files): not video."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def video_streams(container: av.container.InputContainer) -> list[av.video.stream.VideoStream]:
    """The container's video streams, cover images left out."""
    return [s for s in container.streams.video if not is_picture(s)]


def media_streams(container: av.container.InputContainer) -> tuple[av.video.stream.VideoStream | None,
                                                                   av.audio.stream.AudioStream | None]:
    """The streams segments are made of: the first video stream (not a cover image) and the first audio one."""
    video, audio = video_streams(container), list(container.streams.audio)
    return (video[0] if video else None), (audio[0] if audio else None)


def _check_streams(name: str, container: av.container.InputContainer) -> None:
    streams = video_streams(container) + list(container.streams.audio)
    if not streams:
        raise MediaError(f"{name}: has no video or audio stream")
    for s in streams:
        ctx = s.codec_context
        if ctx is None or not ctx.codec.is_decoder:
            tag = getattr(ctx, "name", None) or getattr(s, "codec_tag", None) or "unknown"
            raise CodecError(f"{name}: {s.type} stream #{s.index} uses a codec FFmpeg cannot decode ({tag})")


def decoder_threads(decode: DecodeConfig) -> int:
    """FFmpeg decoder threads: ``decode.threads``, or 0 (auto) as one per core this process may use.

    FFmpeg's own auto picks one more frame thread than there are cores; on two cores the extra
    thread only contends (bunny 720p H.264: 1.40 s with 2 frame threads, 1.64 s with FFmpeg's 3)."""
    if decode.threads:
        return decode.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 16))


def media_start(container: av.container.InputContainer) -> float:
    """The file's first timestamp in seconds: the minimum start_time over its video and audio streams."""
    starts = [float(s.start_time * s.time_base) for s in video_streams(container) + list(container.streams.audio)
              if s.start_time is not None and s.time_base is not None]
    return min(starts) if starts else 0.0


def frame_end(frame: av.VideoFrame, t: float, time_base: float, step: float) -> float:
    """When the frame shown at ``t`` ends: t plus its duration, or plus ``step`` when it has none."""
    duration = (frame.duration or 0) * time_base
    return t + (duration if duration > 0 else step)


def media_duration(container: av.container.InputContainer) -> float | None:
    """Declared duration in seconds (container header), or None when unknown."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    durations = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
    return max(durations) if durations else None


class SampleClock:
    """Which frames a segment can sample: sample times are k*hop + (i+0.5)*window/T for k >= 0, i < T."""

    def __init__(self, decode: DecodeConfig, segment: SegmentConfig):
        self.window = segment.window_s
        self.hop = segment.hop
        self.T = frames_per_window(decode, segment)
        self.dt = self.window / self.T

    def _windows(self, lo: float, hi: float) -> range:
        """Indices of windows that overlap [lo, hi]."""
        first = max(0, math.ceil((lo - self.window) / self.hop - 1e-9))
        return range(first, max(first, math.floor(hi / self.hop + 1e-9) + 1))

    def sample_in(self, lo: float, hi: float) -> bool:
        """True if some sample time s has lo - EPS <= s < hi - EPS (a frame at lo is the latest for s)."""
        for k in self._windows(lo, hi):
            start = k * self.hop
            i = max(0, math.ceil((lo - EPS - start) / self.dt - 0.5 - 1e-9))
            if i < self.T and start + (i + 0.5) * self.dt < hi - EPS:
                return True
        return False

    def needed(self, t: float, t_next: float, t_last_kept: float | None) -> bool:
        """Must the frame at t be kept, given the next frame is at t_next and the last kept one at t_last_kept?

        Kept if it is the latest frame for some sample time, or if it is the last frame of a window
        that holds no kept frame yet (so ``present.video`` is true for every window that had video)."""
        return self.sample_in(t, t_next) or any(t_last_kept is None or t_last_kept < start - EPS
                                                for start in self._windows_ending_after(t, t_next))

    def may_need(self, t: float, t_next: float) -> bool:
        """Could :meth:`needed` keep the frame at t, whatever frame was kept last?"""
        return self.sample_in(t, t_next) or any(True for _ in self._windows_ending_after(t, t_next))

    def _windows_ending_after(self, t: float, t_next: float) -> Iterator[float]:
        """Starts of the windows holding t that end before the next frame at t_next (t is their last frame)."""
        for k in self._windows(t, t):
            start, end = k * self.hop, k * self.hop + self.window
            if start - EPS <= t < end - EPS <= t_next - EPS:
                yield start

    def needed_last(self, t: float, t_last_kept: float | None) -> bool:
        """Must the stream's last frame, at t, be kept? (Only windows that contain t exist after it.)"""
        for k in self._windows(t, t):
            start = k * self.hop
            if start + (self.T - 0.5) * self.dt >= t - EPS or t_last_kept is None or t_last_kept < start - EPS:
                return True
        return False


class FrameScaler:
    """Scale a decoded frame to [H, W, 3] rgb24 in libswscale under the configured resize policy."""

    def __init__(self, decode: DecodeConfig):
        self.h, self.w, self.policy = decode.height, decode.width, decode.resize
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        h, w = self.h, self.w
        if self.policy == "stretch" or frame.width * h == frame.height * w:
            return self._scale(frame, w, h)
        scale_fit = min(w / frame.width, h / frame.height)
        scale_cover = max(w / frame.width, h / frame.height)
        if self.policy == "letterbox":
            sw, sh = max(1, round(frame.width * scale_fit)), max(1, round(frame.height * scale_fit))
            out = np.zeros((h, w, 3), np.uint8)
            y, x = (h - sh) // 2, (w - sw) // 2
            out[y:y + sh, x:x + sw] = self._scale(frame, sw, sh)
            return out
        sw, sh = max(w, round(frame.width * scale_cover)), max(h, round(frame.height * scale_cover))
        y, x = (sh - h) // 2, (sw - w) // 2
        return np.ascontiguousarray(self._scale(frame, sw, sh)[y:y + h, x:x + w])

    def _scale(self, frame: av.VideoFrame, w: int, h: int) -> np.ndarray:
        # threads=1: a 160x160 output is too small for slice threads to pay for themselves (5x slower)
        out = self._reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation=INTERPOLATION,
                                         threads=1)
        return out.to_ndarray()


def decode_items(container: av.container.InputContainer, decode: DecodeConfig, stats: DecodeStats,
                 segment: SegmentConfig | None = None, *, ticks: bool = False,
                 only: str | None = None) -> Generator[Item, None, float]:
    """Yield :class:`VideoItem` (rgb ``[H, W, 3]`` uint8) and :class:`AudioItem` (float32 mono at
    decode.sample_rate) in decode order (:mod:`avfuse.stream.media.items`). Video frames that no segment can
    sample are skipped before conversion (pass the ``segment`` config used downstream; the default one is
    assumed otherwise).

    ``ticks`` (live sources, where a window should close as soon as the media past its end is seen):
    every decoded video frame also yields a cheap ``TickItem(t)`` once the frames before it have been
    handed on (so a tick at t says: nothing more comes before t), and audio is handed on as it is
    resampled instead of in ``AUDIO_CHUNK_S`` chunks.

    ``only`` ("video" or "audio") decodes that stream alone (see :mod:`avfuse.stream.media.split_decode`).

    After the video's last frame, with or without ``ticks``, comes ``TickItem(t)`` at the video's
    end: the last frame's time plus its duration. Audio ends at its declared end: the codec's padding
    past it is dropped (see ``avfuse.stream.media.audio_chunks.MAX_PADDING_S``).

    Returns where the decoded data ended (the last frame's end or the end of the last audio sample,
    whichever is later; -inf if nothing decoded), skipped frames included."""
    if only not in (None, "video", "audio"):
        raise ValueError(f"only must be None, 'video' or 'audio', got {only!r}")
    clock = SampleClock(decode, segment or SegmentConfig())
    name = redact(str(getattr(container, "name", "source")))
    vstream, astream = media_streams(container)
    has_audio = astream is not None  # the file's, even when only the video is decoded here
    if only == "audio":
        vstream = None
    elif only == "video":
        astream = None
    streams = [s for s in (vstream, astream) if s is not None]
    for s in streams:
        s.codec_context.thread_type = ThreadType.AUTO
        s.codec_context.thread_count = decoder_threads(decode)
    t0 = media_start(container)
    scale = FrameScaler(decode)
    audio = (AudioChunker(decode.sample_rate, t0, 0.0 if ticks else AUDIO_CHUNK_S, declared_end(astream, t0))
             if astream is not None else None)
    pending: tuple[float, av.VideoFrame] | None = None
    last_kept: float | None = None
    last_t = -math.inf
    offset = 0.0  # added to the video's timestamps after each discontinuity
    vtb = float(vstream.time_base) if vstream is not None and vstream.time_base else 0.0
    frame_step = 1.0 / float(vstream.average_rate) if vstream is not None and vstream.average_rate else 0.04

    def frames(packet: av.Packet):
        try:
            return packet.decode()
        except (av.error.InvalidDataError, av.error.UndefinedError, av.error.PatchWelcomeError) as e:
            stats.corrupt_packets += 1
            log.debug("%s: skipping corrupt %s packet at pts %s: %s", name, packet.stream.type, packet.pts, e)
            return []
        except av.error.FFmpegError as e:
            raise MediaError(f"{name}: decoding the {packet.stream.type} stream failed at pts {packet.pts} "
                             f"({_reason(e, str(container.name))})") from without_secrets(e, str(container.name))

    for packet in demuxed(container, streams, name, lambda: last_t):  # noqa: B023 (the latest last_t is meant)
        if packet.size:
            stats.packets += 1
        for frame in frames(packet):
            if audio is not None and packet.stream is astream:
                stats.audio_frames += 1
                for t, samples in audio.push(frame):
                    yield AudioItem(t, samples)
                for at, back in audio.jumps():
                    yield JumpItem(at, _jumped(name, "audio", at, back))
                continue
            stats.video_frames += 1
            if frame.pts is not None:
                t = frame.pts * vtb - t0 + offset
            else:  # a raw elementary stream has no timestamps: count frames at the stream's rate
                t = last_t + frame_step if last_t > -math.inf else 0.0
            if t < last_t - JUMP_BACK_S:  # timestamps start again (concatenated files): followed, not dropped
                back = last_t + frame_step - t
                offset, t = offset + back, t + back
                yield JumpItem(t, _jumped(name, "video", t, back))
            if t < last_t - EPS:
                log.debug("%s: video frame at %.3f s goes back in time; dropped", name, t)
                continue
            if pending is not None and clock.needed(pending[0], t, last_kept):
                last_kept = pending[0]
                yield VideoItem(pending[0], scale(pending[1]))
            pending, last_t = (t, frame), t
            if ticks:
                yield TickItem(t)
    if audio is not None:
        for t, samples in audio.push(None):
            yield AudioItem(t, samples)
    video_end = -math.inf
    if pending is not None:
        if has_audio or clock.needed_last(pending[0], last_kept):
            yield VideoItem(pending[0], scale(pending[1]))  # with audio, windows after it may need it as padding
        video_end = frame_end(pending[1], pending[0], vtb, frame_step)
        yield TickItem(video_end)
    return max(video_end, audio.end if audio is not None else -math.inf)


def demuxed(container: av.container.InputContainer, streams: list, name: str,
            progress: Callable[[], float]) -> Iterator[av.Packet]:
    """``container.demux(*streams)``, where the demuxer failing raises one MediaError that says how far it
    got (``progress()``: seconds of media decoded so far)."""
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.error.FFmpegError, OSError) as e:
            raise MediaError(f"{name}: reading failed after {max(progress(), 0.0):.2f} s, the file may be truncated "
                             f"or the connection lost ({_reason(e, str(container.name))})") \
                from without_secrets(e, str(container.name))
        yield packet


def check_complete(container: av.container.InputContainer, end: float) -> None:
    """Raise MediaError if the data ended well before the duration the header declares (a truncated file)."""
    completeness_check(container)(end)


def completeness_check(container: av.container.InputContainer) -> Callable[[float], None]:
    """:func:`check_complete` for ``container`` as a function of where the data ended, which reads only
    what it needs of the header now (so it can run after the container is closed)."""
    name, declared, start = redact(container.name), media_duration(container), media_start(container)

    def check(end: float) -> None:
        # Containers disagree on whether the duration counts from pts 0 or from the first pts: accept either.
        if declared is not None and end + start < declared - max(1.0, 0.05 * declared):
            raise MediaError(f"{name}: truncated: the header says {declared:.2f} s but the media "
                             f"ends at {max(end, 0.0):.2f} s")

    return check
