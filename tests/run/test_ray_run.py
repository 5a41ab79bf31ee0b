"""``avfuse run --engine ray`` on real Ray clusters (a local one the run starts itself, and two nodes of one
CPU each started with ``ray start``) writes, file for file, what the local engine writes: a folder with a
long file cut into ranges and a bad file, a run killed mid-way and resumed, a Ray worker killed mid-file.
And ``avfuse.stream.run.ray_data.read_segments`` gives the same segments as a Dataset that writes Parquet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media import AudioSpec, VideoSpec, write_garbage, write_media
from onnx_models import colour_model, colour_video
from ray_cluster import ROOT, Cluster, ray_env

from avfuse.stream.infer.modelspec import read_spec
from avfuse.stream.media.decode import DecodeStats
from avfuse.stream.media.range_decode import plan_ranges
from avfuse.stream.media.segmenter import iter_segments

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FILES = ("a.mp4", "b.mp4", "bad.mp4", "long.mp4")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A folder of four files (one 50 s H.264 file with an IDR frame every 2 s: three ranges of
    avfuse.stream.media.range_decode's 20 s, one file of garbage), the colour model, and the local engine's outputs."""
    root = tmp_path_factory.mktemp("archive")
    videos = root / "videos"
    videos.mkdir()
    colour_video(videos / "a.mp4", ["red", "green", "blue", "red"])
    colour_video(videos / "b.mp4", ["blue", "green"], audio=False)
    write_garbage(videos / "bad.mp4")
    write_media(videos / "long.mp4", video=VideoSpec(frames=500, fps=10, width=64, height=48, codec="libx264",
                                                     x264=(("g", "20"),)),
                audio=AudioSpec(duration=50.0, codec="aac", channels=1, rate=16000))
    model = colour_model(root / "colour.onnx", fps=2, window_s=0.5)
    assert len(plan_ranges(str(videos / "long.mp4"), read_spec(model).segment)) == 3  # what the Ray runs cut
    local = root / "local"
    r = _run(model, videos, local)
    assert r.returncode == 1, r.stderr  # the bad file
    return model, videos, local


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(nodes=2)
    yield c
    c.stop()


def _start(model: Path, videos: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), str(videos), "-o", str(out),
                             "--no-cache", "--summary-json", str(out.with_suffix(".summary.json")), *extra],
                            cwd=ROOT, env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(model: Path, videos: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    p = _start(model, videos, out, *extra)
    stdout, stderr = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


def _outputs(out: Path) -> dict[str, str]:
    return {f: (out / f"{f}.jsonl").read_text() for f in FILES}


def _summary(out: Path) -> dict:
    s = json.loads(out.with_suffix(".summary.json").read_text())
    return {k: s[k] for k in ("segments", "events", "ok", "failed", "media_s")}


def _same_as_local(local: Path, out: Path) -> None:
    want, got = _outputs(local), _outputs(out)
    for name in FILES:
        assert got[name] == want[name], f"{name}: the Ray engine's records differ from the local engine's"
    long = [json.loads(x) for x in got["long.mp4"].splitlines()]
    assert len([r for r in long if r["type"] == "segment"]) == 100  # 50 s in 0.5 s windows, all three ranges
    assert json.loads(got["bad.mp4"])["type"] == "error"


def test_a_local_ray_cluster_writes_what_the_local_engine_writes(archive, tmp_path):
    model, videos, local = archive
    out = tmp_path / "ray"
    r = _run(model, videos, out, "--engine", "ray", "--workers", "2")
    assert r.returncode == 1, r.stderr  # the bad file fails, as locally; the others are labelled
    _same_as_local(local, out)
    assert _summary(out) == _summary(local)
    ranges = json.loads(out.with_suffix(".summary.json").read_text())["ranges"]
    assert {k: ranges[k] for k in ("files", "cut", "ranges", "audio_tracks")} == {
        "files": 4, "cut": 1, "ranges": 3, "audio_tracks": 1}
    # the long file's three ranges share one audio track: the audio of one pass, decoded once
    assert ranges["decoded"]["audio_frames"] == _one_pass(model, videos).audio_frames > 0
    assert "1 cut into 3 ranges with 1 audio track(s) decoded for them" in r.stderr


def _one_pass(model: Path, videos: Path) -> DecodeStats:
    """What the local engine's one pass over each good file decodes."""
    spec, total = read_spec(model), DecodeStats()
    for name in FILES:
        if name != "bad.mp4":
            list(iter_segments(videos / name, decode=spec.decode, segment=spec.segment, stats=total))
    return total


def test_two_nodes_write_what_the_local_engine_writes(archive, cluster, tmp_path):
    model, videos, local = archive
    out = tmp_path / "ray"
    r = _run(model, videos, out, "--engine", "ray", "--address", cluster.address, "--workers", "2")
    assert r.returncode == 1, r.stderr
    _same_as_local(local, out)
    assert _summary(out) == _summary(local)
    assert "ray (2 actors)" in r.stderr


def _wait_for(cond, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_run_killed_mid_way_resumes_without_doubling(archive, cluster, tmp_path):
    model, videos, local = archive
    out = tmp_path / "ray"
    p = _start(model, videos, out, "--engine", "ray", "--address", cluster.address, "--workers", "2")
    # a.mp4 is done once its marker is written, just after its output is renamed: a kill between the two
    # labels it again on resume (no doubling either way), so wait for the marker
    _wait_for(lambda: (out / ".done" / "a.mp4.json").exists() or p.poll() is not None)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert not (out / "long.mp4.jsonl").exists(), "the run had finished before it was killed"
    r = _run(model, videos, out, "--engine", "ray", "--address", cluster.address, "--resume")
    assert r.returncode == 1, r.stderr
    _same_as_local(local, out)
    assert "a.mp4: complete in" in r.stderr  # skipped, not labelled again
    assert not list(out.glob("*.partial"))


def test_ctrl_c_leaves_the_outputs_as_the_local_engine_does(archive, cluster, tmp_path):
    model, videos, local = archive
    out = tmp_path / "ray"
    p = _start(model, videos, out, "--engine", "ray", "--address", cluster.address, "--workers", "2")
    _wait_for(lambda: (out / "long.mp4.jsonl.partial").exists() or p.poll() is not None)
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert not (out / "long.mp4.jsonl").exists() and (out / "long.mp4.jsonl.partial").exists()
    for name in ("a.mp4", "b.mp4"):  # finished before the stop: final, and as the local engine wrote them
        assert (out / f"{name}.jsonl").read_text() == (local / f"{name}.jsonl").read_text()
    partial = (out / "long.mp4.jsonl.partial").read_text()
    assert (local / "long.mp4.jsonl").read_text().startswith(partial)  # what it has is the run's beginning


def test_a_worker_killed_mid_file_is_retried(archive, cluster, tmp_path):
    model, videos, local = archive
    out = tmp_path / "ray"
    p = _start(model, videos, out, "--engine", "ray", "--address", cluster.address, "--workers", "2")
    killed: list[int] = []

    def kill_a_worker() -> bool:
        """While a file is half written: a decoding worker if one is busy, and an actor (restarted with its calls)."""
        if p.poll() is not None or not list(out.glob("*.partial")):
            return p.poll() is not None
        for title in ("ray::decode_range", "ray::Labeller"):
            for pid in cluster.workers_named(title)[:1]:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        return bool(killed)

    _wait_for(kill_a_worker)
    _stdout, stderr = p.communicate(timeout=300)
    assert killed, "the run ended before a Ray worker could be killed mid-file"
    assert p.returncode == 1, stderr
    _same_as_local(local, out)


def test_read_segments_gives_the_records_as_a_dataset(archive, cluster, tmp_path):
    import pyarrow.parquet as pq

    model, videos, local = archive
    script = ("from avfuse.stream.run.ray_data import read_segments\n"
              f"ds = read_segments([{str(videos)!r}], {str(model)!r}, address={cluster.address!r}, workers=2)\n"
              f"ds.write_parquet({str(tmp_path / 'pq')!r})\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ray_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {(r["source"], r["index"]): r for r in pq.read_table(tmp_path / "pq").to_pylist()}
    want = [json.loads(x) for f in FILES for x in (local / f"{f}.jsonl").read_text().splitlines()]
    segments = [r for r in want if r["type"] == "segment"]
    errors = [r for r in want if r["type"] == "error"]
    assert len(rows) == len(segments) + len(errors)
    for r in segments:
        got = rows[(r["source"], r["index"])]
        assert {k: got[k] for k in r if k != "top"} == {k: v for k, v in r.items() if k != "top"}
        assert [[t["label"], t["score"]] for t in got["top"]] == r["top"]
    for r in errors:
        got = rows[(r["source"], -1)]
        assert (got["type"], got["error"], got["detail"]) == ("error", r["error"], r["detail"])
