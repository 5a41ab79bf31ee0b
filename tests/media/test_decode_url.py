"""Network sources: a real local HTTP server, and a TCP server that accepts and then stalls."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time

import pytest
from media import AudioSpec, VideoSpec, frame_index, write_media, write_sidecar

from avfuse.stream.errors import SourceError
from avfuse.stream.media.segmenter import iter_segments


@pytest.fixture
def http_dir(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_segments_over_http(http_dir):
    root, base = http_dir
    write_media(root / "clip.mkv", video=VideoSpec(frames=12), audio=AudioSpec(duration=3.0))
    captions = write_sidecar(root / "captions.srt", [(2.0, 3.0, "over http")])
    segs = list(iter_segments(f"{base}/clip.mkv", captions=captions, timeout=5))
    assert [s.start for s in segs] == [0.0, 2.0]
    assert [frame_index(f) for f in segs[0].frames] == list(range(8))
    assert segs[0].source == f"{base}/clip.mkv"
    assert [s.text for s in segs] == ["", "over http"] and all(s.present.audio for s in segs)


def test_missing_url_is_a_source_error(http_dir):
    _, base = http_dir
    with pytest.raises(SourceError, match=r"nothing.mkv"):
        list(iter_segments(f"{base}/nothing.mkv", timeout=5))


def test_stalled_server_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(SourceError, match=r"127.0.0.1"):
            list(iter_segments(f"http://127.0.0.1:{listener.getsockname()[1]}/stall.mkv", timeout=0.5))
    finally:
        listener.close()
        for conn, _ in accepted:
            conn.close()
    assert time.monotonic() - start < 10


def test_file_url_is_opened_by_ffmpeg(tmp_path):
    path = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=8))
    (seg,) = list(iter_segments(f"file:{path}"))
    assert seg.source == f"file:{path}" and [frame_index(f) for f in seg.frames] == list(range(8))


def test_a_url_with_credentials_that_fails_names_it_without_them(caplog):
    caplog.set_level("DEBUG")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(SourceError) as info:
        next(iter_segments(f"http://bob:hunter2-pw@127.0.0.1:{port}/clip.mkv?token=tok-xyz", timeout=2))
    text = str(info.value) + repr(info.value.__cause__) + caplog.text
    assert f"http://***@127.0.0.1:{port}/clip.mkv" in str(info.value)
    assert "hunter2-pw" not in text and "tok-xyz" not in str(info.value)
