"""Network sources that never hang: FFmpeg timeouts for a URL, and an iterator that lets go when stopped.

Every URL is opened with PyAV's ``timeout=(open, read)`` (its interrupt callback, which fires even where
a protocol has no timeout of its own) and the protocol's own option: ``timeout`` for RTSP, ``rw_timeout``
for the others (HTTP, HLS, TCP...), both in microseconds as FFmpeg wants them. :func:`until_stopped`
reads a source on a thread of its own, so that a stop (Ctrl-C) is seen at once even while FFmpeg is
blocked in an open or a read; the abandoned thread ends when its timeout fires.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.prefetch import offer
from avfuse.stream.media.redact import redact

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_TIMEOUT_S = 5.0  # --timeout: open and read timeout of every network source, and of probe
_POLL_S = 0.1
_READERS: set[threading.Thread] = set()  # reader threads started by until_stopped


def readers_left() -> int:
    """Reader threads still inside their source (abandoned by a stop, waiting for FFmpeg's timeout). A process
    must not finalize the interpreter under them: FFmpeg would return into freed state (a segfault)."""
    return sum(t.is_alive() for t in _READERS)


def http_request(url: str) -> urllib.request.Request:
    """A GET of ``url`` whose credentials go as HTTP basic auth, never into the request line."""
    parts = urlsplit(url)
    headers = {}
    if parts.username is not None:
        if parts.hostname is None:
            raise ValueError(f"{redact(url)}: the URL names no host")
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    return urllib.request.Request(url, headers=headers)


def network_options(url: str, timeout_s: float) -> dict[str, str]:
    """FFmpeg options that bound every wait of ``url`` by ``timeout_s`` seconds."""
    if not 0 < timeout_s <= 3600:
        raise ConfigError(f"network timeout must be in (0, 3600] s, got {timeout_s!r}")
    micro = str(int(timeout_s * 1_000_000))
    if urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
        return {"timeout": micro}
    return {"rw_timeout": micro}


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def until_stopped(upstream: Iterable[T], stop: threading.Event, *, name: str) -> Iterator[T]:
    """``upstream``'s items, read on a daemon thread one ahead; its error is raised here. Ends (without
    waiting for the thread) as soon as ``stop`` is set."""
    items: queue.Queue = queue.Queue(maxsize=2)
    done = threading.Event()  # the consumer has gone

    def put(item: object) -> bool:
        return offer(items, item, done)

    def produce() -> None:
        it = iter(upstream)
        try:
            for item in it:
                if not put(item):
                    break
        except BaseException as e:  # handed to the consumer, which raises it
            put(_End(e))
        else:
            put(_End())
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=f"net {name}", daemon=True)
    _READERS.difference_update([t for t in _READERS if not t.is_alive()])
    _READERS.add(thread)
    thread.start()
    try:
        while not stop.is_set():
            try:
                item = items.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
        log.debug("%s: stopped; its reader is left to time out on its own", name)
    finally:
        done.set()
