"""Event clips of a live RTSP source (GStreamer test server): the reader's packets feed the ring; a red
camera that goes down and comes back blue ends a red event, whose clip is written while the run goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from onnx_models import colour_model

from avfuse.stream.cli.rtsp_test_server import RtspServer, gstreamer_available

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(90), pytest.mark.slow,
              pytest.mark.skipif(not gstreamer_available(), reason="GStreamer RTSP server missing: "
                                 "bash scripts/system-deps.sh")]


def test_an_rtsp_source_gets_a_clip_of_its_event_while_it_runs(tmp_path):
    model = colour_model(tmp_path / "colour.onnx", fps=4, window_s=0.5)
    out, clips = tmp_path / "out", tmp_path / "clips"
    stream = out / "cam.jsonl"
    srv = RtspServer(pattern="red", width=160, height=120, fps=10).start()
    proc = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), srv.url(), "-o", str(out),
                             "--no-cache", "--clips", str(clips), "--clip-pad", "0.5", "--live-backoff", "0.2",
                             "--summary-json", str(tmp_path / "summary.json")],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _count(stream, "segment") >= 6, proc)  # 3 s of red
        srv.stop()
        srv = RtspServer(port=srv.port, pattern="blue", width=160, height=120, fps=10).start()
        _wait(lambda: _count(stream, "event") >= 1 and any(clips.glob("*.mkv")), proc)
        written_while_running = sorted(clips.glob("*.mkv"))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        srv.stop()
    assert proc.returncode == 130, err[-3000:]
    records = [json.loads(line) for line in stream.read_text().splitlines()]
    (event,) = [e for e in records if e["type"] == "event"]  # the blue one was still open when stopped
    assert event["label"] == "red" and event["end"] - event["start"] >= 3.0
    clip = Path(event["clip"])
    assert written_while_running == [clip]
    with av.open(str(clip)) as c:
        video = c.streams.video[0]
        assert video.codec_context.name == "h264" and c.streams.audio  # the camera's own streams
        packets = [p for p in c.demux(video) if p.size]
    assert packets[0].is_keyframe
    with av.open(str(clip)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames >= (event["end"] - event["start"]) * 10 - 2  # the whole event at the camera's 10 fps
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["clips"]["written"] == 1 and summary["clips"]["failed"] == 0


def _count(path: Path, kind: str) -> int:
    return path.read_text().count(f'"type": "{kind}"') if path.exists() else 0


def _wait(done, proc: subprocess.Popen, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not done() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
