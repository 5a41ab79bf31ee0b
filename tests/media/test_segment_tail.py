"""No phantom windows: a window exists only where real media covers ``SegmentConfig.min_coverage`` of it,
and the last one ends where the media really ends. AAC pads its last frame (a 6.0 s file decodes to
6.016 s), which used to give every such file one extra, nearly empty window past its end."""

from __future__ import annotations

import math
import threading

import av
import numpy as np
import pytest
from media import AudioSpec, VideoSpec, write_media

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, configs_from_metadata, decode_metadata
from avfuse.stream.media.decode import DecodeStats, decode_items, media_streams, open_container
from avfuse.stream.media.live import LiveSource
from avfuse.stream.media.probe import probe
from avfuse.stream.media.segmenter import Segmenter, iter_segments

FPS = 25
FRAME_S = 1 / FPS
DECODE = DecodeConfig(height=16, width=16)


def h264(seconds: float, *, start: float = 0.0) -> VideoSpec:
    """H.264 at 25 fps with an IDR frame every 10 frames (so the GOP workers take it)."""
    return VideoSpec(frames=round(seconds * FPS), fps=FPS, codec="libx264", width=32, height=24, start=start,
                     x264=(("g", "10"),))


def aac(seconds: float, *, start: float = 0.0) -> AudioSpec:
    return AudioSpec(duration=seconds, codec="aac", channels=1, start=start)


def duration_of(path) -> float:
    """What a player shows as the file's length: the container's duration."""
    with av.open(str(path)) as c:
        return c.duration / av.time_base


def one_pass(path, decode: DecodeConfig, segment: SegmentConfig) -> list:
    """The segments of one thread decoding both streams from one demuxer (no split, no GOP workers)."""
    with open_container(path) as c:
        video, audio = media_streams(c)
        seg = Segmenter(source=str(path), decode=decode, segment=segment, has_video=video is not None,
                        has_audio=audio is not None)
        out = [s for item in decode_items(c, decode, DecodeStats(), segment) for s in seg.push(item)]
    return out + seg.finish()


def assert_tail_is_real(segs: list, duration: float, segment: SegmentConfig = SegmentConfig()) -> None:  # noqa: B008
    """What a user would check: the last window ends with the file, none starts at or past its end, and
    each is at least ``min_coverage`` real."""
    assert segs, "no segments"
    assert abs(segs[-1].end - duration) <= FRAME_S, (segs[-1].end, duration)
    assert segs[-1].end <= duration + 1e-6
    assert all(s.start < duration for s in segs)
    assert all(s.end - s.start >= segment.min_coverage * segment.window_s - 1e-6 for s in segs)


@pytest.mark.parametrize("seconds,count", [(5.3, 3), (6.0, 3), (6.02, 3)])
def test_h264_aac_files_give_no_window_for_the_padding(tmp_path, seconds, count):
    path = write_media(tmp_path / "av.mp4", video=h264(seconds), audio=aac(seconds))
    segs = list(iter_segments(path, decode=DECODE))
    assert len(segs) == count
    assert [s.start for s in segs] == [0.0, 2.0, 4.0]
    assert all(s.present.video and s.present.audio for s in segs)
    assert_tail_is_real(segs, duration_of(path))
    assert probe(str(path)).segments == count  # probe says what decoding gives


def test_a_6_s_file_ends_at_6_s_not_8(tmp_path):
    """The case reported: 0-2, 2-4, 4-6 and a phantom 6-8 s holding ~20 ms of AAC padding."""
    path = write_media(tmp_path / "six.mp4", video=h264(6.0), audio=aac(6.0))
    assert [(s.start, s.end) for s in iter_segments(path, decode=DECODE)] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]


def test_audio_only_m4a(tmp_path):
    path = write_media(tmp_path / "song.m4a", audio=aac(6.0))
    segs = list(iter_segments(path, decode=DECODE))
    assert [s.end for s in segs] == [2.0, 4.0, 6.0]
    assert not any(s.present.video for s in segs)


def test_a_short_last_window_ends_at_the_media_end(tmp_path):
    path = write_media(tmp_path / "short.m4a", audio=aac(5.3))
    segs = list(iter_segments(path, decode=DECODE))
    assert [s.start for s in segs] == [0.0, 2.0, 4.0]
    assert segs[-1].end == pytest.approx(5.3, abs=1e-3)  # not 6.0, and not 5.312 (the padded decode)
    assert segs[-1].audio.shape == (32000,)  # still a whole window of samples for the model, zero-padded
    assert np.abs(segs[-1].audio[:20000]).max() > 0.3 and not segs[-1].audio[21000:].any()


def test_audio_longer_than_video(tmp_path):
    path = write_media(tmp_path / "late_end.mp4", video=h264(4.0), audio=aac(6.0))
    segs = list(iter_segments(path, decode=DECODE))
    assert [s.end for s in segs] == [2.0, 4.0, 6.0]
    assert [s.present.video for s in segs] == [True, True, False]
    assert all(s.present.audio for s in segs)


def test_video_longer_than_audio(tmp_path):
    path = write_media(tmp_path / "quiet_end.mp4", video=h264(6.0), audio=aac(4.0))
    segs = list(iter_segments(path, decode=DECODE))
    assert [s.end for s in segs] == [2.0, 4.0, 6.0]
    assert all(s.present.video for s in segs)
    assert [s.present.audio for s in segs] == [True, True, False]  # the AAC padding past 4 s is not audio


def test_one_stray_frame_makes_no_window(tmp_path):
    path = write_media(tmp_path / "stray.mp4", video=h264(6.04))  # frame 150 at 6.0 s, alone past 6 s
    segs = list(iter_segments(path, decode=DECODE))
    assert [s.end for s in segs] == [2.0, 4.0, 6.0]


def test_late_audio_and_a_late_start(tmp_path):
    """An mp4 whose audio starts 0.5 s after its video, and a TS file whose timestamps start at 11.4 s."""
    late = write_media(tmp_path / "late.mp4", video=h264(6.0), audio=aac(5.5, start=0.5))
    ts = write_media(tmp_path / "cam.ts", video=h264(6.0, start=11.4), audio=aac(6.0, start=11.4))
    for path in (late, ts):
        segs = list(iter_segments(path, decode=DECODE))
        assert [s.start for s in segs] == [0.0, 2.0, 4.0], path.name
        assert_tail_is_real(segs, 6.0)


def test_mov_text_captions(tmp_path):
    path = write_media(tmp_path / "subs.mp4", video=h264(6.0), audio=aac(6.0),
                       captions=[(4.5, 6.0, "the end")], caption_codec="mov_text")
    segs = list(iter_segments(path, decode=DECODE))
    assert [(s.end, s.text) for s in segs] == [(2.0, ""), (4.0, ""), (6.0, "the end")]


def test_overlapping_windows_past_the_end(tmp_path):
    path = write_media(tmp_path / "av.mp4", video=h264(6.0), audio=aac(6.0))
    segment = SegmentConfig(hop_s=1.0)
    segs = list(iter_segments(path, decode=DECODE, segment=segment))
    assert [s.start for s in segs] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # 5-7 is half real: kept
    assert [s.end for s in segs] == [2.0, 3.0, 4.0, 5.0, 6.0, 6.0]
    assert probe(str(path), segment=segment).segments == 6


@pytest.mark.parametrize("video,audio", [(6.0, 6.0), (4.0, 6.0), (6.0, 4.0), (5.3, 5.3)])
def test_every_decode_path_gives_the_same_tail(tmp_path, video, audio):
    """One pass, video and audio on two threads, and GOP workers: the same windows, the same last end."""
    path = write_media(tmp_path / "av.mp4", video=h264(video), audio=aac(audio))
    segment = SegmentConfig()
    want = one_pass(path, DecodeConfig(height=16, width=16, threads=1), segment)
    for threads in (1, 2):  # 2: the GOP workers take the video
        got = list(iter_segments(path, decode=DecodeConfig(height=16, width=16, threads=threads), segment=segment))
        assert [(s.start, s.end, s.present) for s in got] == [(s.start, s.end, s.present) for s in want]
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(g.frames, w.frames) and np.array_equal(g.audio, w.audio)
    assert_tail_is_real(want, max(video, audio))


def test_video_only_gop_path_gives_the_same_tail(tmp_path):
    path = write_media(tmp_path / "v.mp4", video=h264(5.28))  # 132 frames
    want = one_pass(path, DecodeConfig(height=16, width=16, threads=1), SegmentConfig())
    got = list(iter_segments(path, decode=DecodeConfig(height=16, width=16, threads=2)))
    assert [(s.start, s.end) for s in got] == [(s.start, s.end) for s in want] == [(0, 2), (2, 4), (4, 5.28)]


@pytest.mark.parametrize("coverage,ends", [(0.1, [2.0, 4.0, 5.3]), (0.5, [2.0, 4.0, 5.3]), (0.7, [2.0, 4.0]),
                                           (1.0, [2.0, 4.0])])
def test_min_coverage_sets_how_much_of_the_last_window_must_be_real(tmp_path, coverage, ends):
    path = write_media(tmp_path / "a.m4a", audio=aac(5.3))
    segment = SegmentConfig(min_coverage=coverage)
    segs = list(iter_segments(path, decode=DECODE, segment=segment))
    assert [s.end for s in segs] == pytest.approx(ends, abs=1e-3)
    assert probe(str(path), segment=segment).segments == len(ends)


def test_media_shorter_than_min_coverage_of_a_window_gives_no_segment(tmp_path):
    path = write_media(tmp_path / "blip.m4a", audio=aac(0.6))
    assert list(iter_segments(path, decode=DECODE)) == []
    assert [s.end for s in iter_segments(path, decode=DECODE, segment=SegmentConfig(min_coverage=0.25))] == \
        [pytest.approx(0.6, abs=1e-3)]


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.01, 2, math.nan])
def test_min_coverage_out_of_range_is_one_clear_error(bad):
    with pytest.raises(ConfigError, match=r"min_coverage must be a share of the window in \(0, 1\], got"):
        SegmentConfig(min_coverage=bad)


def test_min_coverage_is_saved_in_the_model_metadata_and_read_back():
    decode, segment = DecodeConfig(fps=2.0), SegmentConfig(window_s=1.0, hop_s=0.5, min_coverage=0.75)
    meta = decode_metadata(decode, segment)
    assert meta["min_coverage"] == 0.75
    assert configs_from_metadata(meta) == (decode, segment)
    older = {k: v for k, v in meta.items() if k != "min_coverage"}  # a model exported before the key
    assert configs_from_metadata(older)[1].min_coverage == SegmentConfig().min_coverage == 0.5
    with pytest.raises(ConfigError, match=r"avfuse.decode metadata") as e:
        configs_from_metadata(meta | {"min_coverage": 3})
    assert "min_coverage" in str(e.value.__cause__) and "got 3.0" in str(e.value.__cause__)


def test_training_data_follows_the_same_rule(tmp_path):
    from avfuse.models.data import file_segments

    path = write_media(tmp_path / "six.mp4", video=h264(6.0), audio=aac(6.0))
    arrays = file_segments(path, decode=DECODE, segment=SegmentConfig(), cache_dir=None)
    assert arrays["starts"].tolist() == [0.0, 2.0, 4.0] and arrays["ends"].tolist() == [2.0, 4.0, 6.0]
    assert arrays["present"][:, 0].all()  # no window without video


@pytest.mark.timeout(60)
def test_a_looped_file_at_its_end_follows_the_same_rule(tmp_path):
    """A file played as if live: each pass ends with the media (a short last window ends at 2.6 s, the
    padding past it gives none), and the next pass goes on from there."""
    path = write_media(tmp_path / "loop.mp4", video=h264(2.6), audio=aac(2.6))
    source = LiveSource(path, decode=DECODE, segment=SegmentConfig(window_s=1.0), loop_file=True, speed=20.0)
    stop, segs = threading.Event(), []
    timer = threading.Timer(50, stop.set)
    timer.start()
    try:
        for item in source.segments(stop):
            segs.append(item)
            if len(segs) == 6:
                break
    finally:
        timer.cancel()
        stop.set()
    assert [s.start for s in segs] == pytest.approx([0, 1, 2, 2.6, 3.6, 4.6], abs=1e-3)
    assert [s.end for s in segs] == pytest.approx([1, 2, 2.6, 3.6, 4.6, 5.2], abs=1e-3)
    assert all(s.present.video and s.present.audio for s in segs)
