"""Live sources in the pipeline: when inference and sinks fall behind, the oldest segments are dropped
and counted (files are never dropped); and ``avfuse run`` tails a real RTSP server (GStreamer), with
the credentials kept out of every record and log line, until SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from onnx_models import colour_model

from avfuse.stream.cli.rtsp_test_server import RtspServer, gstreamer_available
from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.segment import Present, Segment
from avfuse.stream.run.pipeline import Pipeline, PipelineConfig
from avfuse.stream.run.sinks.base import Sink
from avfuse.stream.run.sources import Source

ROOT = Path(__file__).resolve().parents[2]


class SlowSink(Sink):
    """Collects records, taking ``delay`` seconds per write (a sink that cannot keep up)."""

    name = "slow"

    def __init__(self, delay: float) -> None:
        self.delay, self.records = delay, []

    def write(self, key, record):
        time.sleep(self.delay)
        self.records.append(record)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(colour_model(tmp_path_factory.mktemp("m") / "colour.onnx"), EngineConfig(device="cpu", threads=1))


def _burst(engine: Engine, n: int):
    """An opener whose source delivers ``n`` segments at once, like a stream that outpaces inference."""
    spec = engine.spec
    frames = np.full((spec.frames, spec.decode.height, spec.decode.width, 3), (20, 20, 230), np.uint8)
    audio = np.zeros(spec.samples, np.float32)

    def opener(source: Source, stop: threading.Event):
        for i in range(n):
            yield Segment(source=source.shown, index=i, start=float(i), end=i + 1.0, frames=frames, audio=audio,
                          text="", present=Present(video=True, audio=False, text=False), wallclock=time.time())

    return opener


@pytest.mark.parametrize(("name", "live"), [("rtsp://cam.local/x", True), ("file.mp4", False)])
def test_live_sources_drop_oldest_when_behind_files_never_drop(engine, name, live):
    sink = SlowSink(0.01)
    pipe = Pipeline(engine, [sink], config=PipelineConfig(batch=2, queue_size=2, max_wait_ms=1),
                    opener=_burst(engine, 60))
    stats = pipe.run([Source(name=name)])
    indices = [r["index"] for r in sink.records if r["type"] == "segment"]
    assert indices == sorted(indices) and indices[-1] == 59  # in order, and the newest always got through
    if live:
        assert stats.dropped > 0 and len(indices) == 60 - stats.dropped
    else:
        assert stats.dropped == 0 and indices == list(range(60))


class Collect(Sink):
    """Collects records per source key, and which keys were opened and closed (finished or not)."""

    name = "collect"

    def __init__(self) -> None:
        self.records: dict[str, list[dict]] = {}
        self.closed: dict[str, bool] = {}

    def open_source(self, key):
        self.records[key] = []

    def write(self, key, record):
        self.records[key].append(record)

    def close_source(self, key, *, finished):
        self.closed[key] = finished

    def segments(self, key) -> list[dict]:
        return [r for r in self.records.get(key, []) if r["type"] == "segment"]


def test_a_drop_is_counted_once_per_segment_however_many_readers_put():
    from avfuse.stream.run.batching import Channel

    dropped: list[int] = []
    ch = Channel(4, policy="drop_oldest", on_drop=dropped.append)
    threads = [threading.Thread(target=lambda k=k: [ch.put(k * 1000 + i) for i in range(500)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ch.close()
    kept = list(ch)
    assert len(kept) == 4 and len(dropped) == ch.dropped == 2000 - 4
    assert sorted(dropped + kept) == sorted(k * 1000 + i for k in range(4) for i in range(500))


@pytest.mark.slow
def test_two_rtsp_streams_are_read_at_once_and_both_labelled(engine, request):
    """Live sources are not read one after another (a stream never ends, so the second would never be
    read): each has its own reader, and both produce records, with the live latency and counters."""
    if not gstreamer_available():
        pytest.skip("GStreamer RTSP server (system python3-gi, gir1.2-gst-rtsp-server-1.0) is not installed")
    servers = [RtspServer(width=160, height=120, path=f"/cam{i}") for i in range(2)]
    for srv in servers:
        request.addfinalizer(srv.stop)
        srv.start()
    sink = Collect()
    pipe = Pipeline(engine, [sink], config=PipelineConfig(batch=4, max_wait_ms=20))
    keys = ["cam0", "cam1"]

    def stop_when_both_labelled() -> None:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not all(len(sink.segments(k)) >= 3 for k in keys):
            time.sleep(0.1)
        pipe.stop()
    threading.Thread(target=stop_when_both_labelled, daemon=True).start()
    stats = pipe.run([Source(name=srv.url()) for srv in servers])
    for key, srv in zip(keys, servers, strict=True):
        segs = sink.segments(key)
        assert len(segs) >= 3, sink.records
        assert [r["index"] for r in segs] == list(range(len(segs)))
        assert all(r["source"] == srv.url() and r["wallclock"] is not None for r in segs)
        assert sink.closed[key] is False  # a stream never finishes: stopped, it is unfinished
    assert stats.live_sources == 2 and stats.sources_interrupted == 2 and not stats.sources_failed
    assert len(stats.live_latencies) == stats.segments and 0 < stats.live_percentile(95) < 5.0
    assert "live: 2 source(s), latency from window close p50" in stats.render()


@pytest.mark.slow
def test_run_tails_a_real_rtsp_stream_until_sigterm(tmp_path):
    if not gstreamer_available():
        pytest.skip("GStreamer RTSP server (system python3-gi, gir1.2-gst-rtsp-server-1.0) is not installed")
    model = colour_model(tmp_path / "colour.onnx", fps=2, window_s=1.0)
    out = tmp_path / "out"
    password = "s3cret-pw"
    with RtspServer(user="alice", password=password, width=160, height=120) as server:
        proc = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), server.url(), "-o", str(out),
                                 "--no-cache"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        partial = out / "cam.jsonl"  # a live output: under its final name from the first record
        deadline = time.monotonic() + 60
        while (not partial.exists() or len(partial.read_text().splitlines()) < 3) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert partial.exists(), err[-3000:]
    records = [json.loads(x) for x in partial.read_text().splitlines()]
    assert proc.returncode == 143, err
    segments = [r for r in records if r["type"] == "segment"]
    assert len(segments) >= 3 and [r["index"] for r in segments] == list(range(len(segments)))
    assert all(r["wallclock"] is not None and r["label"] in ("red", "green", "blue") for r in segments)
    assert password not in partial.read_text() and password not in err
    assert "summary:" in err and "interrupted" in err
