"""``avfuse run`` end to end: real H.264 files decoded by PyAV, the colour model in onnxruntime,
records in files. Bad sources are recorded and the others go on."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

import onnxruntime
import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main
from avfuse.stream.run.sources import expand

A = ["red", "red", "green", "green", "blue"]
B = ["blue", "green"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    model = colour_model(d / "colour.onnx")
    (d / "clips" / "sub").mkdir(parents=True)
    colour_video(d / "clips" / "a.mp4", A)
    colour_video(d / "clips" / "sub" / "b.mp4", B, audio=False)
    (d / "clips" / "notes.txt").write_text("not media")
    (d / "broken.mp4").write_bytes(b"\x00garbage" * 500)
    return d, model


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _labels(records: list[dict]) -> list[str]:
    return [r["label"] for r in records if r["type"] == "segment"]


def test_folder_is_labelled_per_segment_with_events(media, tmp_path, capsys):
    d, model = media
    rc = main(["run", str(model), str(d / "clips"), "-o", str(tmp_path / "out"), "--no-cache", "--batch", "3"])
    assert rc == 0
    a, b = _records(tmp_path / "out" / "a.mp4.jsonl"), _records(tmp_path / "out" / "b.mp4.jsonl")
    assert _labels(a)[:5] == A and _labels(b)[:2] == B
    seg = next(r for r in a if r["type"] == "segment")
    assert seg["score"] > 0.99 and seg["top"][0][0] == "red" and len(seg["top"]) == 3
    assert seg["present"] == {"video": True, "audio": True, "text": False}
    assert [r["present"]["audio"] for r in b if r["type"] == "segment"] == [False] * len(_labels(b))
    events = [(e["label"], e["start"]) for e in a if e["type"] == "event"]
    assert events[:3] == [("red", 0.0), ("green", 2.0), ("blue", 4.0)]
    assert next(e for e in a if e["type"] == "event")["end"] == 2.0
    err = capsys.readouterr().err
    assert "2 source(s), 2 ok, 0 failed" in err and "x real time" in err and "p95" in err


def test_bad_sources_are_recorded_and_the_others_go_on(media, tmp_path, capsys):
    d, model = media
    out = tmp_path / "out"
    rc = main(["run", str(model), str(d / "broken.mp4"), str(d / "missing.mp4"), str(d / "clips" / "*.mp4"),
               str(d / "nothing-*.mkv"), "-o", str(out), "--no-cache", "--summary-json", str(tmp_path / "s.json")])
    assert rc == 1
    broken = _records(out / "broken.mp4.jsonl")
    assert broken[-1]["type"] == "error" and broken[-1]["error"] == "MediaError"
    assert _records(out / "missing.mp4.jsonl")[0]["detail"].endswith("no such file or folder")
    assert _labels(_records(out / "a.mp4.jsonl"))[:5] == A
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["ok"] == 1 and summary["failed"] == 3 and summary["segments"] >= 5
    assert "glob matches no files" in capsys.readouterr().err


def test_csv_and_table_sinks_together(media, tmp_path, capsys):
    d, model = media
    out = tmp_path / "out"
    rc = main(["run", str(model), str(d / "clips" / "sub" / "b.mp4"), "-o", str(out), "--sink", "csv",
               "--sink", "table", "--sink", "jsonl", "--no-cache", "--top-k", "2"])
    assert rc == 0
    rows = list(csv.DictReader((out / "b.mp4.csv").open()))
    assert [r["label"] for r in rows if r["type"] == "segment"][:2] == B
    assert json.loads(rows[0]["top"])[1][0] in ("red", "green")
    table = capsys.readouterr().out
    assert "label" in table.splitlines()[0] and "blue" in table and "EVENT" in table
    assert (out / "b.mp4.jsonl").is_file()


def test_jsonl_goes_to_stdout_without_an_output_folder(media, capsys):
    d, model = media
    assert main(["run", str(model), str(d / "clips" / "sub" / "b.mp4"), "--no-cache", "--smooth", "ema:0.5"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert _labels(lines)[0] == "blue"
    # EMA: the second (green) segment is half blue, half green; green still wins only narrowly or ties.
    second = [r for r in lines if r["type"] == "segment"][1]
    assert 0.45 < second["score"] < 0.55


def test_sources_from_stdin_and_two_sinks_on_stdout_is_an_error(media, tmp_path, monkeypatch, capsys):
    d, model = media
    listing = f"{d / 'clips' / 'a.mp4'}\n# a comment\n\n{d / 'clips' / 'sub' / 'b.mp4'}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(listing))
    assert [s.name for s in expand(["-"])] == [str(d / "clips" / "a.mp4"), str(d / "clips" / "sub" / "b.mp4")]
    assert main(["run", str(model), "-", "--sink", "table", "--sink", "jsonl", "--no-cache"]) == 1
    assert "would all write to stdout" in capsys.readouterr().err


def test_every_live_scheme_is_a_live_source_and_other_urls_are_files():
    live = ["rtsp://cam/1", "RTSP://cam/2", "rtsps://cam/3", "rtmp://h/a", "rtmps://h/b", "srt://h:9000",
            "udp://239.0.0.1:1234", "tcp://10.0.0.2:5000", "https://h/live/index.m3u8"]
    files = ["https://h/clip.mp4", "http://h/a.mkv", "file:///tmp/x.mp4"]
    sources = expand(live + files)
    assert [s.error for s in sources] == [None] * len(live + files)  # URLs are not looked for on disk
    assert [s.live for s in sources] == [True] * len(live) + [False] * len(files)
    assert all(s.path is None for s in sources)


def test_folder_expansion_is_recursive_and_by_extension(media):
    d, _ = media
    names = [Path(s.name).name for s in expand([str(d / "clips")])]
    assert names == ["a.mp4", "b.mp4"]
    empty = d / "empty"
    empty.mkdir(exist_ok=True)
    assert expand([str(empty)])[0].error.startswith("folder has no media files")


def test_bench_run_prints_the_three_throughputs_and_ratios(media, capsys):
    d, model = media
    assert main(["bench", "run", str(model), str(d / "clips" / "a.mp4"), "--no-naive"]) == 0
    out = capsys.readouterr().out
    assert "decode-only" in out and "end-to-end" in out and "end-to-end / decode-only" in out
    assert "naive" not in out.split("end-to-end / decode-only")[0]


@pytest.mark.slow
def test_bench_run_exports_a_default_model_and_runs_the_naive_loop(media, capsys):
    pytest.importorskip("torch")
    d, _ = media
    assert main(["bench", "run", str(d / "clips" / "a.mp4")]) == 0
    out = capsys.readouterr().out
    naive = next(line for line in out.splitlines() if "naive PyTorch loop" in line)
    e2e = next(line for line in out.splitlines() if line.strip().startswith("end-to-end "))
    assert naive.split()[3] == e2e.split()[1]  # the same number of segments on both sides
    assert "end-to-end / naive loop" in out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal():
    from avfuse.stream.run.summary import Progress, RunStats

    stats = RunStats(sources_ok=1, segments=5, media_s=10.0)
    tty, pipe = _Tty(), io.StringIO()
    with Progress(stats, 2, stream=tty, period_s=0.01), Progress(stats, 2, stream=pipe, period_s=0.01):
        time.sleep(0.05)
    assert "1/2 sources, 5 segments" in tty.getvalue() and "\r" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_resume_redoes_a_source_that_changed_since(media, tmp_path, capsys):
    _d, model = media
    clips = tmp_path / "clips"
    clips.mkdir()
    for name, colours in (("one.mp4", ["red"]), ("two.mp4", ["green"])):
        colour_video(clips / name, colours, audio=False)
    args = ["run", str(model), str(clips), "-o", str(tmp_path / "out"), "--no-cache", "--resume"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "2 skipped" in capsys.readouterr().err
    colour_video(clips / "two.mp4", ["blue"], audio=False)  # replaced: new size or mtime
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "1 ok" in err and "1 skipped" in err
    assert _labels(_records(tmp_path / "out" / "two.mp4.jsonl"))[0] == "blue"


def test_sources_with_the_same_file_name_get_distinct_outputs():
    from avfuse.stream.run.sources import Source, output_stems

    stems = output_stems([Source(name="a/clip.mp4"), Source(name="b/clip.mp4"), Source(name="c/other.mp4")])
    assert stems["c/other.mp4"] == "other.mp4"
    assert len({stems["a/clip.mp4"], stems["b/clip.mp4"]}) == 2
    assert all(s.startswith("clip.mp4-") for k, s in stems.items() if "clip" in k)


def test_real_720p_clip_with_5_1_audio(media, bunny, tmp_path, caplog):
    _, model = media
    rc = main(["run", str(model), str(bunny), "-o", str(tmp_path), "--no-cache", "--device", "tensorrt"])
    assert rc == 0
    segs = [r for r in _records(tmp_path / "bigbuckbunny.mp4.jsonl") if r["type"] == "segment"]
    assert [r["index"] for r in segs] == list(range(5))  # 5.3 s in 1 s windows: the last 0.3 s are too little
    assert all(r["present"]["video"] and r["present"]["audio"] for r in segs)
    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        assert "falling back to cpu" in caplog.text


def test_live_source_that_cannot_connect_fails_after_live_attempts(media, tmp_path, capsys, caplog):
    import socket

    d, model = media
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # refused once closed
    started = time.monotonic()
    rc = main(["run", str(model), f"rtsp://cam:pw-9876@127.0.0.1:{port}/x", str(d / "clips" / "a.mp4"), "-o",
               str(tmp_path / "out"), "--no-cache", "--live-attempts", "3", "--live-backoff", "0.05",
               "--live-backoff-max", "0.1"])
    err = capsys.readouterr().err
    assert rc == 1 and time.monotonic() - started < 20, err
    assert "could not connect after 3 attempts" in err and "pw-9876" not in err
    assert "reconnect attempt 3/3" in caplog.text and "pw-9876" not in caplog.text
    assert f"failed: rtsp://***@127.0.0.1:{port}/x: could not connect" in err  # named once
    assert _labels(_records(tmp_path / "out" / "a.mp4.jsonl"))[:5] == A  # the file alongside was labelled
    assert "1 ok, 1 failed" in err and "live: 1 source(s)" in err


def test_live_options_are_checked():
    with pytest.raises(SystemExit):
        main(["run", "m.onnx", "x.mp4", "--live-attempts", "many"])
    assert main(["run", "m.onnx", "rtsp://h/x", "--live-attempts", "-1"]) != 0
    assert main(["run", "m.onnx", "rtsp://h/x", "--live-backoff", "-2"]) != 0
