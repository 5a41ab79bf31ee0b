"""Live outputs you can tail: ``avfuse run --loop`` (a file played as if live) writes OUT/STEM.jsonl under
its final name from the first record, one line per record as it goes; a restarted run appends to it,
going on with the segment index after a ``gap`` record for the time it was down; ``--rotate`` starts a
new file per period or size, named after its UTC start time."""

from __future__ import annotations

import calendar
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avfuse.stream.errors import ConfigError
from avfuse.stream.run.live_output import Rotation

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_until(model: Path, clip: Path, out: Path, watch, *extra: str, n: int = 3) -> tuple[list[dict], float]:
    """``avfuse run --loop`` until ``watch()`` (the paths to read) hold ``n`` more segment records than
    before, while it runs; then SIGTERM. Returns the records seen while it ran and when it started."""
    before = sum(1 for p in watch() for r in _records(p) if r["type"] == "segment")
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), str(clip), "--loop", "-o",
                             str(out), "--no-cache", *extra], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        seen: list[dict] = []
        while time.monotonic() < deadline and proc.poll() is None:
            seen = [r for p in watch() for r in _records(p)]
            if sum(r["type"] == "segment" for r in seen) >= before + n:
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err[-3000:]
    return seen, started


def test_a_live_output_is_tailable_and_a_restarted_run_appends_after_a_gap(colour_onnx, h264_clip, tmp_path):
    out = tmp_path / "out"
    final = out / "cam.mp4.jsonl"

    def watch():
        return [final] if final.exists() else []

    seen, _ = _run_until(colour_onnx, h264_clip, out, watch)
    assert [r["index"] for r in seen if r["type"] == "segment"][:3] == [0, 1, 2]  # read while the run went on
    assert not list(out.glob("*.partial"))
    first = _records(final)
    time.sleep(1.0)  # down for a while
    _, restarted = _run_until(colour_onnx, h264_clip, out, watch)
    records = _records(final)
    assert records[:len(first)] == first  # appended, nothing rewritten
    segs = [r for r in records if r["type"] == "segment"]
    assert [r["index"] for r in segs] == list(range(len(segs)))  # the index goes on
    gaps = [r for r in records[len(first):] if r["type"] == "gap"]
    last = [r for r in first if r["type"] == "segment"][-1]
    assert len(gaps) == 1 and gaps[0]["start_wallclock"] == last["wallclock"]
    assert gaps[0]["end_wallclock"] > restarted and "not running" in gaps[0]["reason"]
    later = [r for r in segs if r["index"] > last["index"]]
    assert later[0]["start"] == pytest.approx(last["end"] + gaps[0]["end_wallclock"] - gaps[0]["start_wallclock"],
                                              abs=1e-3)  # media time goes on past the gap, as after a reconnect


def _rotated(model: Path, clip: Path, out: Path, rotate: str) -> list[Path]:
    """The files of a --loop run with ``--rotate ROTATE`` that wrote 8 segments, oldest first."""

    def watch():
        return sorted(out.glob("cam.mp4.*.jsonl"))

    _run_until(model, clip, out, watch, "--rotate", rotate, n=8)
    return watch()


def test_rotate_by_period_starts_a_file_per_utc_period_named_after_its_start(colour_onnx, h264_clip, tmp_path):
    out = tmp_path / "out"
    files = _rotated(colour_onnx, h264_clip, out, "2s")
    assert len(files) >= 2 and not (out / "cam.mp4.jsonl").exists()
    starts = []
    for f in files:
        stamp = re.fullmatch(r"cam\.mp4\.(\d{8}T\d{6}Z)\.jsonl", f.name).group(1)
        starts.append(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
        assert starts[-1] % 2 == 0  # aligned to the UTC clock
        assert all(starts[-1] - 1 <= r["wallclock"] < starts[-1] + 3 for r in _records(f) if r["type"] == "segment")
    segs = [r for f in files for r in _records(f) if r["type"] == "segment"]
    assert [r["index"] for r in segs] == list(range(len(segs)))  # one series across the files


def test_rotate_by_size_keeps_each_file_near_the_size(colour_onnx, h264_clip, tmp_path):
    files = _rotated(colour_onnx, h264_clip, tmp_path / "out", "1KB")
    assert len(files) >= 2 and len({f.name for f in files}) == len(files)
    record = max(len(line) + 1 for f in files for line in f.read_text().splitlines())
    assert all(f.stat().st_size < 1000 + record for f in files)
    segs = [r for f in files for r in _records(f) if r["type"] == "segment"]
    assert [r["index"] for r in segs] == list(range(len(segs)))


@pytest.mark.parametrize(("text", "seconds", "size"), [("1h", 3600, None), ("30m", 1800, None), ("1d", 86400, None),
                                                       ("10MB", None, 10**7), ("500kb", None, 500_000)])
def test_rotate_values(text, seconds, size):
    assert Rotation.parse(text) == Rotation(seconds=seconds, size=size)


@pytest.mark.parametrize("text", ["", "1", "1w", "-1h", "0s", "10 parsecs"])
def test_rotate_rejects_what_it_does_not_know(text):
    with pytest.raises(ConfigError, match="rotat"):
        Rotation.parse(text)
