"""LiveSource against a real RTSP server (GStreamer, started and killed by the tests): segments, kill and
restart, a frozen server, a silent TCP server, a wrong path and a wrong password."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

from avfuse.stream.cli.rtsp_test_server import RtspServer, gstreamer_available
from avfuse.stream.errors import ConfigError, SourceError
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.live import Gap, LiveSource
from avfuse.stream.media.reconnect import Backoff
from avfuse.stream.media.segment import Segment

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not gstreamer_available(), reason="GStreamer RTSP server missing: "
                                 "bash scripts/system-deps.sh")]

PASSWORD = "Sup3r-s3cret"
DECODE = DecodeConfig(fps=4, height=64, width=64)
WINDOW = SegmentConfig(window_s=0.5)
FAST = Backoff(initial=0.1, factor=2.0, cap=0.4, jitter=0.5)


@pytest.fixture
def server(request):
    srv = RtspServer(user="alice", password=PASSWORD)
    request.addfinalizer(srv.stop)
    return srv.start()


def live(url: str, **kw) -> LiveSource:
    opts = dict(decode=DECODE, segment=WINDOW, open_timeout=3.0, read_timeout=2.0, backoff=FAST, max_attempts=30)
    return LiveSource(url, **{**opts, **kw})


def take(source: LiveSource, n: int, *, limit_s: float, stop: threading.Event | None = None,
         on_item=None) -> list[Segment | Gap]:
    """Items until ``n`` segments arrived or ``limit_s`` passed (then the stop event ends the stream)."""
    stop = stop or threading.Event()
    timer = threading.Timer(limit_s, stop.set)
    timer.start()
    out: list[Segment | Gap] = []
    try:
        for item in source.segments(stop):
            out.append(item)
            if on_item is not None:
                on_item(item)
            if sum(isinstance(x, Segment) for x in out) >= n:
                break
    finally:
        timer.cancel()
        stop.set()
    return out


def assert_secret_free(password: str, *texts: str) -> None:
    for text in texts:
        assert password not in text


def test_rtsp_segments_are_timed_live_and_named_without_the_password(server, caplog):
    caplog.set_level(logging.DEBUG)
    started = time.time()
    items = take(live(server.url()), 4, limit_s=30)
    segs = [x for x in items if isinstance(x, Segment)]
    assert [s.index for s in segs] == [0, 1, 2, 3]
    assert [s.start for s in segs] == [0.0, 0.5, 1.0, 1.5]
    assert all(s.source == f"rtsp://***@127.0.0.1:{server.port}/cam" for s in segs)
    assert all(s.frames.shape == (2, 64, 64, 3) and s.present.video and s.present.audio for s in segs)
    assert all(float(np.abs(s.audio).mean()) > 0.1 for s in segs)  # the server's sine tone came through
    # wall clock of each window's close: after we started, in order, half a second apart as the stream runs
    closes = [s.wallclock for s in segs]
    assert started < closes[0] <= time.time() and closes == sorted(closes)
    assert 0.8 < closes[-1] - closes[0] < 2.5
    assert_secret_free(PASSWORD, caplog.text)


def test_iter_segments_reads_an_rtsp_url_from_its_first_frame_without_showing_the_password(server, caplog):
    """Plain decoding (no LiveSource) of an RTSP URL: the stream's first frame comes before the RTCP sync
    that times it; it still fills the first window, and nothing names the URL with its password."""
    import av

    from avfuse.stream.media.segmenter import iter_segments

    with av.open(server.url(), options={"rtsp_transport": "tcp"}, timeout=(5.0, 5.0)) as c:
        first = next(c.demux(c.streams.video[0]))
        assert first.pts is None and first.dts is None  # the case this test is about
    caplog.set_level(logging.DEBUG)
    it = iter_segments(server.url(), decode=DECODE, segment=WINDOW, options={"rtsp_transport": "tcp"},
                       timeout=(5.0, 5.0))
    try:
        segs = [next(it) for _ in range(4)]
    finally:
        it.close()
    assert [(s.index, s.start) for s in segs] == [(0, 0.0), (1, 0.5), (2, 1.0), (3, 1.5)]
    assert all(s.present.video and s.present.audio for s in segs)
    assert all(f.any() for f in segs[0].frames)  # a real picture from the first sample on, not black padding
    assert all(s.source == f"rtsp://***@127.0.0.1:{server.port}/cam" for s in segs)
    assert_secret_free(PASSWORD, caplog.text)


def test_udp_transport_is_selectable(server):
    segs = [x for x in take(live(server.url(), transport="udp"), 2, limit_s=30) if isinstance(x, Segment)]
    assert [s.index for s in segs] == [0, 1] and segs[0].present.video


@pytest.mark.slow
def test_server_killed_and_restarted_gives_one_gap_and_the_stream_goes_on(server, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    source = live(server.url())
    events: dict[str, float] = {}

    def chaos(item):
        if isinstance(item, Segment) and item.index == 2 and "killed" not in events:
            server.stop()
            events["killed"] = time.time()
            threading.Timer(1.5, lambda: (server.start(), events.setdefault("restarted", time.time()))).start()

    items = take(source, 6, limit_s=60, on_item=chaos)
    gaps = [x for x in items if isinstance(x, Gap)]
    segs = [x for x in items if isinstance(x, Segment)]
    assert len(gaps) == 1 and len(segs) == 6
    gap = gaps[0]
    assert gap.source == f"rtsp://***@127.0.0.1:{server.port}/cam"
    # the lost interval covers the outage: from the last window closed before the kill to media again
    assert gap.start_wallclock <= events["killed"] < events["restarted"] <= gap.end_wallclock
    assert gap.end_wallclock - events["restarted"] < 5.0
    # the index keeps counting; media time is monotonic and jumps by the gap
    assert [s.index for s in segs] == list(range(6))
    before, after = [s for s in segs if s.wallclock <= gap.start_wallclock], \
        [s for s in segs if s.wallclock >= gap.end_wallclock]
    assert len(before) == 3 and len(after) == 3
    assert after[0].start == pytest.approx(before[-1].end + gap.duration, abs=1e-3)
    assert all(b.start > a.start for a, b in itertools.pairwise(segs))
    assert source.stats.reconnects == 1 and source.stats.gaps == 1
    assert any("reconnect attempt" in r.getMessage() for r in caplog.records)
    assert_secret_free(PASSWORD, caplog.text, *capfd.readouterr(), repr(gap.as_record()))


def test_server_that_never_comes_back_ends_with_the_gap_then_a_clear_error(server):
    source = live(server.url(), max_attempts=2)
    items: list = []

    def kill(item):
        if isinstance(item, Segment) and item.index == 1:
            server.stop()
    with pytest.raises(SourceError, match=r"could not connect after 2 attempts.*refused"):
        take(source, 100, limit_s=30, on_item=lambda item: (items.append(item), kill(item)))
    assert [type(x).__name__ for x in items] == ["Segment", "Segment", "Gap"]
    gap = items[-1]
    assert gap.start_wallclock == items[1].wallclock and gap.end_wallclock > gap.start_wallclock
    assert gap.reason.startswith("the stream ended; gave up")


@pytest.mark.slow
def test_frozen_server_trips_the_watchdog_and_the_source_comes_back(server, caplog):
    caplog.set_level(logging.WARNING, logger="avfuse.stream.media.live")
    source = live(server.url(), read_timeout=1.0, open_timeout=3.0)
    events: dict[str, float] = {}

    def freeze(item):
        if isinstance(item, Segment) and item.index == 1 and "frozen" not in events:
            os.killpg(server.proc.pid, signal.SIGSTOP)  # TCP stays open, nothing more arrives
            events["frozen"] = time.time()

            def thaw():
                os.killpg(server.proc.pid, signal.SIGCONT)
                events["thawed"] = time.time()
            threading.Timer(3.0, thaw).start()

    items = take(source, 4, limit_s=60, on_item=freeze)
    gaps = [x for x in items if isinstance(x, Gap)]
    assert len(gaps) == 1 and sum(isinstance(x, Segment) for x in items) == 4
    assert gaps[0].end_wallclock >= events["thawed"]
    first_warning = next(r for r in caplog.records if "reconnect attempt" in r.getMessage())
    # the stall was noticed within the read timeout (plus polling and a loaded machine's slack), well
    # before the server thawed at 3 s and not after some TCP default
    assert first_warning.created - events["frozen"] < 2.8
    assert source.stats.reconnects == 1


def test_silent_server_times_out_and_gives_up_after_the_attempts(silent_server, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://bob:{PASSWORD}@127.0.0.1:{silent_server}/stream"
    source = live(url, open_timeout=0.5, read_timeout=0.5, max_attempts=3, backoff=Backoff(initial=0.05, cap=0.1))
    started = time.monotonic()
    with pytest.raises(SourceError, match="after 3 attempts") as info:
        take(source, 1, limit_s=30)
    assert time.monotonic() - started < 3 * 0.5 + 2.0  # three opens of 0.5 s each, short backoff: no hang
    assert f"rtsp://***@127.0.0.1:{silent_server}/stream" in str(info.value)
    assert_secret_free(PASSWORD, str(info.value), caplog.text, repr(info.value.__cause__))
    assert len([r for r in caplog.records if "reconnect attempt" in r.getMessage()]) == 2


def test_wrong_path_is_a_clear_error_after_the_attempts(server):
    with pytest.raises(SourceError, match=r"after 2 attempts.*404") as info:
        take(live(server.url(path="/nope"), max_attempts=2), 1, limit_s=30)
    assert_secret_free(PASSWORD, str(info.value))


def test_wrong_password_fails_at_once_without_showing_it(server, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-pa55word"
    source = live(server.url(password=wrong), max_attempts=10, backoff=Backoff(initial=2.0, cap=2.0))
    started = time.monotonic()
    with pytest.raises(SourceError, match="credentials refused") as info:
        take(source, 1, limit_s=30)
    assert time.monotonic() - started < 2.0  # not retried: asking again cannot fix a refused password
    chain, e = [], info.value
    while e is not None:
        chain.append(f"{e!r} {e}")
        e = e.__cause__
    assert "401" in str(info.value)
    assert_secret_free(wrong, *chain, caplog.text, *capfd.readouterr())


def test_stop_ends_the_stream_promptly(server):
    stop = threading.Event()
    gen = live(server.url()).segments(stop)
    next(gen)
    stop.set()
    started = time.monotonic()
    assert [x for x in gen if isinstance(x, Segment)] == []
    assert time.monotonic() - started < 1.5  # the read timeout is 2 s: stop does not wait for it


def test_live_source_rejects_bad_settings():
    with pytest.raises(ConfigError, match="transport"):
        LiveSource("rtsp://h/p", decode=DECODE, segment=WINDOW, transport="http")
    with pytest.raises(ConfigError, match="not a live source"):
        LiveSource("clip.mp4", decode=DECODE, segment=WINDOW)
    with pytest.raises(ConfigError, match="max_attempts"):
        LiveSource("rtsp://h/p", decode=DECODE, segment=WINDOW, max_attempts=0)
    with pytest.raises(ConfigError) as info:
        LiveSource(f"rtsp://u:{PASSWORD}@h/p", decode=DECODE, segment=WINDOW, loop_file=True)
    assert PASSWORD not in str(info.value)
