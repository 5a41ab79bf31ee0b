"""One connection of a live source, read on its own thread (:class:`Reader`): it opens the URL, decodes it into
a bounded queue of :mod:`~avfuse.stream.media.items` and says how it went (:class:`Opened`, :class:`Ended`,
:class:`Failed`). What to do about a stall, a drop or an end is the consumer's:
:class:`~avfuse.stream.media.live.LiveSource`."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import cast

import av

from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.items import Item
from avfuse.stream.media.redact import redact, scrub

log = logging.getLogger(__name__)
POLL_S = 0.1  # how often a reader looks at its cancel event, and the consumer at its stop event and watchdog


@dataclass(frozen=True, slots=True)
class Opened:
    """The reader's connection is open: which streams it has, and the duration (a looped file's)."""

    has_video: bool
    has_audio: bool
    duration: float | None


@dataclass(frozen=True, slots=True)
class Ended:
    """The media ended (a stream that stopped, or a looped file's pass)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The reader failed; the consumer decides what that means."""

    error: BaseException


class Timed:
    """Forwards to a PyAV container, giving untimed leading video packets a timestamp (an RTSP stream
    sends its first frame before the RTCP sync that times it: pts None) and showing its name redacted."""

    def __init__(self, container, tap=None):
        self._container = container
        self._tap = tap  # sees every packet demuxed (avfuse.stream.run.event_clips): a PacketRing's push

    def __getattr__(self, name: str):
        return getattr(self._container, name)

    @property
    def name(self) -> str:
        """The URL as it may be shown: the decoder quotes it in its logs and errors."""
        return redact(self._container.name)

    def demux(self, *streams):
        timed = False
        for packet in self._container.demux(*streams):
            if not timed and packet.stream.type == "video":
                if packet.pts is None and packet.dts is None:
                    packet.pts = packet.stream.start_time or 0
                elif packet.pts is not None:
                    timed = True
            if self._tap is not None:
                self._tap(packet)
            yield packet


class Reader(threading.Thread):
    """Opens one connection and decodes it into a bounded queue until cancelled or the media ends."""

    def __init__(self, url: str, *, options: dict[str, str], timeouts: tuple[float, float],
                 decode: DecodeConfig, segment: SegmentConfig, size: int, packets=None, offset: float = 0.0):
        super().__init__(daemon=True, name=f"live-reader {redact(url)}")
        self.url, self.options, self.timeouts, self.decode, self.segment = url, options, timeouts, decode, segment
        self.packets, self.offset = packets, offset  # a PacketRing to copy packets into; media time of pts t0
        self.items: queue.Queue = queue.Queue(maxsize=size)
        self.cancel = threading.Event()

    def _put(self, item: Item | Opened | Ended | Failed) -> bool:
        while not self.cancel.is_set():
            try:
                self.items.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        from avfuse.stream.media.decode import DecodeStats, decode_items, media_start, media_streams, open_container

        container = None
        try:
            container = open_container(self.url, options=self.options, timeout=self.timeouts)
            duration = container.duration / 1_000_000 if container.duration else None
            video, audio = media_streams(container)  # the streams decode_items reads: cover art is not video
            if not self._put(Opened(video is not None, audio is not None, duration)):
                return
            tap = None
            if self.packets is not None:
                self.packets.open([s for s in (video, audio) if s is not None], t0=media_start(container),
                                  offset=self.offset)
                tap = self.packets.push
            timed = cast("av.container.InputContainer", Timed(container, tap))  # forwards every attribute
            for item in decode_items(timed, self.decode, DecodeStats(), self.segment, ticks=True):
                if not self._put(item):
                    return
            self._put(Ended())
        except BaseException as e:  # handed to the consumer, which decides; never lost here
            self._put(Failed(e))
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as e:  # closing a broken connection may fail too; nothing to do
                    log.debug("%s: close failed: %s", redact(self.url), scrub(str(e), self.url))
