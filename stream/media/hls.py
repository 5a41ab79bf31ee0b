"""HLS playlists: a VOD playlist (``#EXT-X-ENDLIST``) is a finite file, any other one is live.

:func:`is_vod` fetches the playlist (and, for a master playlist, its first variant) once per URL, with a
timeout; a playlist that cannot be fetched counts as live, so the live source's reconnects deal with it.
"""

from __future__ import annotations

import base64
import functools
import logging
import urllib.request
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from avfuse.stream.media.netsource import DEFAULT_TIMEOUT_S
from avfuse.stream.media.redact import redact

log = logging.getLogger(__name__)
ENDLIST = "#EXT-X-ENDLIST"
VARIANT = "#EXT-X-STREAM-INF"
MAX_PLAYLIST_BYTES = 4 * 1024 * 1024


def is_playlist(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and parts.path.lower().endswith(".m3u8")


def _fetch(url: str, timeout_s: float) -> str:
    """The playlist's text; credentials in the URL go as HTTP basic auth, never into the request line."""
    parts = urlsplit(url)
    headers = {}
    if parts.username is not None:
        if parts.hostname is None:
            raise ValueError(f"{redact(url)}: the URL names no host")
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as r:
        return r.read(MAX_PLAYLIST_BYTES).decode("utf-8", "replace")


@functools.lru_cache(maxsize=256)
def is_vod(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when the HLS playlist at ``url`` is complete (VOD): it is then read once, as a file."""
    try:
        text = _fetch(url, timeout_s)
        if VARIANT in text and ENDLIST not in text:
            lines = text.splitlines()
            for n, line in enumerate(lines):
                if line.startswith(VARIANT):
                    variant = next((x.strip() for x in lines[n + 1:] if x.strip() and not x.startswith("#")), "")
                    if variant:
                        text = _fetch(urljoin(url, variant), timeout_s)
                    break
    except (OSError, ValueError) as e:  # unreachable or slow: live, and its reconnects will tell
        log.info("%s: playlist not read (%s); treated as live", redact(url), type(e).__name__)
        return False
    return ENDLIST in text
