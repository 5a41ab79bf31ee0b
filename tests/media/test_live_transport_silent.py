"""--live-transport auto against a server that accepts TCP and then sends nothing: the RTSP conversation goes
through, the media interleaved in TCP never comes (tests/rtsp_silent_proxy.py in front of GStreamer's server). The
source gives TCP up after its timeout and goes on over UDP, where the media arrives; forced to TCP, it fails."""

from __future__ import annotations

import threading
import time

import pytest
from rtsp_silent_proxy import SilentTcpProxy

from avfuse.stream.cli.rtsp_test_server import RtspServer, gstreamer_available
from avfuse.stream.errors import SourceError
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.live import LiveSource
from avfuse.stream.media.reconnect import Backoff
from avfuse.stream.media.segment import Segment

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not gstreamer_available(), reason="GStreamer RTSP server missing")]
FAST = Backoff(initial=0.1, factor=2.0, cap=0.4, jitter=0.5)
TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def proxy():
    server = RtspServer().start()
    silent = SilentTcpProxy(server.port)
    yield silent
    silent.stop()
    server.stop()


def _source(url: str, transport: str, attempts: int) -> LiveSource:
    return LiveSource(url, decode=DecodeConfig(fps=2, height=32, width=32), segment=SegmentConfig(window_s=0.5),
                      transport=transport, open_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, backoff=FAST,
                      max_attempts=attempts)


def test_auto_gives_up_a_silent_tcp_stream_and_labels_it_over_udp(proxy):
    source = _source(proxy.url(), "auto", attempts=4)
    stop = threading.Event()
    started = time.monotonic()
    segments = []
    for item in source.segments(stop):
        if isinstance(item, Segment):
            segments.append(item)
            if len(segments) == 3:
                stop.set()
    assert [s.index for s in segments] == [0, 1, 2] and all(s.present.video for s in segments)
    assert source.stats.transport == "udp" and source.stats.transport_switches == 1
    assert time.monotonic() - started < 4 * TIMEOUT_S  # TCP given up after its timeout, UDP tried at once


def test_forced_tcp_on_a_silent_stream_fails_saying_it_stalled(proxy):
    source = _source(proxy.url(), "tcp", attempts=2)
    with pytest.raises(SourceError, match="could not connect after 2 attempts") as info:
        for item in source.segments(threading.Event()):
            assert not isinstance(item, Segment)
    assert f"stalled: open did not finish within {TIMEOUT_S:g} s" in str(info.value)
    assert source.stats.transport_switches == 0
