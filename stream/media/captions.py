"""Captions: sidecar ``.srt`` / ``.vtt`` / ``.ass`` files beside a video (same stem) and embedded
subtitle streams (subrip, ass, mov_text, webvtt), parsed by pysubs2 and FFmpeg, never by hand.

Times are seconds of media time relative to the file's first timestamp, like segment times.
"""

from __future__ import annotations

import bisect
import codecs
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import av
import pysubs2

from avfuse.stream.errors import CaptionError
from avfuse.stream.media.decode import media_start

log = logging.getLogger(__name__)

SIDECAR_SUFFIXES = (".srt", ".vtt", ".ass", ".ssa")
TEXT_CODECS = ("subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")  # mov_text keeps <b>-style tags as literal text
_SPACE = re.compile(r"\s+")
# A file without a BOM that is not UTF-8 is read as Windows-1252 (what most players assume), or as
# Latin-1 where it has a byte Windows-1252 leaves undefined: every byte sequence decodes as Latin-1.
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16: FF FE 00 00
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
UNTIMED_CAPTION_S = 2.0  # how long an embedded caption whose packet has no duration stays on screen

Event = tuple[float, float, str]  # start s, end s (half-open), plain text


def plain_text(ass_text: str) -> str:
    """ASS dialogue text without override tags ({\\b1}), line breaks (\\N) or HTML-style tags, one line."""
    text = pysubs2.SSAEvent(text=ass_text).plaintext
    return _SPACE.sub(" ", _HTML_TAG.sub("", text)).strip()


@dataclass(frozen=True)
class Captions:
    """Caption events (start, end, text), sorted by start; ``end`` is exclusive."""

    events: tuple[Event, ...]
    _starts: list[float] = field(init=False, repr=False, compare=False)
    _max_len: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        events = tuple(sorted((float(s), float(e), t) for s, e, t in self.events if t and e > s))
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "_starts", [s for s, _, _ in events])
        object.__setattr__(self, "_max_len", max((e - s for s, e, _ in events), default=0.0))

    def text_between(self, start: float, end: float) -> str:
        """The text of events overlapping [start, end), in order, joined by " "."""
        lo = bisect.bisect_left(self._starts, start - self._max_len)
        hi = bisect.bisect_left(self._starts, end)
        texts: list[str] = []
        for s, e, text in self.events[lo:hi]:
            if e > start and s < end and (not texts or texts[-1] != text):
                texts.append(text)
        return " ".join(texts)

    def __len__(self) -> int:
        return len(self.events)


def decode_text(data: bytes) -> str:
    """Caption file bytes as text: by their BOM (UTF-8, UTF-16, UTF-32), else UTF-8, else the
    FALLBACK_ENCODINGS. Raises UnicodeDecodeError only for bytes that contradict their BOM."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding)
    for encoding in ("utf-8", *FALLBACK_ENCODINGS[:-1]):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode(FALLBACK_ENCODINGS[-1])


def read_captions(path: str | os.PathLike) -> Captions:
    """Parse a caption file (.srt, .vtt, .ass, .ssa) with pysubs2, in the encoding :func:`decode_text`
    finds; an empty (or blank) file has no events. Raises CaptionError naming the file and the cause."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise CaptionError(f"{path}: caption file not found") from e
    except OSError as e:
        raise CaptionError(f"{path}: caption file cannot be read ({e.strerror or e})") from e
    try:
        text = decode_text(data)
    except UnicodeDecodeError as e:
        raise CaptionError(f"{path}: not a readable caption file ({e})") from e
    if "\x00" in text:
        raise CaptionError(f"{path}: not a readable caption file (binary data, not text)")
    if not text.strip():
        return Captions(())
    try:
        subs = pysubs2.SSAFile.from_string(text)
    except (pysubs2.exceptions.Pysubs2Error, ValueError, LookupError) as e:
        raise CaptionError(f"{path}: not a readable caption file ({e})") from e
    events = [(ev.start / 1000, ev.end / 1000, plain_text(ev.text)) for ev in subs if not ev.is_comment]
    log.debug("%s: %d caption events", path, len(events))
    return Captions(tuple(events))


def load_captions(path: str | os.PathLike) -> Captions:
    """:func:`read_captions`, except that a file that exists but cannot be read, decoded or parsed gives
    a warning and no captions: captions never fail their video. Raises CaptionError if there is no file."""
    try:
        return read_captions(path)
    except CaptionError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            raise
        log.warning("%s; used as no captions", e)
        return Captions(())


def sidecar_for(media_path: str | os.PathLike) -> Path | None:
    """The caption file beside a video with the same stem (video.mp4 -> video.srt / .vtt / .ass), if any.
    A candidate that is not a regular file (a directory, a broken link) is skipped with a warning."""
    path = Path(media_path)
    for suffix in SIDECAR_SUFFIXES:
        for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
            if candidate == path:
                continue
            if candidate.is_file():
                return candidate
            if os.path.lexists(candidate):
                log.warning("%s: not a readable caption file (not a regular file); ignored", candidate)
    return None


def embedded_captions(container: av.container.InputContainer) -> Captions | None:
    """Read the first text subtitle stream of ``container`` (None if it has none).

    This demuxes the container to its end: use a container opened for this purpose, not the one
    being decoded."""
    streams = [s for s in container.streams.subtitles if s.codec_context is not None
               and s.codec_context.name in TEXT_CODECS]
    if not streams:
        return None
    stream, t0 = streams[0], media_start(container)
    events: list[Event] = []
    try:
        for packet in container.demux(stream):
            if not packet.size or packet.pts is None:
                continue
            start = float(packet.pts * packet.time_base) - t0
            end = start + float((packet.duration or 0) * packet.time_base)
            for sub in packet.decode():
                for text in _texts(sub):
                    events.append((start, end if end > start else start + UNTIMED_CAPTION_S, text))
    except av.error.FFmpegError as e:
        raise CaptionError(f"{container.name}: subtitle stream #{stream.index} cannot be read ({e})") from e
    log.debug("%s: %d embedded caption events (%s)", container.name, len(events), stream.codec_context.name)
    return Captions(tuple(events))


def _texts(sub) -> list[str]:
    """Plain texts of one decoded subtitle (PyAV yields AssSubtitle items, or sets of them)."""
    items = sub if isinstance(sub, (list, tuple)) or hasattr(sub, "rects") else [sub]
    out = []
    for item in items:
        dialogue = getattr(item, "dialogue", None)
        raw = dialogue.decode("utf-8", "replace") if isinstance(dialogue, bytes) else str(dialogue or "")
        text = plain_text(raw)
        if text:
            out.append(text)
    return out
