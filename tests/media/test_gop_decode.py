"""H.264 files whose GOPs are short and free of B-frames decode one GOP per thread (avfuse.stream.media.gop_decode):
the segments must be exactly those of one thread decoding the file from start to end."""

from __future__ import annotations

import threading

import pytest
from media import AudioSpec, VideoSpec, frame_index, irregular_times, write_media
from test_split_decode import assert_same, one_thread_segments

from avfuse.stream.errors import MediaError
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats
from avfuse.stream.media.gop_decode import gop_workers
from avfuse.stream.media.sample_clips import real_clip
from avfuse.stream.media.segmenter import iter_segments

TWO = DecodeConfig(height=32, width=32, threads=2)  # two workers whatever the machine has


def h264(frames=150, *, gop="10", times=None, start=0.0, **x264) -> VideoSpec:
    return VideoSpec(frames=frames, fps=25, times=times, codec="libx264", width=96, height=64, start=start,
                     x264=(("g", gop), *x264.items()))


def check(path, decode=TWO, segment=SegmentConfig(), workers=2) -> list:  # noqa: B008 (frozen)
    assert gop_workers(path, decode) == workers
    stats = DecodeStats()
    got = list(iter_segments(path, decode=decode, segment=segment, stats=stats))
    want, want_stats = one_thread_segments(path, decode, segment)
    assert_same(got, want)
    assert stats == want_stats
    return got


@pytest.mark.parametrize("audio_start,hop,frames", [(0.0, None, 150), (0.7, 0.75, 150), (-0.4, 1.5, 150),
                                                    (0.0, None, 50)])
def test_gops_on_two_threads_give_the_segments_of_one(tmp_path, audio_start, hop, frames):
    """An IDR frame every 10 frames (0.4 s); AAC starting before, with or after the video, or outlasting it."""
    path = write_media(tmp_path / "av.mp4", video=h264(frames, start=max(0.0, -audio_start)),
                       audio=AudioSpec(duration=5.5, codec="aac", start=max(0.0, audio_start), freq=0))
    segs = check(path, segment=SegmentConfig(hop_s=hop))
    assert len(segs) >= 3 and segs[0].present.video and segs[0].frames.any()


# frames alone in the tail of window [4, 6), after its last sample time: the window still has video
TAIL_ONLY = (0.0, 0.5, 1.0, 5.9, 5.95, 6.1, 6.6, 7.0)


@pytest.mark.parametrize("seed,gop", [(0, "3"), (1, "7"), (2, "2"), (TAIL_ONLY, "2"), (TAIL_ONLY, "3")])
def test_gops_of_irregular_frames_video_only(tmp_path, seed, gop):
    """Frame times with gaps, a GOP boundary every few frames: which frame each window keeps (the latest
    at each sample time, or a window's last frame) crosses GOP boundaries."""
    path = write_media(tmp_path / "vfr.mkv", video=h264(times=irregular_times(seed, 60), gop=gop))
    for hop in (None, 0.75):
        segs = check(path, segment=SegmentConfig(hop_s=hop))
        assert len({frame_index(f) for s in segs for f in s.frames}) > 4


def test_the_real_clip_looped_decodes_by_gop(tmp_path):
    """The bench's input: the 720p clip remuxed three times, an IDR frame at each loop."""
    from avfuse.stream.cli.bench_decode import loop_clip

    path = tmp_path / "looped.mkv"
    loop_clip(real_clip("bigbuckbunny"), path, 12.0)
    check(path, decode=DecodeConfig(height=48, width=48, threads=2))


def test_the_real_video_only_clip_decodes_by_gop():
    """bikes.mp4 (640x272 H.264, no audio) has IDR frames every few seconds: the video-only GOP path."""
    check(real_clip("bikes"), decode=DecodeConfig(height=48, width=48, threads=2))


@pytest.mark.parametrize("x264", [{"bframes": "2", "preset": "medium"},
                                  {"bframes": "3", "preset": "slow", "b-pyramid": "normal"}])
def test_b_frames_declared_by_the_stream_decode_by_gop(tmp_path, x264):
    """B-frames (reordered frames, some referenced by others): each GOP's frames drained at its end."""
    path = write_media(tmp_path / "b.mp4", video=h264(150, **x264), audio=AudioSpec(duration=6, codec="aac"))
    check(path)


def test_one_gop_or_one_core_decode_as_before(tmp_path):
    one_gop = write_media(tmp_path / "one.mp4", video=h264(90, gop="250"))
    check(one_gop, workers=0)
    assert gop_workers(write_media(tmp_path / "gops.mp4", video=h264(60)), DecodeConfig(threads=1)) == 0


def test_a_truncated_file_still_fails_after_its_data(tmp_path):
    path = write_media(tmp_path / "t.mkv", video=h264(250), audio=AudioSpec(duration=10, codec="aac"))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    segs = []
    with pytest.raises(MediaError, match=r"t.mkv"):
        for seg in iter_segments(path, decode=TWO):
            segs.append(seg)
    assert segs  # what came before the cut was labelled


def test_stopping_early_stops_the_workers(tmp_path):
    path = write_media(tmp_path / "long.mp4", video=h264(400), audio=AudioSpec(duration=16))
    it = iter_segments(path, decode=DecodeConfig(queue_size=1, height=16, width=16, threads=2))
    assert next(it).index == 0
    assert any(t.name.startswith("decode-gop") for t in threading.enumerate())
    it.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("decode-") and t.is_alive()]


@pytest.mark.parametrize("fps,hop", [(4.0, None), (12.5, None), (25.0, 0.5)])
def test_timestamps_going_back_across_an_idr_frame(tmp_path, fps, hop):
    """GOP 2's timestamps moved 60 ms before GOP 1's last frame: its first frames are dropped (they go back
    in time), so GOP 1's last frame is judged against a later one than GOP 2's first."""
    import av

    src = write_media(tmp_path / "src.mkv", video=h264(100, bframes="2", preset="medium"))
    path = tmp_path / "back.mkv"
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        packets = [p for p in inp.demux(inp.streams.video[0]) if p.dts is not None]
        idr = [i for i, p in enumerate(packets) if p.is_keyframe]
        for i, p in enumerate(packets):
            p.dts -= 200  # room below the moved pts (ms time base)
            if idr[2] <= i < idr[3]:
                p.pts -= 60
            p.stream = stream
            out.mux(p)
    check(path, decode=DecodeConfig(height=16, width=16, threads=2, fps=fps), segment=SegmentConfig(hop_s=hop))


def test_counts_survive_an_early_stop(tmp_path):
    path = write_media(tmp_path / "v.mp4", video=h264(400))
    stats = DecodeStats()
    it = iter_segments(path, decode=DecodeConfig(queue_size=2, height=16, width=16, threads=2), stats=stats)
    next(it)
    it.close()
    assert stats.video_frames >= 50 and stats.packets >= 50
