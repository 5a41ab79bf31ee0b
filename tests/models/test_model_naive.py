"""The naive baseline of ``avfuse bench run`` feeds the model the same windows the pipeline does."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from media import AudioSpec, VideoSpec, frame_index, write_media  # noqa: E402

from avfuse.models.naive import default_model, naive_run  # noqa: E402
from avfuse.stream.media.config import DecodeConfig, SegmentConfig  # noqa: E402
from avfuse.stream.media.segmenter import iter_segments  # noqa: E402

DECODE = DecodeConfig(fps=2, height=32, width=32)
SEGMENT = SegmentConfig(window_s=1.0)


@pytest.mark.parametrize("codec", ["flac", "aac"])  # packed int16 and planar float samples
def test_naive_windows_match_the_segmenter(tmp_path, codec):
    # stereo 48 kHz, level steps every 0.5 s: a window's audio tells which half-seconds it covers (levels
    # low enough that FFmpeg's stereo downmix, 0.707 per channel, stays under the clip at 1)
    path = write_media(tmp_path / "clip.mkv", video=VideoSpec(frames=16, fps=4),
                       audio=AudioSpec(duration=4.0, freq=0, channels=2, rate=48000, codec=codec,
                                       steps=(0.08, 0.16, 0.24, 0.32, 0.4, 0.48, 0.56, 0.64)))
    model, _, _ = default_model(DECODE, SEGMENT)
    seen = []
    model.register_forward_pre_hook(lambda _, args: seen.append([a.clone() for a in args]))
    result = naive_run(str(path), model, decode=DECODE, segment=SEGMENT)
    segments = [s for s in iter_segments(str(path), decode=DECODE, segment=SEGMENT) if s.present.video]
    assert result.segments == len(seen) == len(segments) == 4
    naive = np.stack([audio[0].numpy() for _, audio, _, _ in seen])
    ours = np.stack([s.audio for s in segments])
    assert np.abs(naive).max() <= 1.0  # int16 samples scaled to [-1, 1]
    # one scale for the whole file (the downmix of stereo to mono may weigh channels differently), then the
    # windows must agree sample by sample: a window cut at the wrong time holds other levels
    scale = float((naive * ours).sum() / (naive * naive).sum())
    assert np.abs(naive * scale - ours).mean(axis=1).max() < 0.02
    for (frames, _, _, present), seg in zip(seen, segments, strict=True):
        assert [frame_index(f.numpy()) for f in frames[0]] == [frame_index(f) for f in seg.frames]
        assert present[0, 1] == 1.0
