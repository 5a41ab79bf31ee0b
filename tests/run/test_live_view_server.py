"""The live view's server when a page goes away in the middle of a reply, as a closed tab does."""

from __future__ import annotations

import socket
import struct
import time
import urllib.request

import numpy as np

from avfuse.stream.media.segment import Present, Segment
from avfuse.stream.run.report.live import LiveView


def _segment() -> Segment:
    noise = np.random.default_rng(0).integers(0, 256, (3, 72, 128, 3), dtype=np.uint8)
    return Segment(source="rtsp://cam/1", index=0, start=0.0, end=2.0, frames=noise,
                   audio=np.zeros(32000, np.float32), text="", present=Present(video=True, audio=True, text=False),
                   wallclock=time.time())


def test_a_page_that_leaves_mid_frame_is_no_error_and_the_view_serves_on(capfd):
    view = LiveView(0, "127.0.0.1")
    try:
        view("cam", _segment(), [{"type": "segment", "source": "rtsp://cam/1", "label": "red", "score": 0.9}])
        for k in range(20):
            with socket.socket() as s:
                s.connect(("127.0.0.1", view.port))
                s.sendall(b"GET /frame/0.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
                if k % 2:
                    time.sleep(0.01)  # the reply may have begun
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{view.port}/frame/0.jpg", timeout=10) as r:
            assert r.status == 200 and r.read(2) == b"\xff\xd8"  # still serving: a JPEG
    finally:
        view.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Broken pipe" not in err and "Connection reset" not in err, err
