"""decode_items(ticks=True), as live sources use it: the same sampled frames and audio as without, plus a
tick per decoded frame, so that a window closes when the first frame at or past its end is decoded
rather than when the next window's first sampled frame is."""

from __future__ import annotations

import numpy as np
import pytest
from media import AudioSpec, VideoSpec, frame_index, write_media

from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats, decode_items, open_container
from avfuse.stream.media.items import AudioItem, TickItem, VideoItem
from avfuse.stream.media.segmenter import Segmenter

DEC = DecodeConfig(height=16, width=16)
SEG = SegmentConfig(window_s=1.0)


def items(path, *, ticks: bool) -> list[tuple]:
    with open_container(path) as c:
        return [_tagged(i) for i in decode_items(c, DEC, DecodeStats(), SEG, ticks=ticks)]


def _tagged(item) -> tuple:
    """(kind, t, data) of a decoded item, for comparing runs."""
    if isinstance(item, VideoItem):
        return "video", item.t, item.rgb
    if isinstance(item, AudioItem):
        return "audio", item.t, item.samples
    return ("tick" if isinstance(item, TickItem) else "jump"), item.t, None


def segments_with_trigger(path, *, ticks: bool, audio: bool) -> list[tuple]:
    """(segment, media time of the item whose arrival closed it) for every window, in order."""
    seg = Segmenter(source="x", decode=DEC, segment=SEG, has_video=True, has_audio=audio)
    out = []
    with open_container(path) as c:
        decoded = list(decode_items(c, DEC, DecodeStats(), SEG, ticks=ticks))
    for item in decoded:
        end = item.t + (item.samples.size / DEC.sample_rate if isinstance(item, AudioItem) else 0.0)
        out += [(s, end) for s in seg.push(item)]
    return out + [(s, None) for s in seg.finish()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """4 s of 25 fps H.264 (frame i shows index i) with a 440 Hz AAC tone."""
    return write_media(tmp_path_factory.mktemp("ticks") / "clip.mp4",
                       video=VideoSpec(frames=100, fps=25, width=32, height=24, codec="libx264"),
                       audio=AudioSpec(duration=4.0, codec="aac", channels=1))


def test_ticks_add_a_tick_per_frame_and_change_no_frame_or_sample(clip):
    plain, ticked = items(clip, ticks=False), items(clip, ticks=True)
    video = [(t, frame_index(d)) for k, t, d in plain if k == "video"]
    assert [(t, frame_index(d)) for k, t, d in ticked if k == "video"] == video and len(video) >= 16
    ticks = [t for k, t, _ in ticked if k == "tick"]
    assert len(ticks) == 101 and ticks == sorted(ticks)  # one per frame, then the video's end
    assert [t for k, t, _ in plain if k == "tick"] == [ticks[-1]] == [pytest.approx(4.0)]
    for n, (kind, t, _) in enumerate(ticked):  # a tick comes after every sampled frame before it
        if kind == "video":
            assert all(tt >= t for k, tt, _ in ticked[n + 1:] if k == "tick")
    audio = [d for k, _, d in plain if k == "audio"]
    live_audio = [d for k, _, d in ticked if k == "audio"]
    assert len(live_audio) > len(audio)  # handed on as resampled, not in 0.1 s chunks...
    np.testing.assert_array_equal(np.concatenate(live_audio), np.concatenate(audio))  # ...the same samples


@pytest.mark.parametrize("audio", [False, True])
def test_windows_close_at_the_first_frame_past_their_end(clip, audio):
    late, early = segments_with_trigger(clip, ticks=False, audio=audio), segments_with_trigger(clip, ticks=True,
                                                                                                 audio=audio)
    assert [s.index for s, _ in early] == [s.index for s, _ in late] == [0, 1, 2, 3]  # none for AAC padding past 4 s
    for (a, _), (b, _) in zip(late, early, strict=True):
        assert [frame_index(f) for f in a.frames] == [frame_index(f) for f in b.frames]
        assert a.present == b.present and np.array_equal(a.audio, b.audio)
    # closed by media within one frame (40 ms) of the window's end; without ticks, by the next window's first
    # sampled frame (or a 0.1 s audio chunk), well over 100 ms later
    assert all(0 <= t - s.end <= 0.045 for s, t in early[:3])
    assert all(t - s.end >= 0.1 for s, t in late[:3])
