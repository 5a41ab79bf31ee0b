"""MJPEG over HTTP (multipart/x-mixed-replace, as IP cameras serve it) is a live source: labelled as it
comes, with reconnects and gaps when the camera goes away, like RTSP."""

from __future__ import annotations

import http.server
import itertools
import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from onnx_models import COLOURS, colour_model, colour_video

from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.live import Gap, LiveSource, is_live
from avfuse.stream.media.reconnect import Backoff
from avfuse.stream.media.segment import Segment

ROOT = Path(__file__).resolve().parents[2]
FPS = 10
SECONDS_EACH = 3  # whole 1 s windows of one colour, whatever the phase


def jpeg(rgb: tuple[int, int, int]) -> bytes:
    c = av.CodecContext.create("mjpeg", "w")
    c.width, c.height, c.pix_fmt, c.time_base = 64, 48, "yuvj420p", Fraction(1, FPS)
    frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), rgb, np.uint8), format="rgb24")
    return b"".join(bytes(p) for p in [*c.encode(frame.reformat(format="yuvj420p")), *c.encode(None)])


class Camera:
    """An HTTP server: any path but /clip.mp4 (a plain file) is an endless multipart stream of JPEGs, one colour
    for SECONDS_EACH seconds in turn (``colours``), at FPS frames a second. Stops and starts on the same port."""

    def __init__(self, colours: list[str], clip: Path):
        self.frames = [jpeg(COLOURS[c]) for c in colours]
        self.clip, self.port, self.server = clip, 0, None

    def url(self, path: str = "video.mjpg") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def start(self) -> Camera:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/clip.mp4":
                    data = camera.clip.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                t0, n = time.monotonic(), 0
                try:
                    while camera.server is not None:
                        data = camera.frames[int(n / FPS / SECONDS_EACH) % len(camera.frames)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(data) + data + b"\r\n")
                        n += 1
                        time.sleep(max(0.0, t0 + n / FPS - time.monotonic()))
                except OSError:
                    pass  # the client went away

            def log_message(self, *args):
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()


@pytest.fixture()
def camera(tmp_path):
    cam = Camera(["red", "green"], colour_video(tmp_path / "clip.mp4", ["blue"], audio=False)).start()
    yield cam
    cam.stop()


def test_an_mjpeg_url_is_live_and_a_file_url_is_not(camera):
    assert is_live(camera.url()) is True  # .mjpg says so
    assert is_live(camera.url("axis-cgi/mjpg/video.cgi?resolution=640x480")) is True  # the server says so
    assert is_live(camera.url("clip.mp4")) is False  # a media file's name: not even asked
    with socket.socket() as s:  # nothing listens: read as a file, whose open reports the error
        s.bind(("127.0.0.1", 0))
        assert is_live(f"http://127.0.0.1:{s.getsockname()[1]}/videostream.cgi") is False


def test_avfuse_run_labels_the_camera_as_it_changes(camera, tmp_path):
    model = colour_model(tmp_path / "colour.onnx", window_s=1.0)
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), camera.url(), "-o", str(out),
                            "--no-cache"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 40
        records: list[dict] = []
        while time.monotonic() < deadline and sum(r["type"] == "segment" for r in records) < 7:
            time.sleep(0.5)
            files = list(out.glob("*.jsonl"))
            if files:
                records = [json.loads(x) for x in files[0].read_text().splitlines() if x.strip()]
    finally:
        run.terminate()
        _, err = run.communicate(timeout=30)
    segments = [r for r in records if r["type"] == "segment"]
    assert len(segments) >= 7, err
    labels = [s["label"] for s in segments]
    assert set(labels) == {"red", "green"}, records  # the camera colours, seen as they change
    assert all(s["present"]["video"] for s in segments) and all(s["wallclock"] for s in segments)
    assert [s["index"] for s in segments] == list(range(len(segments)))


def test_a_camera_that_goes_away_is_reconnected_with_a_gap(camera):
    source = LiveSource(camera.url(), decode=DecodeConfig(fps=2, height=32, width=32),
                        segment=SegmentConfig(window_s=1.0), open_timeout=2.0, read_timeout=1.0,
                        backoff=Backoff(initial=0.1, factor=2.0, cap=0.4, jitter=0.5), max_attempts=50)
    stop = threading.Event()
    timer = threading.Timer(40, stop.set)
    timer.start()
    items: list[Segment | Gap] = []
    try:
        for item in source.segments(stop):
            items.append(item)
            segments = [x for x in items if isinstance(x, Segment)]
            if len(segments) == 2 and not any(isinstance(x, Gap) for x in items):
                camera.stop()
                time.sleep(1.5)
                camera.start()  # the same port
            if len(segments) >= 5:
                break
    finally:
        timer.cancel()
        stop.set()
    gaps = [x for x in items if isinstance(x, Gap)]
    segments = [x for x in items if isinstance(x, Segment)]
    assert len(gaps) == 1 and gaps[0].duration > 1.0
    assert [s.index for s in segments] == list(range(len(segments)))
    assert all(b.start > a.start for a, b in itertools.pairwise(segments))
    assert source.stats.reconnects >= 1
