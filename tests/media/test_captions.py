"""Captions: sidecar files and embedded subtitle streams, parsed with pysubs2 and FFmpeg."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from media import VideoSpec, write_media, write_sidecar
from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main
from avfuse.stream.errors import CaptionError
from avfuse.stream.media.captions import Captions, embedded_captions, load_captions, read_captions, sidecar_for
from avfuse.stream.media.decode import open_container
from avfuse.stream.media.probe import probe
from avfuse.stream.media.segmenter import iter_segments

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


def test_bad_caption_files(tmp_path, caplog):
    with pytest.raises(CaptionError, match="not found"):
        load_captions(tmp_path / "missing.srt")
    (tmp_path / "bad.srt").write_bytes(b"\x00\x01garbage\xff" * 50)
    with pytest.raises(CaptionError, match=r"bad.srt: not a readable caption file"):
        read_captions(tmp_path / "bad.srt")
    assert len(load_captions(tmp_path / "bad.srt")) == 0
    assert "bad.srt: not a readable caption file (binary data, not text); used as no captions" in caplog.text


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32", "latin-1", "cp1252"])
@pytest.mark.parametrize("suffix", [".srt", ".ass"])
def test_sidecar_in_any_detectable_encoding_is_read(tmp_path, caplog, suffix, encoding):
    text = "Café crème, «ça va» – 20 €" if encoding == "cp1252" else "Café crème, «ça va»"
    video = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=8))
    sidecar = write_sidecar(tmp_path / f"clip{suffix}", [(0.5, 1.5, text)])
    data = sidecar.read_text(encoding="utf-8")
    bom = "\ufeff" if encoding == "utf-16-be" else ""  # Python's utf-16 / utf-32 codecs write a BOM themselves
    sidecar.write_bytes((bom + data).encode(encoding))
    assert [s.text for s in iter_segments(video)] == [text]
    assert probe(str(video)).caption_events == 1
    assert "caption" not in caplog.text


def _not_a_caption_file(path: Path, kind: str) -> None:
    if kind == "directory":
        path.mkdir()
    elif kind == "broken link":
        path.symlink_to(path.parent / "nowhere.srt")
    else:
        path.write_bytes({"empty": b"", "blank": b"\r\n \n", "binary": bytes(range(256)) * 40,
                          "words": b"no subtitles here, just words\n", "odd utf-16": b"\xff\xfeH\x00i"}[kind])


@pytest.mark.parametrize("kind", ["empty", "blank", "binary", "words", "odd utf-16", "directory", "broken link"])
def test_a_sidecar_that_cannot_be_read_never_fails_its_video(tmp_path, caplog, kind):
    video = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=8))
    _not_a_caption_file(tmp_path / "clip.srt", kind)
    segs = list(iter_segments(video))
    assert [(s.text, s.present.text) for s in segs] == [("", False)]
    assert probe(str(video)).caption_events == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "clip.srt" in r.getMessage()]
    # an empty file is a valid file with no captions (a silent video); the others are each reported
    assert len(warned) == (0 if kind in ("empty", "blank") else 2)  # once by the run, once by probe


def test_a_sidecar_that_is_not_a_file_leaves_the_next_one_in_use(tmp_path):
    video = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=8))
    (tmp_path / "clip.srt").mkdir()
    write_sidecar(tmp_path / "clip.vtt", [(0.0, 1.0, "from the vtt")])
    assert [s.text for s in iter_segments(video)] == ["from the vtt"]


def test_run_and_probe_agree_on_an_undecodable_sidecar(tmp_path, capsys):
    model = colour_model(tmp_path / "colour.onnx")
    video = colour_video(tmp_path / "clip.mp4", ["red", "green"], audio=False)
    (tmp_path / "clip.srt").write_bytes(b"\x00\x01garbage\xff" * 50)
    assert main(["probe", str(video), "--window", "1", "--json"]) == 0  # the colour model's window
    probed = json.loads(capsys.readouterr().out)
    assert main(["run", str(model), str(video), "-o", str(tmp_path / "out"), "--no-cache"]) == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "clip.mp4.jsonl").read_text().splitlines()]
    segments = [r for r in records if r["type"] == "segment"]
    assert [r["label"] for r in segments] == ["red", "green"] and len(segments) == probed["segments"]
    assert probed["caption_events"] == 0 and all(not r["present"]["text"] for r in segments)
    assert "1 ok, 0 failed" in capsys.readouterr().err
