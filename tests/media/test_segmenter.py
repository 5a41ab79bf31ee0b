"""The Segmenter on its own: exact windows, sampling, padding and present flags from pushed items."""

from __future__ import annotations

import numpy as np
import pytest

from avfuse.stream.errors import MediaError
from avfuse.stream.media.captions import Captions
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.items import TickItem, VideoItem
from avfuse.stream.media.segmenter import Segmenter

DEC = DecodeConfig(height=8, width=8, sample_rate=1000)


def rgb(i: int) -> np.ndarray:
    return np.full((8, 8, 3), i, np.uint8)


def make(*, window=2.0, hop=None, video=True, audio=True, captions=None, fps=4.0) -> Segmenter:
    dec = DecodeConfig(height=8, width=8, sample_rate=1000, fps=fps)
    return Segmenter(source="x", decode=dec, segment=SegmentConfig(window_s=window, hop_s=hop),
                     captions=captions, has_video=video, has_audio=audio)


def run(seg: Segmenter, frames=(), audio=(), video_end=None):
    """Push (t, value) frames and (t, samples) audio interleaved by time, then the video's end tick at
    ``video_end`` (as the decoder sends it: the last frame's time plus its duration), then finish."""
    items = [(t, 0, v) for t, v in frames] + [(t, 1, a) for t, a in audio]
    out = []
    for t, kind, v in sorted(items, key=lambda x: (x[0], x[1])):
        out += seg.push_video(t, rgb(v)) if kind == 0 else seg.push_audio(t, v)
    if video_end is not None:
        out += seg.tick(video_end)
    return out + seg.finish()


def ids(segment) -> list[int]:
    return [int(f[0, 0, 0]) for f in segment.frames]


def test_latest_frame_at_or_before_each_sample_time():
    # frames at 10 fps; samples at 0.125, 0.375, ... -> frame floor(s * 10)
    segs = run(make(audio=False), frames=[(i / 10, i) for i in range(20)])
    assert [s.index for s in segs] == [0]
    assert ids(segs[0]) == [1, 3, 6, 8, 11, 13, 16, 18]
    assert segs[0].frames.shape == (8, 8, 8, 3) and segs[0].audio.shape == (2000,)
    assert segs[0].present.as_dict() == {"video": True, "audio": False, "text": False}


def test_frame_exactly_at_sample_time_is_taken():
    segs = run(make(audio=False, window=1.0, fps=2.0), frames=[(0.0, 1), (0.25, 2), (0.75, 3)])
    assert ids(segs[0]) == [2, 3]


def test_last_partial_window_is_padded_and_kept_ending_at_the_media_end():
    segs = run(make(), frames=[(i / 4, i) for i in range(14)], audio=[(0.0, np.full(3500, 0.5, np.float32))],
               video_end=3.5)
    assert [(s.start, s.end) for s in segs] == [(0.0, 2.0), (2.0, 3.5)]
    assert ids(segs[1]) == [8, 9, 10, 11, 12, 13, 13, 13]
    assert np.all(segs[1].audio[:1500] == 0.5) and np.all(segs[1].audio[1500:] == 0)
    assert segs[1].present.video and segs[1].present.audio


def test_a_last_window_real_media_covers_less_than_min_coverage_of_is_not_emitted():
    frames, audio = [(i / 4, i) for i in range(10)], [(0.0, np.full(2500, 0.5, np.float32))]
    assert [s.end for s in run(make(), frames=frames, audio=audio, video_end=2.5)] == [2.0]  # 0.5 s of 2: a quarter
    loose = Segmenter(source="x", decode=DEC, segment=SegmentConfig(min_coverage=0.25), has_video=True,
                      has_audio=True)
    assert [s.end for s in run(loose, frames=frames, audio=audio, video_end=2.5)] == [2.0, 2.5]


def test_no_window_without_real_data():
    segs = run(make(), frames=[(i / 4, i) for i in range(8)], audio=[(0.0, np.ones(2000, np.float32))])
    assert len(segs) == 1


def test_overlapping_windows():
    segs = run(make(hop=1.0, audio=False), frames=[(i / 4, i) for i in range(12)], video_end=3.0)
    assert [(s.index, s.start, s.end) for s in segs] == [(0, 0.0, 2.0), (1, 1.0, 3.0), (2, 2.0, 3.0)]
    assert ids(segs[1]) == list(range(4, 12))
    assert ids(segs[2]) == [8, 9, 10, 11, 11, 11, 11, 11]


def test_overlapping_audio_windows_share_samples():
    ramp = np.arange(3000, dtype=np.float32) / 3000
    segs = run(make(hop=0.5, video=False), audio=[(0.0, ramp)])
    assert [s.start for s in segs] == [0.0, 0.5, 1.0, 1.5, 2.0]  # 2.5: only 0.5 s of its 2 s are real
    assert [s.end for s in segs] == [2.0, 2.5, 3.0, 3.0, 3.0]
    np.testing.assert_array_equal(segs[1].audio, ramp[500:2500])
    np.testing.assert_array_equal(segs[3].audio[:1500], ramp[1500:])
    assert not segs[0].present.video and not segs[0].frames.any()


def test_audio_starting_late_is_zero_padded_in_front():
    segs = run(make(), frames=[(i / 4, i) for i in range(8)], audio=[(0.5, np.ones(1500, np.float32))])
    assert len(segs) == 1
    assert np.all(segs[0].audio[:500] == 0) and np.all(segs[0].audio[500:] == 1)
    assert segs[0].present.audio


def test_video_starting_late_gives_black_before_first_frame():
    segs = run(make(), frames=[(0.6 + i / 4, i + 1) for i in range(6)], audio=[(0.0, np.ones(2000, np.float32))])
    assert ids(segs[0]) == [0, 0, 1, 2, 3, 4, 5, 6]
    assert segs[0].frames[:2].max() == 0
    assert segs[0].present.video


def test_contiguous_audio_chunks_and_emission_while_streaming():
    seg = make(video=False)
    out = []
    for k in range(50):  # 100 ms chunks
        out += seg.push_audio(k * 0.1, np.full(100, k, np.float32))
    assert [s.index for s in out] == [0, 1]  # emitted as soon as complete, before finish()
    assert out[1].audio[0] == 20 and out[1].audio[-1] == 39
    rest = seg.finish()
    assert [s.index for s in rest] == [2] and rest[0].audio[999] == 49 and rest[0].audio[1000] == 0


def test_gap_in_middle_emits_windows_marked_absent():
    segs = run(make(audio=False), frames=[(0.0, 1), (0.5, 2), (6.5, 3)], video_end=7.0)
    assert [s.index for s in segs] == [0, 1, 2, 3]
    assert [s.present.video for s in segs] == [True, False, False, True]
    assert ids(segs[1]) == [2] * 8  # the stale frame is repeated, but present says it is not real


def test_stream_far_behind_does_not_hold_windows():
    seg = make()
    out = []
    for k in range(20 * 4):
        out += seg.push_video(k / 4, rgb(k % 200))
    assert len(out) >= 4  # audio never came: windows go out once video is MAX_LAG_S ahead
    assert not any(s.present.audio for s in out)


def test_caption_text_and_present():
    caps = Captions(((0.5, 1.0, "hello"), (1.9, 2.5, "world"), (5.0, 6.0, "late")))
    segs = run(make(audio=False, captions=caps), frames=[(i / 4, i) for i in range(16)])
    assert [s.text for s in segs] == ["hello world", "world"]
    assert [s.present.text for s in segs] == [True, True]


def test_wrong_frame_shape_is_rejected():
    with pytest.raises(MediaError, match="uint8"):
        make().push_video(0.0, np.zeros((4, 4, 3), np.uint8))


def test_a_tick_past_the_window_end_closes_it_without_waiting_for_the_next_sampled_frame():
    seg = make(audio=False, window=1.0, fps=2.0)  # samples at 0.25 and 0.75
    assert seg.push_video(0.2, rgb(1)) == [] and seg.push_video(0.7, rgb(2)) == []
    assert seg.tick(0.74) == [] and seg.tick(0.96) == []  # frames decoded but not sampled: window still open
    out = seg.tick(1.0)  # a frame at the window's end: nothing more can come for window 0
    assert [s.index for s in out] == [0] and ids(out[0]) == [1, 2] and out[0].present.video
    assert seg.push(VideoItem(1.2, rgb(3))) == [] and seg.push(TickItem(1.5)) == []
    assert [ids(s) for s in seg.push(TickItem(2.05))] == [[3, 3]]


def test_a_tick_does_not_close_a_window_whose_audio_has_not_arrived():
    seg = make(window=1.0, fps=2.0)
    seg.push_video(0.2, rgb(1))
    assert seg.tick(1.1) == []  # audio for [0, 1) is still to come
    out = seg.push_audio(0.0, np.full(1000, 0.25, np.float32))
    assert [s.index for s in out] == [0] and out[0].present.audio and ids(out[0]) == [1, 1]
