"""Outputs that cannot be written (issue 13): a full disk, a name too long, a read-only folder, a
non-UTF-8 file name, a closed pipe, a summary path that does not exist, a folder in use by another run.
Each gives one line naming the file and the reason, never a traceback; nothing half-written is marked
done; one source's failure does not stop the others; a full disk stops the run with its summary.

Real CLI runs in a subprocess (what a user sees on stderr), the colour model in onnxruntime, H.264
files made with PyAV; tmpfs mounts for the full disk and the read-only folder (tests run as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.run.outputs import OutputDir

ROOT = Path(__file__).resolve().parents[2]
COLOURS = ["red", "green", "blue", "red", "green", "blue"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    model = colour_model(d / "colour.onnx")
    a = colour_video(d / "a.mp4", COLOURS)
    b = colour_video(d / "b.mp4", COLOURS[:2])
    return model, a, b


def _run(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avfuse", "run", *map(str, args), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, input=stdin,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _mount(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")


@pytest.fixture
def mounts():
    made: list[Path] = []
    yield lambda path, options: (_mount(path, options), made.append(path))
    for path in reversed(made):
        subprocess.run(["umount", str(path)], check=False)


def _errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith(("ERROR", "avfuse run: error"))]


def _segments(path: Path) -> list[str]:
    return [r["label"] for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "segment"]


def test_a_full_disk_stops_the_run_with_one_line_and_its_summary_and_marks_nothing_done(media, tmp_path, mounts):
    model, a, b = media
    out = tmp_path / "out"
    mounts(out, "size=64k")
    (out / ".done").mkdir()
    with open(out / "fill", "wb", buffering=0) as f, pytest.raises(OSError):  # full before the run starts
        while True:
            f.write(b"\0" * 4096)
    r = _run(model, a, b, "-o", out)
    assert r.returncode == 1
    assert _errors(r.stderr) == [f"ERROR avfuse.stream.run.sink_guard: {out}/a.mp4.jsonl.partial: cannot write "
                                 "(No space left on device)"]
    assert ", 0 ok, 1 failed" in r.stderr and "failed: " in r.stderr
    assert "stopped: " in r.stderr and "the sources after it were not labelled" in r.stderr
    assert not (out / "a.mp4.jsonl").exists() and not (out / "b.mp4.jsonl.partial").exists()
    assert list((out / ".done").iterdir()) == []


def test_one_source_whose_output_cannot_be_written_fails_alone(media, tmp_path):
    model, a, b = media
    out = tmp_path / "out"
    (out / "a.mp4.jsonl.partial").mkdir(parents=True)  # something in the way of a's output
    r = _run(model, a, b, "-o", out)
    assert r.returncode == 1
    assert _errors(r.stderr) == [f"ERROR avfuse.stream.run.sink_guard: {out}/a.mp4.jsonl.partial: cannot write "
                                 "(Is a directory)"]
    assert "summary: 2 source(s), 1 ok, 1 failed" in r.stderr
    assert _segments(out / "b.mp4.jsonl") == COLOURS[:2] and (out / ".done" / "b.mp4.json").exists()
    assert not (out / "a.mp4.jsonl").exists() and not (out / ".done" / "a.mp4.json").exists()


def test_a_source_name_too_long_for_a_file_name_is_shortened_with_a_stable_hash(media, tmp_path):
    model, a, _ = media
    long_a = tmp_path / ("x" * 242 + ".mp4")  # 246 characters: STEM.jsonl.partial would be 260 bytes
    long_a.write_bytes(a.read_bytes())
    out = tmp_path / "out"
    r = _run(model, long_a, "-o", out)
    assert r.returncode == 0, r.stderr
    (written,) = out.glob("*.jsonl")
    assert written.name.startswith("x" * 150) and len(written.name.encode()) + len(".partial") <= 255
    assert _segments(written) == COLOURS
    again = _run(model, long_a, "-o", out, "--resume")
    assert again.returncode == 0 and "1 skipped" in again.stderr  # the same name again: found done
    assert [p.name for p in out.glob("*.jsonl")] == [written.name]


def test_a_read_only_done_folder_is_one_line_before_any_source_starts(media, tmp_path, mounts):
    model, a, _ = media
    out = tmp_path / "out"
    mounts(out / ".done", "size=64k,ro")
    r = _run(model, a, "-o", out)
    assert r.returncode == 1
    assert _errors(r.stderr) == [f"avfuse run: error: {out}/.done: cannot write (Read-only file system)"]
    assert not list(out.glob("a.mp4.jsonl*"))


def test_csv_of_file_names_that_are_not_utf8_even_sharing_a_base_name(media, tmp_path):
    model, a, _ = media
    folder = tmp_path / "clips"
    folder.mkdir()
    for raw in (b"caf\xe9.mp4", b"caf\xe8.mp4"):  # Latin-1 names; both make the base name caf_.mp4
        (Path(os.fsdecode(folder)) / os.fsdecode(raw)).write_bytes(a.read_bytes())
    out = tmp_path / "out"
    r = _run(model, folder, "-o", out, "--sink", "csv", "--sink", "jsonl")
    assert r.returncode == 0, r.stderr
    csvs = sorted(out.glob("caf_.mp4-*.csv"))
    assert len(csvs) == 2
    for path in csvs:
        rows = path.read_bytes().decode("utf-8").splitlines()  # valid UTF-8: the odd byte written escaped
        assert len(rows) > len(COLOURS) and "caf\\udce" in rows[1]


def test_a_closed_pipe_is_one_line_and_the_summary(media, tmp_path):
    model, a, b = media
    cmd = (f"{sys.executable} -m avfuse run {model} {a} {b} {a} {b} --no-cache --batch 1 2>{tmp_path}/err"
           " | head -1")
    r = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert json.loads(r.stdout)["type"] == "segment"
    err = (tmp_path / "err").read_text()
    assert _errors(err) == ["ERROR avfuse.stream.run.sink_guard: stdout: cannot write (Broken pipe)"]
    assert "summary: " in err and "stopped: stdout: cannot write (Broken pipe)" in err


def test_a_summary_json_that_cannot_be_written_fails_before_the_run(media, tmp_path):
    model, a, _ = media
    out = tmp_path / "out"
    r = _run(model, a, "-o", out, "--summary-json", "/nonexistent/x")
    assert r.returncode == 1
    assert _errors(r.stderr) == ["avfuse run: error: /nonexistent/x: cannot write (no folder /nonexistent)"]
    assert not out.exists() or not list(out.glob("*.jsonl"))


def test_an_output_folder_in_use_by_another_run_is_refused(media, tmp_path):
    model, a, _ = media
    out = tmp_path / "out"
    other = OutputDir(out)
    other.lock()
    try:
        r = _run(model, a, "-o", out)
    finally:
        other.unlock()
    assert r.returncode == 1
    assert _errors(r.stderr) == [f"avfuse run: error: {out}: in use by another avfuse run (pid {os.getpid()}); "
                                 "wait for it to end or give another -o"]
    assert not list(out.glob("*.jsonl*"))
    assert _run(model, a, "-o", out).returncode == 0  # free again once the other run has ended
