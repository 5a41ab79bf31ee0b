"""``--resume`` checks what it skips (issue 13): a source is skipped only when its marker's model hash,
sinks and output files (with their sizes) still match; otherwise it is labelled again, with a warning
saying why. A same-named file added in another folder does not rename finished outputs.

Real CLI runs in a subprocess, the colour model in onnxruntime, H.264 files made with PyAV."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from onnx_models import colour_model, colour_video

ROOT = Path(__file__).resolve().parents[2]
A = ["red", "green", "blue"]
B = ["blue", "blue"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    (d / "one").mkdir()
    return colour_model(d / "colour.onnx"), colour_video(d / "one" / "clip.mp4", A)


def _run(*args: object) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "avfuse", "run", *map(str, args), "--no-cache"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    return r


def _labels(path: Path) -> list[str]:
    return [r["label"] for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "segment"]


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING")]


def test_unchanged_is_skipped_and_a_deleted_output_is_labelled_again(media, tmp_path):
    model, clip = media
    out = tmp_path / "out"
    _run(model, clip, "-o", out)
    again = _run(model, clip, "-o", out, "--resume")
    assert "1 skipped" in again.stderr and _warnings(again.stderr) == []
    (out / "clip.mp4.jsonl").unlink()
    r = _run(model, clip, "-o", out, "--resume")
    assert "1 ok" in r.stderr and "skipped (already complete)" not in r.stderr
    assert _warnings(r.stderr) == [f"WARNING avfuse.stream.run.outputs: {clip}: labelled again (--resume): "
                                   f"{out}/clip.mp4.jsonl is missing"]
    assert _labels(out / "clip.mp4.jsonl") == A


def test_a_truncated_output_is_labelled_again(media, tmp_path):
    model, clip = media
    out = tmp_path / "out"
    _run(model, clip, "-o", out)
    path = out / "clip.mp4.jsonl"
    size = path.stat().st_size
    path.write_text(path.read_text().splitlines()[0] + "\n")
    r = _run(model, clip, "-o", out, "--resume")
    assert "1 ok" in r.stderr and f"{path} is " in r.stderr and f"{size} when it was finished" in r.stderr
    assert _labels(path) == A


def test_a_sink_added_since_is_written(media, tmp_path):
    model, clip = media
    out = tmp_path / "out"
    _run(model, clip, "-o", out)
    r = _run(model, clip, "-o", out, "--resume", "--sink", "jsonl", "--sink", "csv")
    assert "1 ok" in r.stderr and "sink csv was not in that run" in r.stderr
    with open(out / "clip.mp4.csv", newline="") as f:
        assert [row["label"] for row in csv.DictReader(f) if row["type"] == "segment"] == A
    dropped = _run(model, clip, "-o", out, "--resume", "--sink", "csv")  # fewer sinks: nothing is missing
    assert "1 skipped" in dropped.stderr


def test_a_source_done_with_another_model_is_labelled_again(media, tmp_path):
    model, clip = media
    out = tmp_path / "out"
    _run(model, clip, "-o", out)
    other = colour_model(tmp_path / "other.onnx", labels=("r", "g", "b"))  # another file
    r = _run(other, clip, "-o", out, "--resume")
    assert "1 ok" in r.stderr and "labelled with another model file" in r.stderr


def test_a_same_named_file_added_elsewhere_keeps_the_finished_outputs_names(media, tmp_path):
    model, clip = media
    out = tmp_path / "out"
    _run(model, clip, "-o", out)
    (tmp_path / "two").mkdir()
    second = colour_video(tmp_path / "two" / "clip.mp4", B)
    r = _run(model, clip, second, "-o", out, "--resume")
    assert "1 skipped" in r.stderr and "1 ok" in r.stderr
    (added,) = [p.name for p in out.glob("*.jsonl") if p.name != "clip.mp4.jsonl"]  # no stale duplicate
    assert added.startswith("clip.mp4-")
    assert _labels(out / "clip.mp4.jsonl") == A and _labels(out / added) == B
    assert sorted(p.name for p in (out / ".done").iterdir()) == sorted(
        ["clip.mp4.json", added.removesuffix(".jsonl") + ".json"])
