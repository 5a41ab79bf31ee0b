"""``avfuse probe FILE``: a source's streams, duration and how many segments it will give.

The segment count scans packet timestamps (demuxing only, no decoding), so it is exact for files
and quick even for long ones; for URLs it is estimated from the declared duration.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import av

from avfuse.stream.errors import CaptionError
from avfuse.stream.media.captions import embedded_captions, load_captions, sidecar_for
from avfuse.stream.media.config import SegmentConfig
from avfuse.stream.media.decode import is_picture, is_url, media_duration, media_start, media_streams, open_container
from avfuse.stream.media.netsource import DEFAULT_TIMEOUT_S, network_options
from avfuse.stream.media.redact import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StreamInfo:
    index: int
    type: str
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    layout: str | None = None
    language: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    source: str  # as shown: a URL's credentials replaced by *** (avfuse.stream.media.redact)
    format: str
    duration: float | None  # seconds of media, from the first timestamp to the end of the data
    start: float  # the first timestamp (segments count from here)
    streams: list[StreamInfo] = field(default_factory=list)
    sidecar: str | None = None
    caption_events: int = 0
    segments: int = 0
    exact: bool = True  # False when the segment count is estimated from the declared duration


def _stream_info(s) -> StreamInfo:
    ctx = s.codec_context
    codec = ctx.name if ctx is not None else "unknown"
    lang = s.metadata.get("language") if s.metadata else None
    if s.type == "video" and is_picture(s):
        return StreamInfo(index=s.index, type="picture", codec=codec, width=ctx.width, height=ctx.height,
                          language=lang)
    if s.type == "video":
        rate = s.average_rate or s.base_rate
        return StreamInfo(index=s.index, type="video", codec=codec, width=ctx.width, height=ctx.height,
                          fps=round(float(rate), 3) if rate else None, language=lang)
    if s.type == "audio":
        return StreamInfo(index=s.index, type="audio", codec=codec, sample_rate=ctx.sample_rate,
                          channels=ctx.channels, layout=ctx.layout.name, language=lang)
    return StreamInfo(index=s.index, type=s.type, codec=codec, language=lang)


def _data_times(container: av.container.InputContainer, t0: float) -> tuple[float, float] | None:
    """(time of the last frame or last audio sample, end of the data), relative to t0, from packet timestamps."""
    video, audio = media_streams(container)
    streams = [s for s in (video, audio) if s is not None]
    last = end = -math.inf
    for packet in container.demux(*streams):
        if packet.pts is None or not packet.size:
            continue
        t = float(packet.pts * packet.time_base) - t0
        length = float((packet.duration or 0) * packet.time_base)
        if audio is not None and packet.stream is audio:
            sr = audio.codec_context.sample_rate or 1
            last = max(last, t + length - 1 / sr)
        elif video is not None:
            last = max(last, t)
            length = length or (1 / float(video.average_rate) if video.average_rate else 0.0)
        end = max(end, t + length)
    return None if last == -math.inf else (last, end)


def count_windows(media_end: float | None, segment: SegmentConfig) -> int:
    """The windows media ending at ``media_end`` gives (the Segmenter's rule: SegmentConfig.windows)."""
    return segment.windows(media_end)


def probe(source: str, *, segment: SegmentConfig = SegmentConfig(),  # noqa: B008 (frozen)
          options: dict[str, str] | None = None, timeout: float | None = DEFAULT_TIMEOUT_S) -> ProbeResult:
    """``timeout``: seconds any open or read of a URL may wait (None: FFmpeg's defaults, which may be forever)."""
    if timeout is not None and is_url(source):
        options = {**network_options(source, timeout), **(options or {})}
    container = open_container(source, options=options, timeout=timeout)
    try:
        t0 = media_start(container)
        streams = [_stream_info(s) for s in container.streams]
        declared = media_duration(container)
        sidecar = None if is_url(source) else sidecar_for(source)
        events = 0
        try:
            if sidecar is not None:
                events = len(load_captions(sidecar))
            elif container.streams.subtitles and not is_url(source):
                with open_container(source, options=options, timeout=timeout) as second:
                    caps = embedded_captions(second)
                events = len(caps) if caps is not None else 0
        except CaptionError as e:  # the media is still usable; its segments carry no text
            log.warning("%s; counted as no captions", e)
            events = 0
        times = None if is_url(source) else _data_times(container, t0)
        if times is None:  # a URL (or a file without timestamps): estimate from the header
            duration, exact = declared, False
        else:
            (_, duration), exact = times, True
        return ProbeResult(source=redact(source), format=container.format.name, duration=duration, start=t0,
                           streams=streams, sidecar=str(sidecar) if sidecar else None, caption_events=events,
                           segments=count_windows(duration, segment), exact=exact)
    finally:
        container.close()
