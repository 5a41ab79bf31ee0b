"""--live-transport auto against two RTSP servers that are not GStreamer's, each refusing one transport:
rtsp-server-perl (UDP only: 400 to an interleaved SETUP) and aio-rtsp-toolkit (TCP only: 461 to UDP).
Each stream is labelled through the pipeline, the server is killed and restarted, and the stream goes on
over the transport that worked, without asking the refused one again."""

from __future__ import annotations

import threading
import time

import pytest
from media import AudioSpec, VideoSpec, write_media
from onnx_models import colour_model
from rtsp_servers import AioRtspServer, PerlRtspServer

from avfuse.stream.errors import SourceError
from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.live import LiveConfig, LiveSource
from avfuse.stream.media.reconnect import Backoff
from avfuse.stream.media.segment import Segment
from avfuse.stream.run.opener import open_source
from avfuse.stream.run.pipeline import Pipeline, PipelineConfig
from avfuse.stream.run.sinks.base import Sink
from avfuse.stream.run.sources import Source

pytestmark = pytest.mark.timeout(120)
FAST = Backoff(initial=0.1, factor=2.0, cap=0.4, jitter=0.5)
SERVERS = {
    "perl-udp-only": (PerlRtspServer, "udp"),
    "aio-tcp-only": (AioRtspServer, "tcp"),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """60 s of blue-ish H.264 + AAC, an IDR every second, for the servers to stream in real time."""
    folder = tmp_path_factory.mktemp("rtsp-media")
    return write_media(folder / "cam.mp4",
                       video=VideoSpec(frames=60 * 10, fps=10, width=64, height=48, codec="libx264",
                                       x264=(("g", "10"),)),
                       audio=AudioSpec(duration=60.0, codec="aac", channels=1, rate=48000))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(colour_model(tmp_path_factory.mktemp("m") / "colour.onnx"), EngineConfig(device="cpu", threads=1))


def _server(kind: str, clip, request):
    cls, _ = SERVERS[kind]
    if not cls.available:
        pytest.skip(f"{cls.__name__} is not installed (scripts/system-deps.sh, pip install .[dev])")
    srv = cls(clip)
    request.addfinalizer(srv.stop)
    return srv.start()


class Collect(Sink):
    name = "collect"

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.lock = threading.Lock()

    def write(self, key, record):
        with self.lock:
            self.records.append(record)

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [r for r in self.records if r["type"] == kind]


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SERVERS))
def test_auto_labels_a_server_that_refuses_one_transport_through_a_kill_and_restart(kind, clip, engine, request):
    srv = _server(kind, clip, request)
    works = SERVERS[kind][1]
    config = PipelineConfig(batch=2, max_wait_ms=0, live=LiveConfig(timeout_s=8.0, attempts=30, backoff=FAST))
    assert config.live.transport == "auto"  # the default
    feeds: list = []
    default = open_source(engine.spec, config.live)

    def opener(source, stop):
        feeds.append(default(source, stop))
        return feeds[-1]

    sink = Collect()
    pipe = Pipeline(engine, [sink], config=config, opener=opener)
    events: dict[str, float] = {}

    def chaos() -> None:
        deadline = time.monotonic() + 80
        while time.monotonic() < deadline:
            if "killed" not in events and len(sink.of("segment")) >= 2:
                srv.stop()
                events["killed"] = time.time()
                time.sleep(1.0)
                srv.start()
                events["restarted"] = time.time()
            if sink.of("gap") and len([r for r in sink.of("segment") if r["wallclock"] > events["restarted"]]) >= 2:
                break
            time.sleep(0.05)
        pipe.stop()

    threading.Thread(target=chaos, daemon=True).start()
    stats = pipe.run([Source(name=srv.url())])
    segs, gaps = sink.of("segment"), sink.of("gap")
    assert len(gaps) == 1 and "restarted" in events, sink.records
    assert gaps[0]["start_wallclock"] <= events["killed"] < events["restarted"] <= gaps[0]["end_wallclock"]
    after = [r for r in segs if r["wallclock"] >= gaps[0]["end_wallclock"]]
    assert len(segs) - len(after) >= 2 and len(after) >= 2
    assert [r["index"] for r in segs] == list(range(len(segs)))
    assert all(r["label"] in ("red", "green", "blue") for r in segs)
    live = feeds[0].stats
    assert live.transport == works and live.reconnects == 1
    # the refused transport was tried once, at the start (TCP first), never again after the restart
    assert live.transport_switches == (1 if works == "udp" else 0)
    assert stats.reconnects == 1 and stats.gaps == 1


@pytest.mark.parametrize("kind", list(SERVERS))
def test_a_forced_transport_the_server_refuses_fails_with_the_reason(kind, clip, request):
    srv = _server(kind, clip, request)
    refused = {"udp": "tcp", "tcp": "udp"}[SERVERS[kind][1]]
    source = LiveSource(srv.url(), decode=DecodeConfig(fps=2, height=32, width=32), segment=SegmentConfig(),
                        transport=refused, open_timeout=8.0, read_timeout=8.0, backoff=FAST, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(SourceError, match="could not connect after 2 attempts") as info:
        for item in source.segments(threading.Event()):
            assert not isinstance(item, Segment)
    assert time.monotonic() - started < 5.0  # refused at once, not timed out
    assert ("400" in str(info.value)) if refused == "tcp" else ("not supported" in str(info.value))
    assert source.stats.transport_switches == 0
