"""Which RTSP transport a live source's next connection uses: ``tcp``, ``udp``, or ``auto``.

``auto`` starts with TCP (through NATs and firewalls it is what works most often) and switches to the
other transport when the one it tried looks like the problem: the server refused it (RTSP 461
Unsupported Transport, or 400 Bad Request as servers that only know UDP answer an interleaved SETUP) or
no media arrived in time (UDP packets that a firewall drops look exactly like this). Whatever worked
last is kept for the source's reconnects; a failure that says nothing about the transport (connection
refused, 404, the stream ended) leaves it as it is, so a camera that reboots is asked again the way
that worked. The first switch is tried at once; switching back waits for the usual backoff.
"""

from __future__ import annotations

import errno

from avfuse.stream.errors import ConfigError

MODES = ("auto", "tcp", "udp")
FIRST = "tcp"  # what auto tries first
_OTHER = {"tcp": "udp", "udp": "tcp"}


def is_refusal(error: BaseException) -> bool:
    """True when FFmpeg's error says the server refused the transport asked for: RTSP 400 (PyAV's
    HTTPBadRequestError) or 461 (FFmpeg reports it as EPROTONOSUPPORT)."""
    import av

    if isinstance(error, av.error.HTTPBadRequestError):
        return True
    return isinstance(error, OSError) and error.errno == errno.EPROTONOSUPPORT


class TransportChoice:
    """The transport of one source's connections (one instance per source, used from its consumer)."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ConfigError(f"transport must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.current = FIRST if mode == "auto" else mode
        self.switches = 0  # times auto moved to the other transport
        self._at_once = False  # whether the last switch was tried without waiting

    def worked(self) -> None:
        """The current transport delivered media: keep it."""
        self._at_once = False

    def failed(self, *, transport_issue: bool) -> bool:
        """A connection on the current transport failed before any media. Returns True when the next
        attempt should go at once, on the other transport."""
        if self.mode != "auto" or not transport_issue:
            return False
        self.current = _OTHER[self.current]
        self.switches += 1
        at_once, self._at_once = not self._at_once, not self._at_once
        return at_once
