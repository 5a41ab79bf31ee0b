"""Captions: sidecar files and embedded subtitle streams, parsed with pysubs2 and FFmpeg."""

from __future__ import annotations

import pytest
from media import VideoSpec, write_media, write_sidecar

from stream.captions import Captions, embedded_captions, load_captions, sidecar_for
from stream.decode import open_container
from stream.errors import CaptionError
from stream.segmenter import iter_segments

LINES = [(0.5, 1.2, "Hello <b>world</b>"), (2.5, 3.0, "second\nline"), (3.5, 5.0, "{\\i1}third{\\i0}")]
PLAIN = ["Hello world", "second line", "third"]


def test_text_between_is_half_open_and_joined():
    caps = Captions(((1.0, 2.0, "a"), (0.0, 1.0, "z"), (1.5, 4.0, "b"), (4.0, 5.0, "c")))
    assert caps.events[0] == (0.0, 1.0, "z")
    assert caps.text_between(1.0, 2.0) == "a b"
    assert caps.text_between(2.0, 4.0) == "b"
    assert caps.text_between(0.2, 0.4) == "z"
    assert caps.text_between(5.0, 7.0) == ""


@pytest.mark.parametrize("suffix", [".srt", ".vtt", ".ass"])
def test_sidecar_formats(tmp_path, suffix):
    write_sidecar(tmp_path / f"clip{suffix}", LINES if suffix != ".vtt" else LINES[:2])
    caps = load_captions(tmp_path / f"clip{suffix}")
    expected = PLAIN if suffix != ".vtt" else PLAIN[:2]
    assert [t for _, _, t in caps.events] == expected
    assert caps.events[0][:2] == (0.5, 1.2)


def test_sidecar_is_found_beside_the_video_and_used(tmp_path):
    video = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=24))
    assert sidecar_for(video) is None
    write_sidecar(tmp_path / "clip.srt", LINES)
    assert sidecar_for(video) == tmp_path / "clip.srt"
    segs = list(iter_segments(video))
    assert [s.text for s in segs] == ["Hello world", "second line third", "third"]
    assert [s.present.text for s in segs] == [True, True, True]


def test_explicit_caption_file_overrides_sidecar(tmp_path):
    video = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=8))
    write_sidecar(tmp_path / "clip.srt", LINES)
    other = write_sidecar(tmp_path / "other.vtt", [(0.0, 0.5, "override")])
    (seg,) = list(iter_segments(video, captions=other))
    assert seg.text == "override"


@pytest.mark.parametrize("suffix,codec", [(".mkv", "subrip"), (".mkv", "ass"), (".mkv", "webvtt"),
                                          (".mp4", "mov_text")])
def test_embedded_subtitle_streams(tmp_path, suffix, codec):
    lines = [(0.5, 1.2, "Hello <b>world</b>" if codec != "ass" else "Hello {\\b1}world{\\b0}"),
             (2.5, 3.0, "second")]
    vcodec = "libx264" if suffix == ".mp4" else "ffv1"
    path = write_media(tmp_path / f"sub{suffix}", video=VideoSpec(frames=16, codec=vcodec), captions=lines,
                       caption_codec=codec)
    with open_container(path) as c:
        caps = embedded_captions(c)
    assert caps is not None
    assert [(round(s, 3), round(e, 3), t) for s, e, t in caps.events] == [(0.5, 1.2, "Hello world"),
                                                                          (2.5, 3.0, "second")]
    segs = list(iter_segments(path))
    assert [s.text for s in segs] == ["Hello world", "second"]


def test_embedded_captions_follow_a_nonzero_start(tmp_path):
    path = write_media(tmp_path / "late.mkv", video=VideoSpec(frames=8, start=10.0),
                       captions=[(10.5, 11.0, "shifted")])
    (seg,) = list(iter_segments(path))
    assert seg.start == 0.0 and seg.text == "shifted"


def test_no_subtitles_gives_none(tmp_path):
    with open_container(write_media(tmp_path / "v.mkv", video=VideoSpec(frames=4))) as c:
        assert embedded_captions(c) is None


def test_bad_caption_files(tmp_path):
    with pytest.raises(CaptionError, match="not found"):
        load_captions(tmp_path / "missing.srt")
    (tmp_path / "bad.srt").write_bytes(b"\x00\x01garbage\xff" * 50)
    with pytest.raises(CaptionError, match="bad.srt"):
        load_captions(tmp_path / "bad.srt")
