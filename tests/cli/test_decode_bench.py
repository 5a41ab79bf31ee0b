"""avfuse bench decode: the looped input has continuous timestamps, and the command prints a ratio.
(No timing is asserted: speed claims come from running the bench, not from tests.)"""

from __future__ import annotations

import shutil

import pytest
from media import AudioSpec, VideoSpec, frame_index, write_media

from avfuse.stream.cli.bench_decode import loop_clip
from avfuse.stream.cli.main import main
from avfuse.stream.media.segmenter import iter_segments


def test_loop_clip_is_continuous(tmp_path):
    src = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=8), audio=AudioSpec(duration=2.0, channels=1))
    length = loop_clip(src, tmp_path / "looped.mkv", 5.0)
    assert length == pytest.approx(6.0, abs=0.01)  # three loops of 2 s
    segs = list(iter_segments(tmp_path / "looped.mkv"))
    assert [s.start for s in segs] == [0.0, 2.0, 4.0]
    assert all([frame_index(f) for f in s.frames] == list(range(8)) for s in segs)
    assert all(s.present.audio and abs(s.audio[:1000]).max() > 0.3 and abs(s.audio[-1000:]).max() > 0.3 for s in segs)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command line")
def test_bench_command_prints_both_sides_and_the_ratio(tmp_path, capsys):
    src = write_media(tmp_path / "clip.mp4", video=VideoSpec(frames=16, codec="libx264"),
                      audio=AudioSpec(duration=3.9, codec="aac"))
    assert main(["bench", "decode", str(src), "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "avfuse " in out and "ffmpeg " in out and "ratio (avfuse / ffmpeg throughput):" in out
    assert "2 segments of 8 frames 160x160 + 2 s of 16 kHz audio" in out


def test_bench_without_ffmpeg_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no ffmpeg on it
    assert main(["bench", "decode", "--repeat", "1"]) != 0
    assert "apt-get install ffmpeg" in capsys.readouterr().err
