"""Sources that cannot be used give one clear, typed error naming the path and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from media import AudioSpec, VideoSpec, truncate, write_garbage, write_media, write_sidecar

from avfuse.stream.errors import AvfuseError, CodecError, MediaError, SourceError
from avfuse.stream.media.decode import open_container
from avfuse.stream.media.segmenter import iter_segments


def segments_error(path) -> AvfuseError:
    with pytest.raises(AvfuseError) as info:
        list(iter_segments(path))
    assert str(path) in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    e = segments_error(tmp_path / "nope.mp4")
    assert isinstance(e, SourceError) and isinstance(e, OSError) and "no such file" in str(e)


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").touch()
    e = segments_error(tmp_path / "empty.mp4")
    assert isinstance(e, SourceError) and "empty" in str(e)


def test_directory(tmp_path):
    e = segments_error(tmp_path)
    assert isinstance(e, SourceError) and "directory" in str(e)


def test_garbage_bytes(tmp_path):
    e = segments_error(write_garbage(tmp_path / "noise.mp4"))
    assert type(e) is MediaError and isinstance(e, ValueError) and "not a readable media file" in str(e)
    assert e.__cause__ is not None  # raised from PyAV's error


def test_text_file_with_a_media_name(tmp_path):
    (tmp_path / "notes.mkv").write_text("these are not frames\n" * 100)
    e = segments_error(tmp_path / "notes.mkv")
    assert isinstance(e, MediaError)


def test_subtitles_only_is_not_media(tmp_path):
    e = segments_error(write_sidecar(tmp_path / "only.srt", [(0.0, 1.0, "hi")]))
    assert isinstance(e, MediaError) and "no video or audio stream" in str(e)


def test_truncated_mp4_without_its_index(tmp_path):
    full = write_media(tmp_path / "full.mp4", video=VideoSpec(frames=40, codec="libx264"),
                       audio=AudioSpec(duration=10, codec="aac"))
    e = segments_error(truncate(full, tmp_path / "cut.mp4"))
    assert isinstance(e, MediaError)


@pytest.mark.parametrize("suffix,options", [(".mkv", None), (".mp4", {"movflags": "faststart"})])
def test_truncated_file_is_reported_after_its_data(tmp_path, suffix, options):
    vcodec = "ffv1" if suffix == ".mkv" else "libx264"
    acodec = "flac" if suffix == ".mkv" else "aac"
    full = write_media(tmp_path / f"full{suffix}", video=VideoSpec(frames=40, codec=vcodec),
                       audio=AudioSpec(duration=10, codec=acodec), container_options=options)
    cut = truncate(full, tmp_path / f"cut{suffix}")
    got = []
    with pytest.raises(MediaError, match="truncated") as info:
        for seg in iter_segments(cut):
            got.append(seg)
    assert str(cut) in str(info.value) and "10.00 s" in str(info.value)
    assert len(got) >= 1  # what was there was decoded before the error


def test_unknown_codec(tmp_path):
    path = write_media(tmp_path / "v.avi", video=VideoSpec(frames=8))
    data = Path(path).read_bytes()
    assert data.count(b"FFV1") >= 1
    (tmp_path / "alien.avi").write_bytes(data.replace(b"FFV1", b"ZZZ9"))
    e = segments_error(tmp_path / "alien.avi")
    assert isinstance(e, CodecError) and "cannot decode" in str(e) and "video stream #0" in str(e)


def test_unreachable_url():
    with pytest.raises(SourceError, match=r"127.0.0.1:9"):
        open_container("rtsp://127.0.0.1:9/none", timeout=2)
