"""Live sources that survive drops: RTSP (and other network streams) and files looped as if live.

``LiveSource(url, ...).segments(stop)`` yields :class:`~avfuse.stream.media.segment.Segment` and :class:`Gap` until
``stop`` is set, the attempts run out (:class:`~avfuse.stream.errors.SourceError`), or the credentials are
refused. Each connection is read on its own thread behind a bounded queue; the consumer is the stall
watchdog: when no decoded media arrives for ``read_timeout`` seconds (``open_timeout`` while opening) it
abandons the connection and reconnects, so no wait here is longer than its timeout even if FFmpeg's own
timeouts (PyAV ``timeout=(open, read)``, RTSP ``timeout`` in microseconds) do not fire.

After a reconnect the segment index keeps counting, a :class:`Gap` says which wall-clock interval was
lost, and media time goes on past the last segment by exactly the gap's length (so it stays monotonic
and in step with the wall clock). ``Segment.wallclock`` is when the window closed: the wall-clock time
the stream delivered the end of that window (see ``_CloseClock``): latency is measured from there.

What counts as live (:func:`is_live`): URLs whose scheme is one of :data:`LIVE_SCHEMES`, HTTP(S) URLs of
HLS playlists (``.m3u8``) without ``#EXT-X-ENDLIST`` (:mod:`avfuse.stream.media.hls`), and HTTP(S) URLs that
answer with MJPEG (:mod:`avfuse.stream.media.mjpeg`). Other HTTP(S) URLs, VOD playlists among them, are read
as finite files.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from avfuse.stream.errors import AvfuseError, ConfigError, SourceError
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.hls import is_playlist
from avfuse.stream.media.items import AudioItem, Item
from avfuse.stream.media.live_reader import POLL_S, Ended, Failed, Opened, Reader
from avfuse.stream.media.mjpeg import OPTIONS as MJPEG_OPTIONS
from avfuse.stream.media.mjpeg import is_http
from avfuse.stream.media.reconnect import Backoff
from avfuse.stream.media.redact import redact, scrub
from avfuse.stream.media.segment import Segment
from avfuse.stream.media.transport import MODES as TRANSPORTS
from avfuse.stream.media.transport import TransportChoice, is_refusal
from avfuse.stream.records import GapRecord, as_dict

if TYPE_CHECKING:

    from avfuse.stream.media.segmenter import Segmenter

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp")
MAX_TIMEOUT_S = 600.0  # the longest open or read timeout


def is_live(source: str | Path) -> bool:
    """True for sources that never end on their own and may drop: see the module docstring."""
    text = str(source)
    if "://" not in text:
        return False
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in LIVE_SCHEMES:
        return True
    from avfuse.stream.media.hls import is_playlist, is_vod
    from avfuse.stream.media.mjpeg import is_mjpeg

    if is_playlist(text):
        return not is_vod(text)  # a VOD playlist (#EXT-X-ENDLIST) is a finite file
    return is_mjpeg(text)  # an IP camera's MJPEG over HTTP


@dataclass(frozen=True, kw_only=True)
class ResumePoint:
    """Where a restarted live run goes on: the next segment index, the media time and wall clock reached."""

    next_index: int
    media_end: float
    wallclock: float


@dataclass(frozen=True, kw_only=True)
class Gap:
    """A wall-clock interval of a live source that was lost (connection dropped or stalled)."""

    source: str  # redacted
    start_wallclock: float
    end_wallclock: float
    reason: str

    @property
    def duration(self) -> float:
        return self.end_wallclock - self.start_wallclock

    def as_record(self) -> dict:
        return as_dict(GapRecord(source=self.source, start_wallclock=self.start_wallclock,
                                 end_wallclock=self.end_wallclock, reason=self.reason))


@dataclass
class LiveStats:
    """Counters a run reports for a live source."""

    connects: int = 0
    transport: str = ""  # the RTSP transport of the latest connection that delivered media
    transport_switches: int = 0  # times --live-transport auto moved to the other transport
    reconnects: int = 0
    stalls: int = 0
    gaps: int = 0
    lost_s: float = 0.0
    segments: int = 0
    loops: int = 0


class _Fatal(Exception):
    """An error that retrying cannot fix (credentials refused, file missing)."""


class _Lost(Exception):
    """The connection dropped, ended or stalled; ``reason`` says which."""

    def __init__(self, reason: str, *, media: bool, transport_issue: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.media = media  # whether this connection delivered a segment before it was lost
        self.transport_issue = transport_issue  # refused, or no media in time: the other transport may work


def _clean(e: BaseException) -> BaseException:
    """A copy of a PyAV error without the URL it quotes (it would carry the password into tracebacks)."""
    import av

    if isinstance(e, av.error.FFmpegError):
        try:  # PyAV's stub wants an int and a str; its errors take the None they may carry
            return type(e)(e.errno, e.strerror)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return RuntimeError(e.strerror)
    return e


class _CloseClock:
    """Wall-clock time at which a window of a connection closed.

    Live: the stream's media time is tied to the wall clock by the earliest arrival seen,
    ``anchor = min(arrival - media time)``; a window ending at media time ``e`` closed at ``anchor + e``.
    So a reader that falls behind the stream shows up as latency, instead of being hidden by stamping
    segments when they come out. A looped file: the paced schedule, ``start + e / speed``.
    """

    def __init__(self, speed: float | None):
        self.speed = speed
        self.anchor = math.inf
        self.last = -math.inf

    def arrived(self, media_t: float) -> None:
        now = time.time()
        if self.speed is None:
            self.anchor = min(self.anchor, now - media_t)
        elif self.anchor == math.inf:
            self.anchor = now - media_t / self.speed

    def close(self, media_end: float) -> float:
        """Close time of a window ending at ``media_end``: never in the future, never before an earlier
        window's (the anchor only settles as the first, buffered media comes in)."""
        now = time.time()
        close = now if self.anchor == math.inf else min(now, self.anchor + media_end / (self.speed or 1.0))
        self.last = max(self.last, close)
        return self.last


@dataclass(frozen=True, slots=True)
class _FirstMedia:
    """A connection's first window closed: media time 0 of the connection is at ``wallclock``."""

    wallclock: float


@dataclass(frozen=True, kw_only=True)
class LiveConfig:
    """How a run treats its live sources, and its files when ``loop`` plays them as if live (``avfuse run``'s
    ``--live-transport``, ``--timeout``, ``--live-attempts``, ``--live-backoff``, ``--loop``)."""

    transport: str = "auto"  # RTSP over tcp, udp, or auto: tcp, else udp (avfuse.stream.media.transport)
    timeout_s: float = 5.0  # a live source that stalls this long is reconnected; a finite URL fails
    attempts: int = 10  # connection attempts in a row before a live source fails; 0: forever
    backoff: Backoff = field(default_factory=Backoff)  # delays between those attempts
    loop: bool = False  # play files as if live: paced at real speed, over and over, until stopped

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"live transport must be one of {TRANSPORTS}, got {self.transport!r}")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise ConfigError(f"live timeout must be in (0, {MAX_TIMEOUT_S:g}] s, got {self.timeout_s}")
        if self.attempts < 0:
            raise ConfigError(f"live attempts must be >= 0 (0: forever), got {self.attempts}")

    def is_live(self, live: bool) -> bool:
        """Whether a source (``live``: a stream by its URL) is read as live in this run."""
        return live or self.loop

    def source(self, url: str, *, decode: DecodeConfig, segment: SegmentConfig, loop_file: bool) -> LiveSource:
        """The LiveSource of ``url`` with these settings."""
        return LiveSource(url, decode=decode, segment=segment, transport=self.transport, open_timeout=self.timeout_s,
                          read_timeout=self.timeout_s, backoff=self.backoff, max_attempts=self.attempts or None,
                          loop_file=loop_file)


class LiveSource:
    """A live stream (or, with ``loop_file``, a file played at real speed over and over) as Segments.

    ``backoff`` spaces the reconnect attempts; ``max_attempts`` is how many connection attempts in a
    row may fail before :class:`SourceError` (``None``: retry forever). ``speed`` > 1 plays a looped
    file faster than real time (for tests and demos).
    """

    def __init__(self, url: str | Path, *, decode: DecodeConfig, segment: SegmentConfig, transport: str = "auto",
                 open_timeout: float = 5.0, read_timeout: float = 5.0, backoff: Backoff | None = None,
                 max_attempts: int | None = 10, loop_file: bool = False, speed: float = 1.0,
                 captions: str | Path | None = None):
        self.choice = TransportChoice(transport)  # raises ConfigError for an unknown one
        if not (0 < open_timeout <= MAX_TIMEOUT_S and 0 < read_timeout <= MAX_TIMEOUT_S):
            raise ConfigError(f"timeouts must be in (0, 600] s, got open={open_timeout!r} read={read_timeout!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1 or None (forever), got {max_attempts!r}")
        if not 0 < speed <= 1000:
            raise ConfigError(f"speed must be in (0, 1000], got {speed!r}")
        self.url = str(url)
        self.name = redact(self.url)
        if loop_file and is_live(self.url):
            raise ConfigError(f"{self.name}: --loop plays a file as if live; this source is already live")
        if not loop_file and not is_live(self.url):
            raise ConfigError(f"{self.name}: not a live source (schemes: {', '.join(LIVE_SCHEMES)}); "
                              "use loop_file=True to play a file as if live")
        self.decode, self.segment, self.transport = decode, segment, transport  # the mode: auto, tcp or udp
        self.open_timeout, self.read_timeout = float(open_timeout), float(read_timeout)
        self.backoff = backoff or Backoff()
        self.max_attempts, self.loop_file, self.speed = max_attempts, loop_file, float(speed)
        self.captions = captions
        self.resume: ResumePoint | None = None  # a previous run's last segment: go on from there
        self.packets = None  # avfuse.stream.run.event_clips.SourceClips: every packet read is copied into its ring
        self._captions: tuple | None = None  # (the parsed captions or None) once read
        self._rtsp = urlsplit(self.url).scheme.lower() in ("rtsp", "rtsps")
        self.stats = LiveStats()
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"LiveSource({self.name!r}, loop_file={self.loop_file})"

    def _reader_decode(self) -> DecodeConfig:
        """Live streams decode on one thread each unless told otherwise: every FFmpeg frame thread
        holds back one more frame (40 ms at 25 fps; auto picks one per core), and many streams use
        the cores through their own reader threads anyway."""
        if self.loop_file or self.decode.threads:
            return self.decode
        return dataclasses.replace(self.decode, threads=1)

    def options(self) -> dict[str, str]:
        """FFmpeg options for the connection (timeouts in microseconds, as FFmpeg wants them)."""
        if self.loop_file:
            return {}
        micro = str(int(self.read_timeout * 1_000_000))
        if self._rtsp:
            return {"rtsp_transport": self.choice.current, "timeout": micro}
        if is_http(self.url) and not is_playlist(self.url):  # MJPEG: frames stamped as they arrive
            return {"rw_timeout": micro, **MJPEG_OPTIONS}
        return {"rw_timeout": micro}

    # ---- the consumer: reconnects, gaps, index and media time across connections ----

    def segments(self, stop: threading.Event) -> Iterator[Segment | Gap]:
        """Segments (and Gaps) until ``stop`` is set; raises SourceError when it cannot (re)connect."""
        index, media_end = 0, 0.0
        last_close: float | None = None  # wall clock of the last segment yielded (or of the first media)
        gap_from: float | None = None  # set while a connection that worked is lost and not yet back
        failures, reason, lost_reason, cause = 0, "", "", None
        if self.resume is not None:  # a restarted run: the index goes on, and the time it was down is a gap
            index, media_end, last_close = self.resume.next_index, self.resume.media_end, self.resume.wallclock
            gap_from, lost_reason = last_close, "avfuse was not running"
        while not stop.is_set():
            at_once, tried = False, self.choice.current
            connection = self._connection(stop)
            offset = 0.0
            try:
                for value in connection:
                    if isinstance(value, _FirstMedia):
                        self.stats.connects += 1
                        failures = 0
                        self.choice.worked()
                        self.stats.transport = self.choice.current if self._rtsp else ""
                        if gap_from is not None:
                            gap = self._gap(gap_from, value.wallclock, lost_reason)
                            log.warning("%s: reconnected; lost %.2f s (%s)", self.name, gap.duration, lost_reason)
                            self.stats.reconnects += 1
                            offset, gap_from = media_end + gap.duration, None
                            yield gap
                        elif last_close is None:
                            last_close = value.wallclock
                        if self.packets is not None:
                            self.packets.ring.set_shift(offset)
                        continue
                    seg = dataclasses.replace(value, index=index, start=round(value.start + offset, 6),
                                              end=round(value.end + offset, 6))
                    index, media_end, last_close = index + 1, seg.end, seg.wallclock
                    self.stats.segments += 1
                    yield seg
                break  # stop was set
            except _Fatal as e:
                raise SourceError(f"{self.name}: {e}") from e.__cause__
            except _Lost as e:
                reason, cause = e.reason, e.__cause__
                if e.media:  # a connection that worked: the gap starts at its last window
                    gap_from, lost_reason = last_close, reason
                else:
                    failures += 1
                    tried = self.choice.current
                    at_once = self._rtsp and self.choice.failed(transport_issue=e.transport_issue)
                    self.stats.transport_switches = self.choice.switches
            finally:
                connection.close()
            if self.max_attempts is not None and failures >= self.max_attempts:
                if gap_from is not None:
                    yield self._gap(gap_from, time.time(), f"{lost_reason}; gave up: {reason}")
                raise SourceError(f"{self.name}: could not connect after {failures} attempt"
                                  f"{'s' if failures > 1 else ''}: {reason}") from cause
            if at_once:
                log.warning("%s: %s over %s; reconnect attempt %d%s at once over %s", self.name, reason,
                            tried.upper(), failures + 1, "" if self.max_attempts is None else f"/{self.max_attempts}",
                            self.choice.current.upper())
                continue
            delay = self.backoff.delay(max(1, failures), self._rng)
            log.warning("%s: %s; reconnect attempt %d%s in %.2f s", self.name, reason, failures + 1,
                        "" if self.max_attempts is None else f"/{self.max_attempts}", delay)
            if stop.wait(delay):
                break
        if gap_from is not None:
            yield self._gap(gap_from, time.time(), f"{lost_reason}; stopped before the source came back")

    def _gap(self, start: float, end: float, reason: str) -> Gap:
        gap = Gap(source=self.name, start_wallclock=start, end_wallclock=max(start, end), reason=reason)
        self.stats.gaps += 1
        self.stats.lost_s += gap.duration
        return gap

    # ---- one connection: reader thread, stall watchdog, segmenter, pacing of a looped file ----

    def _connection(self, stop: threading.Event) -> Generator[_FirstMedia | Segment, None, None]:
        """Yields ("first", wall clock of its media time 0) before its first segment, then ("segment",
        Segment) with media time counted from this connection's start; raises _Lost or _Fatal. A looped file is one
        connection: each pass gets a fresh Segmenter (windows and captions aligned with the file) and
        its segments are shifted past the previous pass."""
        pass_offset = 0.0  # media time at which the current pass of a looped file starts
        paced_from = None  # monotonic clock at media time 0, for pacing a looped file
        clock = _CloseClock(self.speed if self.loop_file else None)
        first_sent = False
        while True:
            reader = Reader(self.url, options=self.options(), timeouts=(self.open_timeout, self.read_timeout),
                             decode=self._reader_decode(), segment=self.segment,
                             size=max(64, self.decode.queue_size),
                             packets=self.packets.ring if self.packets is not None else None, offset=pass_offset)
            reader.start()
            try:
                segmenter = duration = None
                data_end = seg_end = 0.0  # end of the media read and of the windows emitted in this pass
                waiting, deadline = "open", time.monotonic() + self.open_timeout
                while True:
                    if stop.is_set():
                        return
                    try:
                        got = reader.items.get(timeout=POLL_S)
                    except queue.Empty:
                        if time.monotonic() > deadline:
                            self.stats.stalls += 1
                            what = (f"open did not finish within {self.open_timeout:g} s" if waiting == "open"
                                    else f"no media for {self.read_timeout:g} s")
                            raise _Lost(f"stalled: {what}", media=first_sent, transport_issue=True) from None
                        continue
                    if isinstance(got, Opened):
                        duration = got.duration
                        segmenter = self._segmenter(got.has_video, got.has_audio)
                        waiting, deadline = "media", time.monotonic() + max(self.open_timeout, self.read_timeout)
                        continue
                    if isinstance(got, Failed):
                        raise self._failure(got.error, first_sent)
                    if segmenter is None:  # the reader puts Opened first
                        raise RuntimeError(f"{self.name}: the reader sent {got!r} before opening")
                    if isinstance(got, Ended):
                        if not self.loop_file:
                            raise _Lost("the stream ended", media=first_sent)
                        if not data_end:
                            raise _Fatal("the file has no decodable media to loop")
                        for seg in segmenter.finish():  # windows real media covers enough of (min_coverage)
                            seg_end = max(seg_end, seg.end)
                            yield self._shift(seg, pass_offset, clock)
                        pass_offset += seg_end or max(duration or 0.0, data_end)
                        self.stats.loops += 1
                        break  # open the file again for the next pass
                    item: Item = got  # a frame, audio, a tick or a timestamp jump
                    t = item.t
                    item_end = t + (item.samples.size / self.decode.sample_rate if isinstance(item, AudioItem)
                                    else 0.0)
                    data_end = max(data_end, item_end + 1e-6)
                    # A looped file is paced by its video (audio, when there is no video): the file interleaves
                    # audio up to a fraction of a second ahead of video, and waiting on that audio would hold
                    # back the video frames stored after it.
                    if self.loop_file and (not isinstance(item, AudioItem) or not segmenter.has_video):
                        if paced_from is None:  # the first paced item: its media time is now
                            paced_from = time.monotonic() - (pass_offset + t) / self.speed
                        if stop.wait(max(0.0, paced_from + (pass_offset + t) / self.speed - time.monotonic())):
                            return
                    waiting, deadline = "media", time.monotonic() + self.read_timeout
                    # live: an item has arrived once its end was captured; a looped file is paced by item start
                    if not self.loop_file or paced_from is not None:
                        clock.arrived(pass_offset + (t if self.loop_file else item_end))
                    for seg in segmenter.push(item):
                        if not first_sent:  # media time 0 of this connection, on the wall clock
                            first_sent = True
                            yield _FirstMedia(clock.close(0.0))
                        seg_end = max(seg_end, seg.end)
                        yield self._shift(seg, pass_offset, clock)
            finally:
                reader.cancel.set()
                reader.join(timeout=POLL_S * 5)
                if reader.is_alive():  # blocked in FFmpeg; its own timeout ends it, we do not wait
                    (log.debug if stop.is_set() else log.warning)("%s: reader did not stop in time; left to "
                                                                  "time out on its own", self.name)

    def _segmenter(self, has_video: bool, has_audio: bool) -> Segmenter:
        from avfuse.stream.media.captions import load_captions, sidecar_for
        from avfuse.stream.media.segmenter import Segmenter

        if not (has_video or has_audio):
            raise _Fatal("no video or audio stream")
        if self._captions is None:  # parsed once: a looped file's passes share them
            path = self.captions or (sidecar_for(self.url) if self.loop_file else None)
            try:
                self._captions = (load_captions(path) if path else None,)
            except AvfuseError as e:
                raise _Fatal(str(e)) from e
        captions = self._captions[0]
        return Segmenter(source=self.name, decode=self.decode, segment=self.segment, captions=captions,
                         has_video=has_video, has_audio=has_audio)

    @staticmethod
    def _shift(seg: Segment, offset: float, clock: _CloseClock) -> Segment:
        """The segment moved ``offset`` seconds later in media time, stamped with its window's close time."""
        start, end = round(seg.start + offset, 6), round(seg.end + offset, 6)
        return dataclasses.replace(seg, start=start, end=end, wallclock=clock.close(end))

    def _failure(self, e: BaseException, media: bool) -> Exception:
        """The reader's error as _Fatal (retrying cannot help) or _Lost, with the URL's secrets removed."""
        import av

        inner = e.__cause__ if isinstance(e, AvfuseError) and e.__cause__ is not None else e
        if isinstance(inner, av.error.FFmpegError) and inner is e:
            text = inner.strerror or type(inner).__name__
        else:
            text = scrub(str(e), self.url).removeprefix(f"{self.name}: ")
        err: Exception
        if isinstance(inner, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
            err = _Fatal(f"credentials refused ({inner.strerror or text})")
        elif self.loop_file:  # a file does not heal by asking again
            err = _Fatal(text)
        else:
            err = _Lost(text, media=media, transport_issue=is_refusal(inner))
        err.__cause__ = _clean(inner)
        return err
