"""What ``avfuse train`` says it learnt: per-class figures, the confusion matrix, the gates per class, the
staged schedule's first stage, and warnings about data too thin to trust."""

from __future__ import annotations

import json
import logging

import pytest

torch = pytest.importorskip("torch")

from avfuse.models.class_report import class_table, data_warnings  # noqa: E402
from avfuse.stream.cli.main import main  # noqa: E402

FAST = ["--threads", "1", "--fps", "1", "--size", "32x32", "--batch-size", "8", "--backbone", "tiny",
        "--cross-fit-folds", "0"]



@pytest.mark.slow
def test_summary_and_metrics_show_each_class(synth, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(synth.manifest), "--test-manifest", str(synth.test_manifest), "-o",
                 str(run), "--epochs", "2", "--schedule", "staged", "--stage-epochs", "3", *FAST]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    for part, title in (("val", "validation"), ("test", "held-out test")):
        m = metrics[part]
        assert set(m["gates_per_class"]) <= set(synth.labels) and m["gates_per_class"]
        for gates in m["gates_per_class"].values():  # a mean of softmax gates: they share 1 between them
            assert sum(gates.values()) == pytest.approx(1.0, abs=1e-3)
        head = f"{title}: accuracy {m['accuracy']:.3f}"
        assert head in out
        section = out.split(head, 1)[1].splitlines()[2:2 + len(m["per_class"])]
        for (label, row), line in zip(m["per_class"].items(), section, strict=True):  # a row per class, as saved
            assert line.split()[:5] == [label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                                        str(row["support"])]
    assert "confusion (rows: true class" in out
    assert len(metrics["unimodal_stage"]) == 3 and len(metrics["history"]) == 2
    stage = [r["loss"] for r in metrics["unimodal_stage"]]
    assert stage[-1] < stage[0]  # the encoders learn on their own before they are fused


@pytest.mark.slow
def test_joint_schedule_the_default_has_no_unimodal_stage(synth, tmp_path):
    run = tmp_path / "joint"
    assert main(["train", "--manifest", str(synth.manifest), "-o", str(run), "--epochs", "1", *FAST]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["unimodal_stage"] == [] and metrics["train_config"]["schedule"] == "joint"


def test_thin_data_and_missing_validation_classes_are_warned_about():
    labels = ["calm", "busy", "alert"]
    warnings = data_warnings(labels, [0] * 20 + [1] * 20 + [2] * 3, [0, 0, 1])
    assert len(warnings) == 2
    assert "alert (3)" in warnings[0] and "calm" not in warnings[0]
    assert "absent from validation: alert" in warnings[1]
    assert data_warnings(labels, [0] * 9 + [1] * 9 + [2] * 9, [0, 1, 2]) == []


@pytest.mark.slow
def test_train_warns_on_a_run_too_small_to_trust(synth, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="avfuse.models.train_cmd"):
        assert main(["train", "--manifest", str(synth.manifest), "-o", str(tmp_path / "tiny"), "--epochs", "1",
                     "--stage-epochs", "1", "--val-split", "0.5", *FAST]) == 0
    assert any("fewer than 5 per class" in r.getMessage() for r in caplog.records)


def test_confusion_names_the_most_confused_pair():
    metrics = {"accuracy": 0.5, "macro_f1": 0.4, "segments": 8,
               "per_class": {"a": {"precision": 1.0, "recall": 0.25, "f1": 0.4, "support": 4},
                             "b": {"precision": 0.57, "recall": 1.0, "f1": 0.73, "support": 4}},
               "gates_per_class": {"a": {"video": 0.7, "audio": 0.2, "text": 0.1}},
               "confusion": {"labels": ["a", "b"], "matrix": [[1, 3], [0, 4]]}}
    text = "\n".join(class_table(metrics, "validation"))
    assert "most confused: a taken for b 3 times" in text
    row_a = next(x for x in text.splitlines() if x.strip().startswith("a "))
    assert row_a.split()[-3:] == ["0.70", "0.20", "0.10"]
    row_b = next(x for x in text.splitlines() if x.strip().startswith("b ") and "0.570" in x)
    assert row_b.split()[-1] == "-"
