"""avfuse probe: streams, duration, captions and a segment count that matches what decoding gives."""

from __future__ import annotations

import json

import pytest
from media import AudioSpec, VideoSpec, write_media, write_sidecar

from avfuse.stream.cli.main import main
from avfuse.stream.media.config import SegmentConfig
from avfuse.stream.media.probe import probe
from avfuse.stream.media.segmenter import iter_segments

CASES = {
    "av.mkv": dict(video=VideoSpec(frames=10, width=175, height=143), audio=AudioSpec(duration=2.5)),
    "late.mp4": dict(video=VideoSpec(frames=9, codec="libx264", start=10.0),
                     audio=AudioSpec(duration=1.9, codec="aac", start=10.5)),
    "audio.flac": dict(audio=AudioSpec(duration=4.2, channels=1)),
    "video.mkv": dict(video=VideoSpec(frames=17)),
    "vfr.mkv": dict(video=VideoSpec(times=(0.0, 0.3, 2.0, 4.1))),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("hop", [None, 0.75])
def test_segment_count_matches_decoding(tmp_path, name, hop):
    path = write_media(tmp_path / name, **CASES[name])
    segment = SegmentConfig(hop_s=hop)
    result = probe(str(path), segment=segment)
    assert result.exact
    assert result.segments == len(list(iter_segments(path, segment=segment)))


def test_streams_and_duration(tmp_path):
    path = write_media(tmp_path / "x.mkv", video=VideoSpec(frames=10, width=175, height=143),
                       audio=AudioSpec(duration=2.5, rate=44100, channels=1), captions=[(0.1, 0.5, "hi")])
    r = probe(str(path))
    video, audio, sub = r.streams
    assert (video.codec, video.width, video.height, video.fps) == ("ffv1", 175, 143, 4.0)
    assert (audio.codec, audio.sample_rate, audio.channels) == ("flac", 44100, 1)
    assert sub.type == "subtitle" and r.caption_events == 1 and r.sidecar is None
    assert r.duration == pytest.approx(2.5, abs=0.01) and r.start == 0.0


def test_cli_text_and_json(tmp_path, capsys):
    path = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=12))
    write_sidecar(tmp_path / "clip.srt", [(0.0, 1.0, "a"), (1.0, 2.0, "b")])
    assert main(["probe", str(path), "--window", "1", "--fps", "2"]) == 0
    out = capsys.readouterr().out
    assert "video #0: ffv1 64x48 4 fps" in out and "no audio" in out
    assert "sidecar" in out and "(2 events)" in out
    assert "segments: 3 (fps 2, window 1 s, hop 1 s: 2 frames of 160x160 and 16000 samples each)" in out
    assert main(["probe", str(path), "--hop", "0.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["segments"] == 5 and data["sidecar"].endswith("clip.srt")  # 3 s: the window at 2.5 s is 1/4 real


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["probe", str(tmp_path / "missing.mp4")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.mp4: no such file" in err[0]


def test_unreadable_sidecar_is_reported_not_hidden(tmp_path, caplog):
    path = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=8))
    (tmp_path / "clip.srt").write_bytes(b"\x00\x01garbage\xff" * 50)
    r = probe(str(path))
    assert r.caption_events == 0 and r.segments == 1
    assert "clip.srt" in caplog.text and "not a readable caption file" in caplog.text
