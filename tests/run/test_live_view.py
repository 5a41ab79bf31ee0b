"""``avfuse run RTSP_URL --ui-port PORT``: the live view of a real run on a real RTSP stream (GStreamer), in headless
Chromium: the latest frame with its label over it, and the label changes when the stream's content does (the server
is killed and comes back showing another colour; the run reconnects)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from browser import browser, needs_chromium, wait_until  # noqa: F401
from onnx_models import colour_model

from avfuse.stream.cli.rtsp_test_server import RtspServer, free_port, gstreamer_available

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [needs_chromium, pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.skipif(not gstreamer_available(), reason="GStreamer RTSP server missing")]
CARD = """const c = document.querySelector('.card'); if (!c) return null;
const img = c.querySelector('img'); let rgb = null;
if (img.complete && img.naturalWidth) {
  const k = document.createElement('canvas'); k.width = img.naturalWidth; k.height = img.naturalHeight;
  const g = k.getContext('2d'); g.drawImage(img, 0, 0);
  rgb = Array.from(g.getImageData(k.width >> 1, k.height >> 1, 1, 1).data.slice(0, 3));
}
const counters = {};
for (const s of document.querySelectorAll('#counters span')) counters[s.dataset.counter] = s.textContent;
return {label: c.querySelector('.label').textContent, name: c.querySelector('h2').textContent, rgb, counters,
        bars: Array.from(c.querySelectorAll('.gatebar span')).map(b => b.getBoundingClientRect().width)};"""


def dominant(rgb: list[int] | None) -> str | None:
    return None if rgb is None else ("red", "green", "blue")[max(range(3), key=rgb.__getitem__)]


def test_live_view_follows_an_rtsp_stream(tmp_path, browser):  # noqa: F811
    model = colour_model(tmp_path / "colour.onnx", fps=4, window_s=0.5)
    server = RtspServer(pattern="red").start()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), server.url(), "-o",
                            str(tmp_path / "out"), "--ui-port", str(port), "--no-cache", "--live-timeout", "2",
                            "--live-attempts", "0", "--live-backoff", "0.2", "--live-backoff-max", "0.5"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: run.poll() is not None or _listening(port), timeout=30, what="live view listening")
        browser.get(f"http://127.0.0.1:{port}/")
        seen = wait_until(lambda: (c := browser.execute_script(CARD)) and c["label"] == "red"
                          and dominant(c["rgb"]) == "red" and c, timeout=40, what="red label and frame")
        assert seen["name"] == server.url()  # no credentials here; the source as the records name it
        assert any(w > 0 for w in seen["bars"])
        browser.save_screenshot(str(tmp_path / "live-red.png"))
        server.stop()  # the camera loses power and comes back showing blue
        server = RtspServer(port=server.port, pattern="blue").start()
        seen = wait_until(lambda: (c := browser.execute_script(CARD)) and c["label"] == "blue"
                          and dominant(c["rgb"]) == "blue" and c, timeout=60, what="blue label and frame")
        assert int(seen["counters"]["reconnects"].split()[-1]) >= 1
        browser.save_screenshot(str(tmp_path / "live-blue.png"))
    finally:
        run.send_signal(signal.SIGINT)
        try:
            _, err = run.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()
            err = run.communicate()[1]
        server.stop()
    assert run.returncode == 130, err[-2000:]


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
