"""A long H.264 file cut at IDR frames into ranges (avfuse.stream.media.range_decode): the ranges decoded one by one,
each from its own seek, give exactly the segments of one pass."""

from __future__ import annotations

import numpy as np
import pytest
from media import AudioSpec, VideoSpec, write_media

from avfuse.stream.media.audio_track import AudioTrack, decode_audio_track
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats
from avfuse.stream.media.range_decode import plan_ranges, range_segments
from avfuse.stream.media.segmenter import iter_segments

DECODE = DecodeConfig(fps=4, height=32, width=32, sample_rate=16000)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """30 s of 64x48 H.264 at 10 fps, an IDR frame every 2 s, with a mono AAC tone."""
    return write_media(tmp_path_factory.mktemp("long") / "long.mp4",
                       video=VideoSpec(frames=300, fps=10, width=64, height=48, codec="libx264", x264=(("g", "20"),)),
                       audio=AudioSpec(duration=30.0, codec="aac", channels=1, rate=16000))


def _same(one, parts) -> None:
    assert [s.index for s in parts] == [s.index for s in one]
    for a, b in zip(one, parts, strict=True):
        assert (a.start, a.end, a.present, a.text) == (b.start, b.end, b.present, b.text), a.index
        assert np.array_equal(a.frames, b.frames), f"frames of window {a.index}"
        assert np.array_equal(a.audio, b.audio), f"audio of window {a.index}"


@pytest.mark.parametrize("segment", [SegmentConfig(window_s=1.0), SegmentConfig(window_s=2.0, hop_s=0.7)],
                         ids=["1s", "2s-hop0.7"])
def test_ranges_give_the_segments_of_one_pass(long_clip, segment):
    ranges = plan_ranges(str(long_clip), segment, range_s=6.0)
    assert len(ranges) >= 4
    assert all(0 < r.seek_s <= r.first * segment.hop for r in ranges[1:])  # each starts at an IDR frame
    assert [r.stop for r in ranges[:-1]] == [r.first for r in ranges[1:]] and ranges[-1].stop is None
    one = list(iter_segments(long_clip, decode=DECODE, segment=segment))
    parts = [s for r in ranges for s in range_segments(str(long_clip), r, decode=DECODE, segment=segment)]
    _same(one, parts)


def test_a_video_only_file_is_cut_too(tmp_path):
    clip = write_media(tmp_path / "v.mp4", video=VideoSpec(frames=200, fps=10, width=64, height=48,
                                                           codec="libx264", x264=(("g", "15"),)))
    segment = SegmentConfig(window_s=1.0)
    ranges = plan_ranges(str(clip), segment, range_s=5.0)
    assert len(ranges) >= 3
    parts = [s for r in ranges for s in range_segments(str(clip), r, decode=DECODE, segment=segment)]
    _same(list(iter_segments(clip, decode=DECODE, segment=segment)), parts)


def test_files_that_cannot_be_cut_are_one_range(tmp_path):
    lossless = write_media(tmp_path / "f.mkv", video=VideoSpec(frames=100, fps=10, codec="ffv1"))
    garbage = tmp_path / "bad.mp4"
    garbage.write_bytes(b"\0" * 5000)
    for path in (lossless, garbage):
        ranges = plan_ranges(str(path), SegmentConfig(window_s=1.0), range_s=2.0)
        assert len(ranges) == 1 and ranges[0].whole


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (48000, 1)], ids=["aac-44.1k-stereo", "aac-48k-mono"])
def test_every_range_has_the_audio_of_one_pass_decoded_once(tmp_path, rate, channels):
    """The file's audio decoded once (an AudioTrack) and shared by every range gives each range exactly one
    pass's samples, and no range decodes audio of its own: one pass's audio frames, counted once."""
    clip = write_media(tmp_path / "a.mp4",
                       video=VideoSpec(frames=240, fps=10, width=64, height=48, codec="libx264", x264=(("g", "20"),)),
                       audio=AudioSpec(duration=24.0, codec="aac", channels=channels, rate=rate, freq=997.0))
    segment = SegmentConfig(window_s=1.0, hop_s=0.6)
    ranges = plan_ranges(str(clip), segment, range_s=5.0)
    assert len(ranges) >= 4
    one_stats = DecodeStats()
    one = list(iter_segments(clip, decode=DECODE, segment=segment, stats=one_stats))
    track = decode_audio_track(clip, decode=DECODE, segment=segment)
    asked: list[int] = []

    def shared() -> AudioTrack:
        asked.append(1)
        return track

    stats = [DecodeStats() for _ in ranges]
    parts = [s for r, st in zip(ranges, stats, strict=True)
             for s in range_segments(str(clip), r, decode=DECODE, segment=segment, audio=shared, stats=st)]
    _same(one, parts)
    assert all(s.present.audio for s in parts)
    assert len(asked) == len(ranges)  # every range took the shared track
    assert [st.audio_frames for st in stats] == [0] * len(ranges)  # none decoded audio itself
    assert track.stats.audio_frames == one_stats.audio_frames > 0  # the track is one pass's audio
    # each range decodes its own video: from its IDR frame (a GOP of 20 frames at most before its first
    # window) to the frame that closes its last window, not on to the end of the file
    assert one_stats.video_frames <= sum(st.video_frames for st in stats) <= one_stats.video_frames + 20 * len(ranges)


def test_a_range_without_a_track_decodes_the_audio_itself(long_clip):
    segment = SegmentConfig(window_s=1.0)
    rng = plan_ranges(str(long_clip), segment, range_s=6.0)[2]
    stats = DecodeStats()
    alone = list(range_segments(str(long_clip), rng, decode=DECODE, segment=segment, stats=stats))
    shared = list(range_segments(str(long_clip), rng, decode=DECODE, segment=segment,
                                 audio=decode_audio_track(long_clip, decode=DECODE, segment=segment)))
    _same(alone, shared)
    assert stats.audio_frames > 0
