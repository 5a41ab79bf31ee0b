"""``avfuse train`` end to end on generated media: real PyAV decoding, a checkpoint, metrics, folds, ablation."""

from __future__ import annotations

import json
import socket
import statistics

import pytest

torch = pytest.importorskip("torch")

from avfuse.models.checkpoint import load_checkpoint  # noqa: E402
from avfuse.stream.cli.main import main  # noqa: E402
from avfuse.stream.errors import DependencyError  # noqa: E402

FAST = ["--epochs", "2", "--threads", "1", "--fps", "1", "--size", "32x32", "--batch-size", "8", "--backbone", "tiny"]



@pytest.mark.slow
def test_train_writes_checkpoint_and_metrics(synth, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--manifest", str(synth.manifest), "--test-manifest", str(synth.test_manifest),
                 "-o", str(run), "--fusion", "concat", *FAST[:-2]])  # the default backbone
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out test: accuracy" in out and "no video" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["without"]) == {"video", "audio", "text"}
    assert metrics["test"]["segments"] == len(synth.test)
    assert len(metrics["history"]) == 2 and sorted(metrics["val"]["confusion"]["labels"]) == sorted(synth.labels)
    _model, ckpt = load_checkpoint(run / "model.pt")
    assert ckpt.config.fusion == "concat" and sorted(ckpt.config.labels) == sorted(synth.labels)
    assert ckpt.config.image_backbone == "tiny"
    assert ckpt.decode["width"] == 32 and ckpt.decode["frames"] == 2 and ckpt.config.frames == 2
    assert ckpt.metrics["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert ckpt.train_args["epochs"] == 2


@pytest.mark.slow
def test_folds_and_ablation(synth, tmp_path, capsys):
    assert main(["train", "--manifest", str(synth.manifest), "-o", str(tmp_path / "cv"), "--folds", "2",
                 "--epochs", "1", *FAST[2:]]) == 0
    folds = json.loads((tmp_path / "cv" / "metrics.json").read_text())["folds"]
    assert folds["k"] == 2 and [f["fold"] for f in folds["per_fold"]] == [1, 2]
    accuracies = [f["accuracy"] for f in folds["per_fold"]]
    assert folds["accuracy_mean"] == pytest.approx(statistics.fmean(accuracies))
    assert folds["accuracy_std"] == pytest.approx(statistics.pstdev(accuracies))
    assert "2-fold cross-validation: accuracy" in capsys.readouterr().out
    assert main(["train", "--manifest", str(synth.manifest), "--test-manifest", str(synth.test_manifest),
                 "-o", str(tmp_path / "ab"), "--ablate", "--epochs", "1", "--cross-fit-folds", "0", *FAST[2:]]) == 0
    table = capsys.readouterr().out
    rows = json.loads((tmp_path / "ab" / "ablation.json").read_text())["rows"]
    assert [(tuple(r["modalities"]), r["fusion"]) for r in rows][-3:] == [
        (("video", "audio", "text"), f) for f in ("gated", "concat", "sequential")]
    assert len(rows) == 9 and "video+audio+text" in table and "sequential" in table
    checks = json.loads((tmp_path / "ab" / "ablation.json").read_text())["comparisons"]
    assert [c["other"] for c in checks] == ["concat", "sequential", "trained on audio+text",
                                            "trained on video+text", "trained on video+audio"]
    gated = next(r for r in rows if r["fusion"] == "gated" and len(r["modalities"]) == 3)
    assert checks[2]["gated_accuracy"] == gated["without"]["video"]
    assert checks[2]["holds_on_all"] == (gated["without"]["video"] >= rows[5]["accuracy"])
    assert checks[2]["holds"] == (checks[2]["kept_gated_accuracy"] >= checks[2]["kept_other_accuracy"])
    assert "gated without text" in table and "sign test p =" in table and "segments that keep audio and text" in table
    ablation = json.loads((tmp_path / "ab" / "ablation.json").read_text())
    segments = int(ablation["text"].split("set, ")[1].split(" segments")[0])
    for c in checks:  # the segments only one side gets right make up the accuracy difference
        assert c["only_gated_right"] - c["only_other_right"] == round((c["gated_accuracy"] - c["other_accuracy"])
                                                                      * segments)
    # the synth set has windows without a caption and files without audio: fewer keep both other modalities
    kept = {c["gated"]: c["kept_segments"] for c in checks[2:]}
    assert kept["gated without video"] < segments and kept["gated without audio"] < segments
    for c in checks[2:]:
        assert c["kept_segments"] + c["rest_segments"] == segments
        assert c["kept_only_gated_right"] - c["kept_only_other_right"] == round(
            (c["kept_gated_accuracy"] - c["kept_other_accuracy"]) * c["kept_segments"])


def test_paired_comparison_counts_the_segments_one_side_gets_right():
    import numpy as np

    from avfuse.models.train_cmd import comparisons, sign_test

    three = [{"modalities": ["video", "audio", "text"], "fusion": "gated", "accuracy": 1.0,
              "without": {"video": 0.5}},
             {"modalities": ["audio", "text"], "fusion": "gated", "accuracy": 0.75}]
    correct = {"video+audio+text/gated/": np.array([True] * 4),
               "video+audio+text/gated/video": np.array([True, False, True, False]),
               "audio+text/gated/": np.array([True, True, True, False])}
    (check,) = comparisons(three, correct)
    assert (check["holds"], check["only_gated_right"], check["only_other_right"]) == (False, 0, 1)
    assert check["sign_test_p"] == 1.0  # one segment: no evidence either way
    assert sign_test(0, 10) == pytest.approx(2 / 1024) and sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0
    assert "only_gated_right" not in comparisons(three)[0]  # without per-segment results: accuracies only
    # segment 4 lacks a second modality: with video removed it keeps one; on the other three the gated model wins
    (check,) = comparisons(three, correct, {"video": np.array([True, True, True, False])})
    assert (check["holds"], check["holds_on_all"], check["kept_segments"]) == (False, False, 3)
    correct["audio+text/gated/"], three[1]["accuracy"] = np.array([True, False, False, True]), 0.5
    (check,) = comparisons(three, correct, {"video": np.array([True, True, True, False])})
    assert (check["holds"], check["holds_on_all"]) == (True, True)
    assert (check["kept_gated_accuracy"], check["kept_other_accuracy"]) == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    assert (check["kept_only_gated_right"], check["kept_only_other_right"]) == (1, 0)
    correct["audio+text/gated/"], three[1]["accuracy"] = np.array([False, True, True, True]), 0.75
    (check,) = comparisons(three, correct, {"video": np.array([True, True, True, False])})
    assert (check["holds"], check["holds_on_all"]) == (True, False)  # the loss is on the one-modality segment
    assert (check["rest_segments"], check["rest_only_gated_right"], check["rest_only_other_right"]) == (1, 0, 1)


def test_user_errors_are_one_line(synth, tmp_path, capsys):
    assert main(["train", "--manifest", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "r")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    assert main(["train", "--manifest", str(synth.manifest), "-o", str(tmp_path / "r"), "--modality-dropout", "1.5",
                 *FAST]) == 1
    assert "modality_dropout" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--manifest", str(synth.manifest), "-o", str(tmp_path / "r"), "--device", "cuda",
                     *FAST]) == 1
        assert "no CUDA GPU" in capsys.readouterr().err


def _online() -> bool:
    try:
        socket.create_connection(("download.pytorch.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_pretrained_offline_is_a_clear_error(monkeypatch, tmp_path):
    if _online():
        pytest.skip("the machine can reach download.pytorch.org; the offline message cannot be shown")
    from avfuse.models.image import make_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty weights cache
    with pytest.raises(DependencyError, match=r"could not download.*without --pretrained"):
        make_backbone("mobilenet_v3_small", pretrained=True)
