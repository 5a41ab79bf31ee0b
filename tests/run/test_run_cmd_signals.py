"""A real ``avfuse run`` subprocess, slowed down by a webhook receiver that takes its time, is killed
(SIGKILL) or stopped (SIGTERM) mid-run: no output looks complete unless it is, --resume finishes the
rest, SIGTERM flushes the outputs and prints the summary; the metrics endpoint is scraped meanwhile."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from onnx_models import colour_model, colour_video
from prometheus_text import checked_values
from test_sinks import Receiver

ROOT = Path(__file__).resolve().parents[2]
COLOURS = ["red", "green", "blue", "red", "green", "blue"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    clips = [colour_video(d / f"{n}.mp4", COLOURS, audio=False) for n in "abc"]
    return colour_model(d / "colour.onnx"), clips


def _start(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "avfuse", "run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _segments(records: list[dict]) -> list[str]:
    return [r["label"] for r in records if r["type"] == "segment"]


def test_sigkill_mid_run_then_resume(media, tmp_path):
    model, clips = media
    out = tmp_path / "out"
    rx = Receiver(delay=0.1)
    try:
        proc = _start([str(model), *map(str, clips), "-o", str(out), "--sink", "jsonl", "--sink", rx.url,
                       "--no-cache", "--batch", "2"])
        _wait_for(lambda: (out / ".done" / "a.mp4.json").exists() and _lines(out / "b.mp4.jsonl.partial"))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        rx.close()
    assert _segments(_lines(out / "a.mp4.jsonl"))[:6] == COLOURS  # finished before the kill: complete
    assert not (out / "b.mp4.jsonl").exists() and not (out / ".done" / "b.mp4.json").exists()
    assert not (out / "c.mp4.jsonl").exists()
    a_before = (out / "a.mp4.jsonl").stat().st_mtime_ns

    r = subprocess.run([sys.executable, "-m", "avfuse", "run", str(model), *map(str, clips), "-o", str(out),
                        "--resume", "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert "1 skipped" in r.stderr and "2 ok" in r.stderr
    assert (out / "a.mp4.jsonl").stat().st_mtime_ns == a_before  # not redone
    for n in "bc":
        assert _segments(_lines(out / f"{n}.mp4.jsonl"))[:6] == COLOURS
        assert (out / ".done" / f"{n}.mp4.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_flushes_outputs_prints_summary_and_metrics_are_served(media, tmp_path):
    model, clips = media
    out = tmp_path / "out"
    port = _free_port()
    rx = Receiver(delay=0.1)
    try:
        proc = _start([str(model), *map(str, clips), "-o", str(out), "--sink", "jsonl", "--sink", rx.url,
                       "--no-cache", "--batch", "2", "--metrics-port", str(port)])
        _wait_for(lambda: len(_lines(out / "a.mp4.jsonl.partial")) >= 2)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - t0
    finally:
        rx.close()
    values = checked_values(metrics)  # a page Prometheus itself parses, lint-free
    assert values["avfuse_segments_total"] >= 2
    assert 'avfuse_segment_latency_seconds_bucket{le="+Inf"}' in values
    assert proc.returncode == 143, err
    assert "summary:" in err and "interrupted" in err and stopped_in < 10, err[-2000:]
    partial = _lines(out / "a.mp4.jsonl.partial")  # flushed: every line whole JSON
    assert len(partial) >= 2 and _segments(partial) == COLOURS[: len(_segments(partial))]
    assert len(rx.bodies) == len(partial)  # the webhook got the same records as the file
    assert not (out / "a.mp4.jsonl").exists() and not (out / ".done" / "a.mp4.json").exists()
