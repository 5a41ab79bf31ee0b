"""A model swapped under a running ``avfuse run --loop``: the file renamed over (or SIGHUP) is taken between
two batches: records before carry model A's hash and labels, after it B's, with the segment index
contiguous; a broken file and one with another window are refused with an error record while A goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.run.model_swap import model_version

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)
FRENCH = ("rouge", "vert", "bleu")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("swap")
    return {"video": colour_video(d / "cam.mp4", ["red"] * 2),
            "a": colour_model(d / "a.onnx", fps=2, window_s=0.5),
            "b": colour_model(d / "b.onnx", fps=2, window_s=0.5, labels=FRENCH),
            "other_window": colour_model(d / "w.onnx", fps=2, window_s=1.0)}


def _replace(target: Path, data: bytes) -> None:
    """Rename a complete file over ``target``, as ``mv`` or a deploy tool does."""
    tmp = target.with_name(target.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, target)


class Run:
    """``avfuse run MODEL VIDEO --loop`` in the background, its records read as they are written."""

    def __init__(self, model: Path, video: Path, out: Path, *extra: str) -> None:
        self.file = out / f"{video.name}.jsonl"
        self.proc = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), str(video), "--loop",
                                      "-o", str(out), "--no-cache", *extra], cwd=ROOT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def records(self) -> list[dict]:
        if not self.file.exists():
            return []
        return [json.loads(line) for line in self.file.read_text().splitlines() if line.endswith("}")]

    def wait_for(self, done, limit_s: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            if done(records := self.records()):
                return records
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"timed out; stderr: {self.err[-3000:]}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, self.err = self.proc.communicate(timeout=30)
        return self.err


def _segments(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "segment"]


def _after(n: int, version: str):
    """Done once ``n`` segments labelled by ``version`` are in."""
    return lambda records: sum(r.get("model") == version for r in _segments(records)) >= n


def _check_contiguous(records: list[dict]) -> None:
    indices = [r["index"] for r in _segments(records)]
    assert indices == list(range(len(indices)))  # none dropped, none labelled twice


def test_a_model_renamed_over_is_taken_between_batches(media, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(media["a"].read_bytes())
    a, b = model_version(media["a"]), model_version(media["b"])
    run = Run(model, media["video"], tmp_path / "out")
    run.wait_for(_after(4, a))
    _replace(model, media["b"].read_bytes())
    run.wait_for(_after(4, b))
    err = run.stop()
    assert run.proc.returncode == 143, err[-3000:]
    records = run.records()
    _check_contiguous(records)
    versions = [r["model"] for r in _segments(records)]
    switch = versions.index(b)
    assert switch >= 4 and set(versions[:switch]) == {a} and set(versions[switch:]) == {b}  # one switch
    labels = [r["label"] for r in _segments(records)]
    assert set(labels[:switch]) == {"red"} and set(labels[switch:]) == {"rouge"}  # B's own labels
    assert "1 swap(s)" in err and "0 file(s) refused" in err


def test_broken_and_incompatible_files_are_refused_and_a_goes_on(media, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(media["a"].read_bytes())
    a = model_version(media["a"])
    run = Run(model, media["video"], tmp_path / "out")
    run.wait_for(_after(2, a))
    _replace(model, b"this is not an onnx file")
    run.wait_for(lambda rs: sum(r["type"] == "error" for r in rs) >= 1)
    _replace(model, media["other_window"].read_bytes())
    records = run.wait_for(lambda rs: sum(r["type"] == "error" for r in rs) >= 2)
    n = len(_segments(records))
    run.wait_for(lambda rs: len(_segments(rs)) >= n + 3)  # A goes on labelling
    err = run.stop()
    records = run.records()
    _check_contiguous(records)
    assert {r["model"] for r in _segments(records)} == {a} and {r["label"] for r in _segments(records)} == {"red"}
    broken, other = [r for r in records if r["type"] == "error"]
    assert str(model) in broken["detail"] and "still labelling with the running model" in broken["detail"]
    assert "segment config" in other["detail"] and "window_s=1.0" in other["detail"]
    assert "0 swap(s) while running, 2 file(s) refused" in err


def test_sighup_loads_the_file_when_it_is_not_watched(media, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(media["a"].read_bytes())
    a, b = model_version(media["a"]), model_version(media["b"])
    run = Run(model, media["video"], tmp_path / "out", "--watch-model", "0")
    run.wait_for(_after(2, a))
    _replace(model, media["b"].read_bytes())
    run.wait_for(_after(4, a))  # not looked at: A still labels
    run.proc.send_signal(signal.SIGHUP)
    run.wait_for(_after(2, b))
    run.stop()
    records = run.records()
    _check_contiguous(records)
    versions = [r["model"] for r in _segments(records)]
    assert versions == sorted(versions, key=[a, b].index) and versions.count(a) >= 4
