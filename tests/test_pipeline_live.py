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
from rtsp_server import RtspServer, gstreamer_available

from stream.engine import Engine, EngineConfig
from stream.pipeline import Pipeline, PipelineConfig
from stream.segment import Present, Segment
from stream.sinks.base import Sink
from stream.sources import Source

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.slow
def test_run_tails_a_real_rtsp_stream_until_sigterm(tmp_path):
    if not gstreamer_available():
        pytest.skip("GStreamer RTSP server (system python3-gi, gir1.2-gst-rtsp-server-1.0) is not installed")
    model = colour_model(tmp_path / "colour.onnx", fps=2, window_s=1.0)
    out = tmp_path / "out"
    password = "s3cret-pw"
    with RtspServer(user="alice", password=password, width=160, height=120) as server:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", str(model), server.url(), "-o", str(out),
                                 "--no-cache"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        partial = out / "cam.jsonl.partial"
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
