"""One decode plan per file, chosen once (avfuse.stream.media.decode_plan): which path a file takes, and that
the file is opened only as often as that path needs."""

from __future__ import annotations

import av
import pytest
from media import AudioSpec, VideoSpec, write_media
from test_gop_decode import TWO, h264

from avfuse.stream.media.config import DecodeConfig
from avfuse.stream.media.decode import open_container
from avfuse.stream.media.decode_plan import plan_decode
from avfuse.stream.media.segmenter import iter_segments

ONE_THREAD = DecodeConfig(height=32, width=32, threads=1)


@pytest.fixture()
def opens(monkeypatch):
    """The files av.open really opened (PyAV does the work; this only writes down each call's file)."""
    seen: list[str] = []
    real = av.open

    def counting(file, *args, **kwargs):
        seen.append(str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting)
    return seen


CASES = [  # (name, writer args, decode config, plan name)
    ("h264-aac", dict(video=h264(100), audio=AudioSpec(duration=4.0, codec="aac")), TWO, "gop+audio"),
    ("h264", dict(video=h264(100)), TWO, "gop"),
    ("h264-one-thread", dict(video=h264(100), audio=AudioSpec(duration=4.0, codec="aac")), ONE_THREAD, "split"),
    ("mpeg4-aac", dict(video=VideoSpec(frames=100, fps=25), audio=AudioSpec(duration=4.0, codec="aac")), TWO, "split"),
    ("mpeg4", dict(video=VideoSpec(frames=100, fps=25)), TWO, "one"),
    ("aac", dict(audio=AudioSpec(duration=4.0, codec="aac")), TWO, "one"),
]


@pytest.mark.parametrize("name,media,decode,plan_name", CASES, ids=[c[0] for c in CASES])
def test_each_file_is_opened_only_as_often_as_its_plan_needs(tmp_path, opens, name, media, decode, plan_name):
    path = write_media(tmp_path / f"{name}.{'m4a' if 'video' not in media else 'mp4'}", **media)
    with open_container(path) as c:
        plan = plan_decode(path, c, decode)
    assert plan.name == plan_name
    del opens[:]
    segments = list(iter_segments(path, decode=decode))
    assert len(segments) == 2
    assert len(opens) == plan.opens()
    if plan.gop_workers:
        assert plan.gop_workers == 2 and plan.opens() == 4  # first open (the audio, if any) + scan + 2 workers
    else:
        assert plan.opens() == (2 if plan.split else 1)
