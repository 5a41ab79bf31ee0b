"""The default ``avfuse train`` recipe learns data it never generated: a small set of the generalisation suite
(real photographs, noise textures, 8 kHz audio, captions missing on a quarter of the spans), not ``avfuse
synth``'s, trained with no tuning flags and scored on held-out videos rendered from other seeds."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from avfuse.models.suite import SuiteSet, generate
from avfuse.stream.cli.main import main

SMALL = SuiteSet(name="small", width=176, height=144, fps=15, sample_rate=8000, channels=1, classes=4, rule="pair",
                 videos=24, test_videos=6, seconds=8.0, spans="halves", missing_captions=0.25, imbalance=0.0,
                 visuals="photos", sounds="textures", container="mixed")


@pytest.mark.slow
def test_defaults_learn_a_set_avfuse_synth_did_not_make(tmp_path, capsys):
    made = generate(SMALL, tmp_path / "data", seed=4)
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(made.train_manifest), "--test-manifest", str(made.test_manifest),
                 "-o", str(run), "--threads", "2"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["segments"] == SMALL.test_videos * 4  # two 4 s halves a file, two 2 s windows a half
    # the pair rule: one modality alone leaves two classes open (at most 50%), chance is 25%
    assert test["accuracy"] >= 0.85, capsys.readouterr().out
    assert metrics["train_config"]["backbone"] == "tiny" and metrics["train_config"]["schedule"] == "joint"
    # every training file was held out once, and the model serves the combination through those confusions
    crossed = metrics["cross_fit"]
    assert crossed["folds"] == 4 and crossed["held_out_segments"] == SMALL.videos * 4
    assert metrics["model"]["combination"] == "held-out confusions"
    # each classifier's groups of classes it could not tell apart cover every class once
    labels = sorted(metrics["val"]["confusion"]["labels"])
    for name in ("video", "audio", "text", "fused"):
        told = [label for group in crossed["groups"][name] for label in group]
        assert sorted(told) == labels and len(labels) == 4
    out = capsys.readouterr().out
    assert "cross-fitting: 4 shares" in out and "groups of classes each tells apart (of 4)" in out
