"""Expand the SOURCE arguments of ``avfuse run`` into a list of sources: files, folders (recursive,
by extension), globs, URLs, and ``-`` for a list of sources on stdin, one per line.

A source that cannot be expanded (missing path, glob that matches nothing, folder without media) is
kept as a ``Source`` with an ``error``, so the run records it and goes on with the others.
"""

from __future__ import annotations

import glob
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from avfuse.stream.media.decode import is_url
from avfuse.stream.media.live import is_live
from avfuse.stream.media.redact import redact

MEDIA_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv",
    ".wmv", ".ogv", ".3gp", ".mxf", ".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus",
})


@dataclass(frozen=True, kw_only=True)
class Source:
    name: str  # what records call it: the path as given, or the URL
    error: str | None = None  # why it could not be expanded

    @property
    def live(self) -> bool:
        """Never ends on its own and may drop (RTSP, RTMP, SRT, UDP, HLS...):
        :func:`~avfuse.stream.media.live.is_live`."""
        return is_live(self.name)

    @property
    def shown(self) -> str:
        """The name as records and logs show it: credentials in URLs replaced by ***."""
        return redact(self.name)

    @property
    def path(self) -> Path | None:
        return None if is_url(self.name) else Path(self.name)


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _folder(path: Path, extensions: frozenset[str]) -> list[Source]:
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not found:
        return [Source(name=str(path), error=f"folder has no media files ({', '.join(sorted(extensions))})")]
    return [Source(name=str(p)) for p in found]


def expand(args: Iterable[str], *, stdin: TextIO | None = None,
           extensions: frozenset[str] = MEDIA_EXTENSIONS) -> list[Source]:
    """Sources in the order given, folders sorted, each at most once."""
    out: list[Source] = []
    for arg in args:
        if arg == "-":
            lines = (line.strip() for line in (stdin or sys.stdin))
            out += expand([line for line in lines if line and not line.startswith("#")], extensions=extensions)
        elif is_url(arg):
            out.append(Source(name=arg))
        elif Path(arg).is_dir():
            out += _folder(Path(arg), extensions)
        elif Path(arg).exists():
            out.append(Source(name=arg))
        elif _is_glob(arg):
            hits = sorted(glob.glob(arg, recursive=True))
            if not hits:
                out.append(Source(name=arg, error="glob matches no files"))
            for hit in hits:
                out += _folder(Path(hit), extensions) if Path(hit).is_dir() else [Source(name=hit)]
        else:
            out.append(Source(name=arg, error="no such file or folder"))
    seen: set[str] = set()
    unique = []
    for s in out:
        if s.name not in seen:
            seen.add(s.name)
            unique.append(s)
    return unique


def _base(source: Source) -> str:
    """The file-name part of a source: a path's base name; a URL's last path part, or its host and port
    when it has no path. Made from the redacted name, so no credential or token reaches a file name."""
    text = source.shown
    if is_url(source.name):
        _, _, text = text.partition("://")
        text = re.split(r"[?#]", text.rsplit("@", 1)[-1], maxsplit=1)[0]
        host, _, path = text.partition("/")
        text = path.rstrip("/").rsplit("/", 1)[-1].split(";")[0] or host
    else:
        text = text.rstrip("/").rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text) or "source"


MAX_STEM_BYTES = 200  # the longest output name is STEM.jsonl.partial; file systems allow 255 bytes
_HASH_LEN = 8


def _digest(text: str) -> str:
    """A short stable hash of ``text``; a file name that is not UTF-8 hashes by its bytes."""
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:_HASH_LEN]


def _shorten(stem: str, shown: str) -> str:
    """``stem`` cut to fit MAX_STEM_BYTES, with a hash of the whole name so cut names stay distinct."""
    if len(stem.encode("utf-8", "surrogateescape")) <= MAX_STEM_BYTES:
        return stem
    keep = MAX_STEM_BYTES - _HASH_LEN - 1
    while len(stem[:keep].encode("utf-8", "surrogateescape")) > MAX_STEM_BYTES - _HASH_LEN - 1:
        keep -= 1
    return f"{stem[:keep]}-{_digest(shown)}"


def output_stems(sources: Iterable[Source], *, claims: Mapping[str, str] | None = None) -> dict[str, str]:
    """A file-name stem per source for its output files: the base name, plus a short hash of the shown
    name where two sources share a base name (and a count where even that is shared: two URLs that
    differ only in their credentials). A base name ``claims`` (stem -> source shown, from the output
    folder's markers) gives to one of those sources stays that source's, so adding a same-named file
    elsewhere does not rename finished outputs. Names over MAX_STEM_BYTES are cut and hashed. Stable for
    the same source list and folder (``--resume`` relies on it)."""
    sources = list(sources)
    claims = claims or {}
    counts = Counter(_shorten(_base(s), s.shown) for s in sources)
    stems: dict[str, str] = {}
    taken: Counter[str] = Counter()
    for s in sources:
        stem = _shorten(_base(s), s.shown)
        if counts[stem] > 1 and claims.get(stem) != s.shown:
            stem = _shorten(f"{_base(s)}-{_digest(s.shown)}", s.shown)
        taken[stem] += 1
        stems[s.name] = stem if taken[stem] == 1 else f"{stem}-{taken[stem]}"
    return stems
