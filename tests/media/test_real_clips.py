"""The real third-party clips: 720p H.264 + 5.1 AAC (bigbuckbunny) and 640x272 video only (bikes)."""

from __future__ import annotations

import numpy as np
import pytest

from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats
from avfuse.stream.media.probe import probe
from avfuse.stream.media.segmenter import iter_segments


@pytest.fixture(scope="module")
def bunny_segments(bunny):
    stats = DecodeStats()
    return list(iter_segments(bunny, stats=stats)), stats


def test_bunny_segments(bunny, bunny_segments):
    segs, stats = bunny_segments
    assert len(segs) == probe(str(bunny)).segments == 3  # 5.3 s in 2 s windows, the last one partial
    assert [s.index for s in segs] == [0, 1, 2]
    assert [s.start for s in segs] == [0.0, 2.0, 4.0]
    assert [s.end for s in segs] == [2.0, 4.0, 5.312]  # the last ends with the clip (its audio's declared end)
    assert stats.corrupt_packets == 0 and stats.video_frames == 132  # every frame of the clip decoded
    for s in segs:
        assert s.frames.shape == (8, 160, 160, 3) and s.audio.shape == (32000,)
        assert s.present.video and s.present.audio and not s.present.text
        assert s.frames.std() > 10  # real picture content, not padding
    assert np.abs(segs[0].audio).max() > 0.01  # the soundtrack is there, downmixed from 5.1
    assert np.abs(segs[0].audio).max() <= 1.0
    # the last window is padded: 5.3 s of data, so its last 0.7 s of audio is silence
    assert not segs[2].audio[int(1.4 * 16000):].any()
    assert np.array_equal(segs[2].frames[-1], segs[2].frames[-2])  # last frame repeated


def test_bunny_overlapping_windows_are_consistent(bunny, bunny_segments):
    segs = list(iter_segments(bunny, segment=SegmentConfig(hop_s=1.0)))
    starts = [s.start for s in segs]
    assert starts == sorted(starts) and starts == [float(k) for k in range(len(segs))]
    assert len(segs) == probe(str(bunny), segment=SegmentConfig(hop_s=1.0)).segments
    plain, _ = bunny_segments
    # window [2, 4) is window 1 of the plain run and window 2 of the overlapping run: same pixels and samples
    assert np.array_equal(segs[2].frames, plain[1].frames) and np.array_equal(segs[2].audio, plain[1].audio)


def test_bikes_has_no_audio(bikes):
    segs = list(iter_segments(bikes, decode=DecodeConfig(resize="letterbox", fps=2)))
    assert len(segs) == probe(str(bikes)).segments >= 1
    starts = [s.start for s in segs]
    assert starts == sorted(starts)
    for s in segs:
        assert s.present.video and not s.present.audio and not s.audio.any()
        # 640x272 letterboxed into 160x160: picture is 160x68, black bars above and below
        assert not s.frames[:, :40].any() and not s.frames[:, 120:].any() and s.frames[:, 50:110].any()
