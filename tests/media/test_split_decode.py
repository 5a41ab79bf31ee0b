"""Files with video and audio are decoded on two threads (avfuse.stream.media.split_decode): the segments must be
exactly those of one thread decoding both streams from one demuxer."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from media import AudioSpec, VideoSpec, write_media

from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats, decode_items, media_streams, open_container
from avfuse.stream.media.sample_clips import real_clip
from avfuse.stream.media.segmenter import Segmenter, iter_segments


def one_thread_segments(path, decode: DecodeConfig, segment: SegmentConfig) -> tuple[list, DecodeStats]:
    stats = DecodeStats()
    with open_container(path) as c:
        video, audio = media_streams(c)
        seg = Segmenter(source=str(path), decode=decode, segment=segment, has_video=video is not None,
                        has_audio=audio is not None)
        out = [s for item in decode_items(c, decode, stats, segment) for s in seg.push(item)]
    return out + seg.finish(), stats


def assert_same(got: list, want: list) -> None:
    assert len(got) == len(want) > 1
    for g, w in zip(got, want, strict=True):
        assert (g.index, g.start, g.end, g.present) == (w.index, w.start, w.end, w.present)
        assert np.array_equal(g.frames, w.frames) and np.array_equal(g.audio, w.audio)


@pytest.mark.parametrize("audio_start,hop,frames", [(0.0, None, 150), (0.7, 0.75, 150), (-0.4, 1.5, 150),
                                                    (0.0, None, 50)])
def test_two_threads_give_the_segments_of_one(tmp_path, audio_start, hop, frames):
    """H.264 with B-frames and AAC that starts before, with, or after the video, or outlasts it by 3.5 s
    (the windows after the video repeat its last frame, which the video thread must hand on)."""
    path = write_media(tmp_path / "av.mp4",
                       video=VideoSpec(frames=frames, fps=25, codec="libx264", width=96, height=64,
                                       start=max(0.0, -audio_start)),
                       audio=AudioSpec(duration=5.5, codec="aac", start=max(0.0, audio_start), freq=0))
    decode, segment = DecodeConfig(height=32, width=32), SegmentConfig(hop_s=hop)
    stats = DecodeStats()
    got = list(iter_segments(path, decode=decode, segment=segment, stats=stats))
    want, want_stats = one_thread_segments(path, decode, segment)
    assert_same(got, want)
    assert stats == want_stats and stats.video_frames == frames and stats.audio_frames > 0


def test_two_threads_on_the_real_clip():
    path = real_clip("bigbuckbunny")
    decode = DecodeConfig(height=48, width=48)
    got = list(iter_segments(path, decode=decode))
    want, _ = one_thread_segments(path, decode, SegmentConfig())
    assert_same(got, want)
    assert all(s.present.video and s.present.audio for s in got)


def test_stopping_early_stops_both_threads(tmp_path):
    path = write_media(tmp_path / "long.mkv", video=VideoSpec(frames=400, fps=25, width=32, height=24),
                       audio=AudioSpec(duration=16))
    it = iter_segments(path, decode=DecodeConfig(queue_size=1, height=16, width=16))
    assert next(it).index == 0
    assert any(t.name.startswith("decode-") for t in threading.enumerate())
    it.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("decode-") and t.is_alive()]


def test_decoder_threads_default_to_the_usable_cores():
    """FFmpeg's own auto picks a thread more than there are cores, which only contends on two."""
    import os

    from avfuse.stream.media.decode import decoder_threads

    assert decoder_threads(DecodeConfig()) == min(16, len(os.sched_getaffinity(0)))
    assert decoder_threads(DecodeConfig(threads=3)) == 3
