"""Records are typed (avfuse.stream.records): every field of every record type reaches JSON and CSV alike."""

from __future__ import annotations

import csv
import io
import json

from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main
from avfuse.stream.records import (
    CSV_COLUMNS,
    RECORD_TYPES,
    ErrorRecord,
    EventRecord,
    GapRecord,
    SegmentRecord,
    WarningRecord,
    as_dict,
)
from avfuse.stream.run.sinks.csv import CsvSink

ONE_OF_EACH = [
    SegmentRecord(source="cam", index=4, start=8.0, end=10.0, label="red", score=0.9, top=(("red", 0.9),),
                  gates={"video": 0.5, "audio": 0.3, "text": 0.2}, present={"video": True, "audio": False,
                                                                            "text": False}, wallclock=1.7e9),
    EventRecord(source="cam", label="red", start=8.0, end=12.0, score=0.85),
    GapRecord(source="cam", start_wallclock=1.7e9, end_wallclock=1.7e9 + 5, reason="connection lost"),
    WarningRecord(source="cam", warning="discontinuity", stream="video", start=3.0, end=3.0, back_s=9.5,
                  detail="timestamps jump back"),
    ErrorRecord(source="bad.mp4", error="MediaError", detail="bad.mp4: not a readable media file"),
]


def _csv(records: list[dict]) -> list[dict]:
    buf = io.StringIO()
    sink = CsvSink(None, stream=buf)
    for rec in records:
        sink.write("-", rec)
    return list(csv.DictReader(io.StringIO(buf.getvalue(), newline="")))


def test_each_record_type_is_here_and_says_its_type_first():
    assert {cls.TYPE for cls in RECORD_TYPES} == {"segment", "event", "gap", "warning", "error"}
    for rec in ONE_OF_EACH:
        d = as_dict(rec)
        assert next(iter(d)) == "type" and d["type"] == rec.TYPE
        assert json.loads(json.dumps(d)) == d  # plain JSON


def test_csv_drops_no_field_of_any_record():
    rows = _csv([as_dict(r) for r in ONE_OF_EACH])
    assert [r["type"] for r in rows] == ["segment", "event", "gap", "warning", "error"]
    seg, _, gap, warning, error = rows
    assert (seg["present_video"], seg["present_audio"], seg["wallclock"]) == ("True", "False", "1700000000.0")
    assert (seg["gate_video"], json.loads(seg["top"])) == ("0.5", [["red", 0.9]])
    assert (gap["start_wallclock"], gap["reason"]) == ("1700000000.0", "connection lost")
    assert (warning["stream"], warning["back_s"]) == ("video", "9.5")
    assert error["error"] == "MediaError" and all(r["extra"] == "" for r in rows)
    for rec, row in zip(ONE_OF_EACH, rows, strict=True):  # every value of the JSON object is in its row
        for key, value in as_dict(rec).items():
            if isinstance(value, dict):
                assert all(row[f"{'gate' if key == 'gates' else key}_{m}"] == str(v) for m, v in value.items())
            elif key != "top":
                assert row[key] == str(value)


def test_a_key_no_record_declares_is_kept_in_extra():
    (row,) = _csv([as_dict(ONE_OF_EACH[1]) | {"zone": "gate 3"}])
    assert json.loads(row["extra"]) == {"zone": "gate 3"}
    assert set(row) == set(CSV_COLUMNS)


def test_optional_fields_are_left_out_until_set_and_then_have_their_own_column():
    event = ONE_OF_EACH[1]
    assert "clip" not in as_dict(event)
    with_clip = EventRecord(**{**vars(event), "clip": "/clips/cam.8000.red.mkv"})
    segment = SegmentRecord(**{**vars(ONE_OF_EACH[0]), "model": "0123456789ab"})
    rows = _csv([as_dict(with_clip), as_dict(segment)])
    assert rows[0]["clip"] == "/clips/cam.8000.red.mkv" and rows[1]["model"] == "0123456789ab"
    assert all(r["extra"] == "" for r in rows)


def test_a_run_writes_the_same_records_to_jsonl_and_csv(tmp_path, capsys):
    model = colour_model(tmp_path / "colour.onnx")
    clip = colour_video(tmp_path / "clip.mp4", ["red", "green"])
    assert main(["run", str(model), str(clip), "-o", str(tmp_path / "out"), "--sink", "jsonl", "--sink", "csv",
                 "--no-cache"]) == 0
    capsys.readouterr()
    jsonl = [json.loads(x) for x in (tmp_path / "out" / "clip.mp4.jsonl").read_text().splitlines()]
    rows = _rows(tmp_path / "out" / "clip.mp4.csv")
    assert [r["type"] for r in rows] == [r["type"] for r in jsonl] and len(rows) >= 2
    for rec, row in zip(jsonl, rows, strict=True):
        assert row["label"] == rec.get("label", "") and row["present_video"] == str(rec.get("present", {})
                                                                                    .get("video", ""))


def _rows(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(), newline="")))
