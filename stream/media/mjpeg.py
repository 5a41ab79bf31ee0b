"""MJPEG over HTTP, as many IP cameras serve it: one JPEG after another in a ``multipart/x-mixed-replace``
response that never ends. FFmpeg reads it (its ``mpjpeg`` demuxer); what avfuse adds is knowing it is live.

:func:`is_mjpeg` goes by the URL's path where it tells (``.mjpg``/``.mjpeg`` is MJPEG, a media file's
extension such as ``.mp4`` is not), and otherwise asks the server once per URL, with a timeout, reading only
the response's headers (cameras serve MJPEG at ``/video.cgi``, ``/?action=stream`` and the like). The
frames carry no timestamps of their own, so a live MJPEG source stamps each with its arrival time
(:data:`OPTIONS`): media time then follows the camera's real frame rate, whatever it is.
"""

from __future__ import annotations

import functools
import logging
import urllib.request
from urllib.parse import urlsplit

from avfuse.stream.media.netsource import DEFAULT_TIMEOUT_S, http_request
from avfuse.stream.media.redact import redact

log = logging.getLogger(__name__)
MIME = "multipart/x-mixed-replace"
OPTIONS = {"use_wallclock_as_timestamps": "1"}  # FFmpeg: each frame's pts is when it arrived
MJPEG_SUFFIXES = (".mjpg", ".mjpeg")
FILE_SUFFIXES = (".mp4", ".m4v", ".m4a", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".mpg",
                 ".mpeg", ".wmv", ".ogg", ".ogv", ".mp3", ".aac", ".wav", ".flac", ".opus", ".m3u8", ".mpd", ".jpg",
                 ".jpeg", ".png")  # named as a file: not asked


def is_http(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


@functools.lru_cache(maxsize=256)
def is_mjpeg(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when the HTTP(S) server at ``url`` answers with a multipart stream of images."""
    if not is_http(url):
        return False
    path = urlsplit(url).path.lower()
    if path.endswith(MJPEG_SUFFIXES):
        return True
    if path.endswith(FILE_SUFFIXES):
        return False
    try:
        with urllib.request.urlopen(http_request(url), timeout=timeout_s) as r:
            kind = r.headers.get("Content-Type", "")
    except (OSError, ValueError) as e:  # unreachable, refused, slow: read as a file, which reports it
        log.debug("%s: not asked whether it is MJPEG (%s)", redact(url), type(e).__name__)
        return False
    return kind.split(";")[0].strip().lower() == MIME
