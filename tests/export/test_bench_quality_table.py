"""The suite bench's closing line counts only what it trained."""

from __future__ import annotations

from avfuse.export.bench_quality import table


def _row(name: str, gated: float, **heads: float) -> dict:
    return {"set": name, "classes": 8, "rule": "factor", "test_segments": 48, "gated": gated, "train_seconds": 90.0,
            "onnx_fp32": gated, "onnx_int8": gated, **heads}


def test_without_the_other_heads_the_line_says_they_were_not_trained():
    last = table([_row("a", 0.95), _row("b", 0.75)]).splitlines()[-1]
    assert "on 1/2 sets" in last and "not trained" in last and "concat and sequential on" not in last


def test_with_the_other_heads_a_set_where_concat_wins_is_not_counted():
    text = table([_row("a", 0.95, concat=0.90, sequential=0.80), _row("b", 0.75, concat=0.80, sequential=0.70)])
    assert "gated >= concat and sequential on 1/2" in text.splitlines()[-1]
    assert "concat" in text.splitlines()[0]
