"""Decoding real PyAV-encoded media into segments: which frame is sampled, timestamps, sample counts."""

from __future__ import annotations

import math
import threading

import av
import numpy as np
import pytest
from media import AudioSpec, VideoSpec, frame_colour, frame_index, irregular_times, write_media

from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats, FrameScaler, decode_items, frame_end, open_container
from avfuse.stream.media.items import AudioItem, TickItem, VideoItem
from avfuse.stream.media.segmenter import iter_segments


def expected_ids(frame_times: list[float], n_windows: int, fps=4.0, window=2.0, hop=None) -> list[list[int]]:
    """The latest frame at or before each sample time, per window (-1 where no frame yet)."""
    hop = hop or window
    T = round(fps * window)
    out = []
    for k in range(n_windows):
        row = []
        for i in range(T):
            s = k * hop + (i + 0.5) * window / T
            row.append(max([j for j, t in enumerate(frame_times) if t <= s + 1e-6], default=-1))
        out.append(row)
    return out


def ids(seg) -> list[int]:
    return [frame_index(f) for f in seg.frames]


def test_odd_size_lossless_video_with_audio(tmp_path):
    path = write_media(tmp_path / "odd.mkv", video=VideoSpec(frames=14, width=175, height=143),
                       audio=AudioSpec(duration=3.5, freq=440))
    stats = DecodeStats()
    segs = list(iter_segments(path, stats=stats))
    assert [(s.index, s.start, s.end) for s in segs] == [(0, 0.0, 2.0), (1, 2.0, 3.5)]  # ends with the media
    assert [ids(s) for s in segs] == [list(range(8)), [8, 9, 10, 11, 12, 13, 13, 13]]
    for s in segs:
        assert s.frames.shape == (8, 160, 160, 3) and s.frames.dtype == np.uint8
        assert s.audio.shape == (32000,) and s.audio.dtype == np.float32
        assert s.present.video and s.present.audio and not s.present.text
    np.testing.assert_allclose(segs[0].frames[3].reshape(-1, 3).mean(0), frame_colour(3), atol=1)
    # 3.5 s of audio: the second window has 1.5 s of sine, then zeros
    tail = segs[1].audio
    assert np.abs(tail[23900:24000]).max() > 0.3 and not tail[24100:].any()
    assert stats.video_frames == 14 and stats.corrupt_packets == 0 and stats.packets > 14


@pytest.mark.parametrize("codec", ["libx264", "libx264-lossless"])
def test_h264_25fps_sampled_at_4fps(tmp_path, codec):
    spec = VideoSpec(frames=75, fps=25, codec=codec, width=96, height=64)
    segs = list(iter_segments(write_media(tmp_path / "v.mp4", video=spec)))
    assert len(segs) == 2
    assert [ids(s) for s in segs] == expected_ids(spec.frame_times(), 2)
    assert not segs[0].present.audio and not segs[0].audio.any()


def test_nonzero_start_pts_starts_segments_at_zero(tmp_path):
    path = write_media(tmp_path / "late.mp4", video=VideoSpec(frames=8, codec="libx264", start=10.0),
                       audio=AudioSpec(duration=1.9, codec="aac", start=10.0))
    segs = list(iter_segments(path))  # (AAC's priming puts the audio's first pts ~22 ms before 10 s)
    assert [(s.start, s.end) for s in segs] == [(0.0, 2.0)]
    assert ids(segs[0]) == list(range(8))
    assert segs[0].present.audio and np.abs(segs[0].audio[4000:28000]).max() > 0.3


def test_audio_starting_half_a_second_after_video(tmp_path):
    audio = AudioSpec(duration=1.5, start=0.5, channels=1, freq=0, steps=(0.1, 0.2, 0.3))
    path = write_media(tmp_path / "av.mkv", video=VideoSpec(frames=8), audio=audio)
    (seg,) = list(iter_segments(path))
    a = seg.audio
    assert np.abs(a[:7990]).max() < 1e-3  # nothing before 0.5 s
    for level, lo in ((0.1, 8000), (0.2, 16000), (0.3, 24000)):  # each level 0.5 s = 8000 samples
        np.testing.assert_allclose(a[lo + 100:lo + 7900], level, atol=2e-3)
    assert ids(seg) == list(range(8))


def test_video_starting_after_audio(tmp_path):
    path = write_media(tmp_path / "va.mkv", video=VideoSpec(frames=6, start=0.5),
                       audio=AudioSpec(duration=2.0, channels=1))
    (seg,) = list(iter_segments(path))
    assert ids(seg)[2:] == list(range(6))  # samples at 0.625.. take frames from 0.5 s on
    assert not seg.frames[:2].any()  # before the first frame: black, not invented
    assert seg.present.video and seg.present.audio


def test_variable_frame_rate(tmp_path):
    times = (0.0, 0.1, 0.9, 1.0, 1.6, 2.3, 3.1)
    spec = VideoSpec(times=times)
    segs = list(iter_segments(write_media(tmp_path / "vfr.mkv", video=spec)))
    assert [ids(s) for s in segs] == expected_ids(list(times), 2)


def test_overlapping_windows_from_a_file(tmp_path):
    spec = VideoSpec(frames=12)
    segs = list(iter_segments(write_media(tmp_path / "o.mkv", video=spec), segment=SegmentConfig(hop_s=1.0)))
    assert [s.start for s in segs] == [0.0, 1.0, 2.0]
    assert [ids(s) for s in segs] == expected_ids(spec.frame_times(), 3, hop=1.0)


def test_audio_only_file(tmp_path):
    path = write_media(tmp_path / "a.flac", audio=AudioSpec(duration=3.0, channels=1, freq=0,
                                                               steps=(0.5,) * 6))
    segs = list(iter_segments(path))
    assert len(segs) == 2
    assert all(not s.present.video and not s.frames.any() for s in segs)
    assert segs[0].frames.shape == (8, 160, 160, 3)
    np.testing.assert_allclose(segs[1].audio[100:15900], 0.5, atol=2e-3)
    assert not segs[1].audio[16010:].any()


def test_video_only_file(tmp_path):
    segs = list(iter_segments(write_media(tmp_path / "v.mkv", video=VideoSpec(frames=8))))
    assert len(segs) == 1 and segs[0].present.video and not segs[0].present.audio
    assert segs[0].audio.shape == (32000,) and not segs[0].audio.any()


def test_other_rate_size_and_window(tmp_path):
    dec = DecodeConfig(fps=2, height=32, width=48, sample_rate=8000)
    path = write_media(tmp_path / "v.mkv", video=VideoSpec(frames=12), audio=AudioSpec(duration=3.0))
    segs = list(iter_segments(path, decode=dec, segment=SegmentConfig(window_s=1.0)))
    assert len(segs) == 3
    assert segs[0].frames.shape == (2, 32, 48, 3) and segs[0].audio.shape == (8000,)
    assert [ids(s) for s in segs] == expected_ids(VideoSpec(frames=12).frame_times(), 3, fps=2, window=1.0)


def test_only_sampled_frames_are_converted(tmp_path):
    path = write_media(tmp_path / "v.mp4", video=VideoSpec(frames=50, fps=25, codec="libx264"))
    stats = DecodeStats()
    with open_container(path) as c:
        items = list(decode_items(c, DecodeConfig(), stats))
    assert stats.video_frames == 50  # every frame decoded...
    # ...but only the 8 sampled ones are converted
    assert [type(i) for i in items] == [VideoItem] * 8 + [TickItem]
    assert items[-1].t == pytest.approx(2.0)  # then the video's end: its last frame's time plus its duration
    times = [i.t for i in items]
    assert times == sorted(times) and all(math.isclose(t * 25, round(t * 25), abs_tol=1e-6) for t in times)


def test_corrupt_packets_are_skipped_and_counted(tmp_path):
    from media import corrupt_packets

    clean = write_media(tmp_path / "p.mov", video=VideoSpec(frames=10, codec="png"))
    bad = corrupt_packets(clean, tmp_path / "bad.mov", {3, 4})
    stats = DecodeStats()
    segs = list(iter_segments(bad, stats=stats))
    assert stats.corrupt_packets == 2 and stats.video_frames == 8
    assert ids(segs[0]) == [0, 1, 2, 2, 2, 5, 6, 7]


@pytest.mark.parametrize("policy", ["stretch", "letterbox", "crop"])
def test_resize_policies(policy):
    # 320x160: left half red, right half blue, a green stripe in the middle columns
    arr = np.zeros((160, 320, 3), np.uint8)
    arr[:, :160, 0] = 255
    arr[:, 160:, 2] = 255
    arr[:, 150:170] = (0, 255, 0)
    frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
    out = FrameScaler(DecodeConfig(height=80, width=80, resize=policy))(frame)
    assert out.shape == (80, 80, 3) and out.dtype == np.uint8
    if policy == "stretch":
        assert out[40, 5, 0] > 200 and out[40, 75, 2] > 200
    elif policy == "letterbox":
        assert not out[:19].any() and not out[61:].any()  # 80x40 picture with black bars
        assert out[40, 5, 0] > 200 and out[40, 75, 2] > 200
    else:  # centre 160x160 crop, scaled: red | green stripe | blue
        assert out[40, 5, 0] > 200 and out[40, 75, 2] > 200 and out[40, 40, 1] > 200
        assert out[40, 20, 1] < 50  # the stripe is 10 px wide here, 20 px in stretch


def test_decode_thread_is_separate_and_stops(tmp_path):
    path = write_media(tmp_path / "v.mkv", video=VideoSpec(frames=80))
    before = {t.ident for t in threading.enumerate()}
    it = iter_segments(path)
    next(it)
    assert any(t.name.startswith("decode:") for t in threading.enumerate() if t.ident not in before)
    it.close()
    assert not any(t.name.startswith("decode:") and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("name,codec,rate,channels", [("a.flac", "flac", 48000, 2), ("a.wav", "pcm_s16le", 44100, 2),
                                                      ("a.mkv", "pcm_s16le", 22050, 1)])
def test_audio_sample_counts_are_exact(tmp_path, name, codec, rate, channels):
    path = write_media(tmp_path / name, audio=AudioSpec(duration=3.0, codec=codec, rate=rate, channels=channels))
    with open_container(path) as c:
        items = list(decode_items(c, DecodeConfig(), DecodeStats()))
    assert {type(i) for i in items} == {AudioItem}
    assert sum(i.samples.size for i in items) == 48000  # 3 s at 16 kHz, whatever the input rate
    starts = [i.t for i in items]
    sizes = [i.samples.size for i in items]
    assert starts[0] == 0.0 and all(math.isclose(starts[i + 1], starts[i] + sizes[i] / 16000)
                                    for i in range(len(items) - 1))


def test_gap_in_audio_is_kept_as_silence_at_the_right_time(tmp_path):
    src = write_media(tmp_path / "a.mkv", audio=AudioSpec(duration=2.0, channels=1, freq=0,
                                                          steps=(0.1, 0.2, 0.3, 0.4)))
    gapped = tmp_path / "gap.mkv"
    with av.open(str(src)) as inp, av.open(str(gapped), "w") as out:
        stream = out.add_stream_from_template(inp.streams.audio[0])
        for p in inp.demux(inp.streams.audio[0]):
            if p.dts is None:
                continue
            if p.pts * p.time_base >= 1.0:  # everything from 1 s on moves 1 s later
                shift = round(1 / p.time_base)
                p.pts, p.dts = p.pts + shift, p.dts + shift
            p.stream = stream
            out.mux(p)
    segs = list(iter_segments(gapped))
    a = np.concatenate([s.audio for s in segs])
    sr = 16000
    np.testing.assert_allclose(a[int(0.2 * sr):int(0.45 * sr)], 0.1, atol=2e-3)
    assert np.abs(a[int(1.3 * sr):int(1.9 * sr)]).max() < 1e-3  # the gap: silence, not shifted audio
    np.testing.assert_allclose(a[int(2.6 * sr):int(2.9 * sr)], 0.4, atol=2e-3)
    assert len(segs) == 2 and all(s.present.audio for s in segs)


# a frame alone in the tail of window [4, 6), after its last sample time, followed by one before 6.125
TAIL_ONLY = (0.0, 0.5, 5.9, 6.1, 6.6, 7.2)


@pytest.mark.parametrize("seed,hop", [(0, None), (1, 0.75), (2, 1.5), (3, 0.5), (TAIL_ONLY, None)])
def test_skipping_unsampled_frames_changes_nothing(tmp_path, seed, hop):
    """Segments from decode_items (which converts only frames that can be sampled) equal segments built
    from every decoded frame, for irregular frame times with gaps."""
    from avfuse.stream.media.decode import media_start
    from avfuse.stream.media.segmenter import Segmenter

    path = write_media(tmp_path / "vfr.mkv", video=VideoSpec(times=irregular_times(seed), width=32, height=24))
    dec, seg_cfg = DecodeConfig(height=16, width=16), SegmentConfig(hop_s=hop)
    got = list(iter_segments(path, decode=dec, segment=seg_cfg))

    reference = Segmenter(source="ref", decode=dec, segment=seg_cfg, has_video=True, has_audio=False)
    scale, want = FrameScaler(dec), []
    with av.open(str(path)) as c:
        t0, stream = media_start(c), c.streams.video[0]
        for frame in c.decode(video=0):
            want += reference.push_video(float(frame.time) - t0, scale(frame))
        want += reference.tick(frame_end(frame, float(frame.time) - t0, float(stream.time_base),
                                         1 / float(stream.average_rate)))
    want += reference.finish()
    assert len(got) == len(want) > 3
    for g, w in zip(got, want, strict=True):
        assert (g.index, g.start, g.end, g.present) == (w.index, w.start, w.end, w.present)
        assert ids(g) == ids(w)


def test_raw_h264_without_timestamps_is_timed_by_frame_count(tmp_path):
    """A raw H.264 elementary stream carries no pts: frames are timed at the stream's rate (25 fps here,
    as the ffmpeg command line reads it), starting at 0."""
    spec = VideoSpec(frames=90, fps=25, codec="libx264", width=64, height=48)
    src, raw = write_media(tmp_path / "v.mp4", video=spec), tmp_path / "v.h264"
    with av.open(str(src)) as inp, av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for p in inp.demux(inp.streams.video[0]):
            if p.dts is not None:
                p.stream = stream
                out.mux(p)
    segs = list(iter_segments(raw))
    assert [(s.start, s.end) for s in segs] == [(0.0, 2.0), (2.0, 3.6)]
    assert [ids(s) for s in segs] == expected_ids(spec.frame_times(), 2)


def test_complete_file_sampled_sparsely_is_not_taken_for_truncated(tmp_path):
    """At 0.25 fps most frames are skipped before conversion; the file still ends where its header says."""
    path = write_media(tmp_path / "long.mkv", video=VideoSpec(frames=299, fps=25, width=32, height=24))
    segs = list(iter_segments(path, decode=DecodeConfig(fps=0.25, height=16, width=16),
                              segment=SegmentConfig(window_s=4.0)))
    assert [s.start for s in segs] == [0.0, 4.0, 8.0] and all(s.present.video for s in segs)


def test_decode_thread_stops_when_the_consumer_fails_and_keeps_the_error(tmp_path):
    path = write_media(tmp_path / "caller.mkv", video=VideoSpec(frames=200, width=32, height=24))
    it = iter_segments(path, decode=DecodeConfig(queue_size=1, height=16, width=16))
    next(it)
    with pytest.raises(KeyError) as info:  # as a caller that fails on a segment would, keeping the error
        it.throw(KeyError("the caller's own failure"))
    assert not any(t.name == "decode:caller.mkv" and t.is_alive() for t in threading.enumerate()), info.value


def test_cover_image_of_a_music_file_is_not_video(tmp_path):
    from avfuse.stream.media.probe import probe

    path = write_media(tmp_path / "song.mp4", audio=AudioSpec(duration=3.9, channels=1, codec="aac"), cover=True)
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["audio", "video"]  # the cover is stored as a video stream
    segs = list(iter_segments(path))
    assert len(segs) == 2 and all(s.present.audio and not s.present.video and not s.frames.any() for s in segs)
    assert [s.type for s in probe(str(path)).streams] == ["audio", "picture"]


def test_loud_stereo_stays_within_minus_one_to_one(tmp_path):
    """FFmpeg's downmix would give 0.9 * 2 * 0.707 = 1.27; the segment contract is [-1, 1]."""
    path = write_media(tmp_path / "loud.mkv", audio=AudioSpec(duration=1.0, channels=2, freq=0, steps=(0.9,)))
    (seg,) = iter_segments(path, segment=SegmentConfig(window_s=1.0))
    assert seg.present.audio and seg.audio.max() == pytest.approx(1.0) and seg.audio.min() >= -1.0
