"""``avfuse run --metrics-host``: the Prometheus listener binds 127.0.0.1 unless asked for another address."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main
from avfuse.stream.cli.rtsp_test_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _scrape(host: str, port: int) -> str | None:
    """The metrics page at host:port, or None when nothing listens there."""
    try:
        return urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2).read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("metrics-host")
    return colour_model(d / "colour.onnx"), colour_video(d / "clip.mp4", ["red", "green"])


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("argv", "served", "not_served"), [
    ([], "127.0.0.1", "127.0.0.2"),
    (["--metrics-host", "127.0.0.2"], "127.0.0.2", "127.0.0.1"),
    (["--metrics-host", "0.0.0.0"], "127.0.0.2", None),  # every interface: 127.0.0.1 and 127.0.0.2 alike
])
def test_the_listener_binds_where_asked(tmp_path, media, argv, served, not_served):
    model, clip = media
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), str(clip), "--loop",
                             "-o", str(tmp_path / "out"), "--no-cache", "--metrics-port", str(port), *argv],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline, page = time.monotonic() + 60, None
        while page is None and time.monotonic() < deadline and proc.poll() is None:
            page = _scrape(served, port)
            time.sleep(0.2)
        other = _scrape(not_served or "127.0.0.1", port)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert page is not None and "avfuse_segments_total" in page, err[-3000:]
    assert (other is None) if not_served else (other is not None)
    assert f"Prometheus metrics on http://{argv[-1] if argv else '127.0.0.1'}:{port}/metrics" in err


def test_an_address_not_on_this_machine_is_one_error_line(tmp_path, media, capsys):
    model, clip = media
    port = free_port()
    code = main(["run", str(model), str(clip), "-o", str(tmp_path / "out"), "--no-cache",
                 "--metrics-port", str(port), "--metrics-host", "192.0.2.1"])  # TEST-NET-1: nobody's address
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"avfuse run: error: cannot serve metrics on 192.0.2.1:{port} (")
