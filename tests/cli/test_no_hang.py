"""No hang anywhere: a server that accepts and never answers (as PyAV's test_timeout.py) bounds an http://
file in ``avfuse run`` and an RTSP URL in ``avfuse probe`` by --timeout, Ctrl-C stops the run within
seconds while FFmpeg is stuck in that open, and the sources after it are still labelled. An HLS VOD
playlist is read once, as a file; a live one stays live."""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from avfuse.stream.run.sources import Source

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
pytestmark = pytest.mark.timeout(90)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "avfuse", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_silent_http_file_fails_after_the_timeout_and_the_next_source_is_labelled(silent_server, colour_onnx,
                                                                                    h264_clip, tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    proc = _cli("run", str(colour_onnx), f"http://127.0.0.1:{silent_server}/stalled.mp4", str(h264_clip),
                "-o", str(out), "--no-cache", "--timeout", "1")
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 30, err[-2000:]
    assert proc.returncode == 1, err[-2000:]  # the stalled source failed, the run did not hang
    stalled = _records(out / "stalled.mp4.jsonl")
    assert [r["type"] for r in stalled] == ["error"]
    segs = [r for r in _records(out / "cam.mp4.jsonl") if r["type"] == "segment"]
    assert [r["index"] for r in segs] == list(range(8))


def test_ctrl_c_stops_a_run_stuck_opening_a_silent_http_file_within_seconds(silent_server, colour_onnx, tmp_path):
    proc = _cli("run", str(colour_onnx), f"http://127.0.0.1:{silent_server}/stalled.mp4",
                "-o", str(tmp_path / "out"), "--no-cache", "--timeout", "60")
    time.sleep(3.0)  # the model is loaded and FFmpeg waits for the silent server
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5.0, err[-2000:]
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert not (tmp_path / "out" / "stalled.mp4.jsonl").exists()  # not complete: never under its final name


def test_probe_of_a_silent_rtsp_server_gives_up_with_its_default_timeout(silent_server):
    started = time.monotonic()
    proc = _cli("probe", f"rtsp://user:pw-secret@127.0.0.1:{silent_server}/cam")
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 15, err
    assert proc.returncode == 1 and f"rtsp://***@127.0.0.1:{silent_server}/cam" in err and "pw-secret" not in err


@pytest.fixture
def hls(tmp_path, h264_clip, request):
    """An HTTP server on 127.0.0.1 serving the clip as an HLS VOD playlist (vod.m3u8) and the same
    segments as a live playlist, one without #EXT-X-ENDLIST (live.m3u8)."""
    folder = tmp_path / "hls"
    folder.mkdir()
    with av.open(str(h264_clip)) as src, av.open(str(folder / "vod.m3u8"), "w", format="hls",
                                            options={"hls_time": "1", "hls_playlist_type": "vod"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in (src.streams.video[0], src.streams.audio[0])}
        for packet in src.demux(*src.streams.video, *src.streams.audio):
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    vod = (folder / "vod.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in vod
    (folder / "live.m3u8").write_text(vod.replace("#EXT-X-ENDLIST", "").replace("#EXT-X-PLAYLIST-TYPE:VOD\n", ""))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    request.addfinalizer(server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_an_hls_vod_playlist_is_labelled_once_as_a_file_and_a_live_one_stays_live(hls, colour_onnx,
                                                                                   tmp_path):
    assert Source(name=f"{hls}/live.m3u8").live and not Source(name=f"{hls}/vod.m3u8").live
    out = tmp_path / "out"
    started = time.monotonic()
    proc = _cli("run", str(colour_onnx), f"{hls}/vod.m3u8", "-o", str(out), "--no-cache")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and time.monotonic() - started < 40, err[-2000:]
    segs = [r for r in _records(out / "vod.m3u8.jsonl") if r["type"] == "segment"]  # final name: finished
    assert [r["index"] for r in segs] == list(range(8))  # the 4 s once, not replayed
    assert all(r["wallclock"] is None for r in segs)  # labelled as a file, not as a live stream
