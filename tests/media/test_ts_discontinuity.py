"""Two MPEG-TS files concatenated (issue 13): the second file's timestamps start again from its own
beginning. The decoder follows the jump: media time keeps rising, every second of both files is
labelled, and each stream's jump is a warning record (not a debug line seen only with -v).

H.264 (+ AAC) in MPEG-TS made with PyAV, joined byte for byte as ``cat a.ts b.ts`` would; the colour
model in onnxruntime labels each second with its colour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx_models import COLOURS, colour_model, colour_video

from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.segmenter import iter_segments

ROOT = Path(__file__).resolve().parents[2]
FIRST = ["red"] * 3 + ["green"] * 3
SECOND = ["blue"] * 3 + ["red"] * 3


def _joined(d: Path, *, audio: bool) -> Path:
    out = d / ("joined.ts" if audio else "joined-video.ts")
    parts = [colour_video(d / f"{n}.ts", colours, audio=audio).read_bytes()  # MPEG-TS, by the suffix
             for n, colours in enumerate((FIRST, SECOND))]
    out.write_bytes(b"".join(parts))
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("ts")
    return colour_model(d / "colour.onnx"), _joined(d, audio=True), _joined(d, audio=False)


def test_concatenated_ts_is_labelled_to_its_end_with_a_warning_record(media, tmp_path):
    model, joined, _ = media
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "avfuse", "run", str(model), str(joined), "-o", str(out),
                        "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in (out / "joined.ts.jsonl").read_text().splitlines()]
    segments = [x for x in records if x["type"] == "segment"]
    assert [x["label"] for x in segments] == FIRST + SECOND
    assert [x["start"] for x in segments] == [float(k) for k in range(12)]  # media time keeps rising
    assert all(x["present"]["video"] and x["present"]["audio"] for x in segments)
    warnings = [x for x in records if x["type"] == "warning"]
    assert sorted(w["stream"] for w in warnings) == ["audio", "video"]
    assert all(w["warning"] == "discontinuity" and 5.9 < w["start"] < 6.3 and 5.9 < w["back_s"] < 6.3
               for w in warnings)
    assert "timestamps jump back" in r.stderr and (out / ".done" / "joined.ts.json").exists()


def test_a_video_only_concatenated_ts_decoded_on_one_thread_follows_the_jump(media):
    _, _, joined = media
    segs = list(iter_segments(joined, decode=DecodeConfig(fps=2, height=32, width=32, sample_rate=8000),
                              segment=SegmentConfig(window_s=1.0)))
    names = list(COLOURS)  # red, green, blue: the brightest channel of each solid colour
    labels = [names[int(np.argmax(s.frames.reshape(-1, 3).mean(axis=0)))] for s in segs]
    assert labels == FIRST + SECOND  # the second file's frames, not the first's last frame held on
    assert [s.start for s in segs] == [float(k) for k in range(12)]
    (jump,) = [n for s in segs for n in s.notices]
    assert jump.stream == "video" and 5.9 < jump.at < 6.3
