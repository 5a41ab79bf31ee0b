"""``avfuse run model.onnx FILE --loop``: a file played as if live, paced at real speed, over and over
until SIGTERM; the records go on past the file's end, and the summary and metrics report the live latency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from onnx_models import colour_model, colour_video
from prometheus_text import checked_values

from avfuse.stream.cli.rtsp_test_server import free_port

ROOT = Path(__file__).resolve().parents[2]
COLOURS = ["red", "green", "blue"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _records(path: Path) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(x) for x in lines if x.endswith("}")]


def _segments(path: Path) -> list[dict]:
    return [r for r in _records(path) if r["type"] == "segment"]


def test_loop_plays_a_file_as_if_live_until_sigterm(tmp_path):
    model = colour_model(tmp_path / "colour.onnx")  # 1 s windows
    clip = colour_video(tmp_path / "clip.mp4", COLOURS)  # 3 s: three windows
    out, port = tmp_path / "out", free_port()
    proc = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), str(clip), "--loop", "-o", str(out),
                             "--no-cache", "--metrics-port", str(port)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    partial = out / "clip.mp4.jsonl"  # a live output: under its final name from the first record
    try:
        deadline = time.monotonic() + 60
        while len(_segments(partial)) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(1.2)  # the latency gauges are refreshed once a second
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    segs = _segments(partial)
    assert len(segs) >= 5, err[-3000:]
    # past the file's end it starts over: labels repeat, index and media time go on
    assert [r["label"] for r in segs[:5]] == (COLOURS * 2)[:5]
    assert [r["index"] for r in segs] == list(range(len(segs)))
    assert [r["start"] for r in segs[:5]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    # paced at real speed: windows closed about a second apart
    assert 3.0 < segs[4]["wallclock"] - segs[0]["wallclock"] < 5.5
    assert not (out / ".done" / "clip.mp4.json").exists()  # never finished: not done, for --resume to skip
    assert not (out / "clip.mp4.jsonl.partial").exists()  # a live output has its final name all along
    assert "summary:" in err and "1 interrupted" in err and "live: 1 source(s), latency from window close" in err
    values = checked_values(metrics)  # a page Prometheus itself parses, lint-free
    assert values["avfuse_live_latency_seconds_count"] >= 5
    assert 0 < values["avfuse_live_latency_p95_seconds"] < 2.0
