"""Held-out accuracy split by factor, for the fused head and each modality's own classifier."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_model_net import config, inputs  # noqa: E402

from avfuse.models.factor_report import ABSENT, factor_accuracy, head_predictions  # noqa: E402
from avfuse.models.net import build_model  # noqa: E402
from avfuse.models.torchdata import Tensors  # noqa: E402

LABELS = ("dots_low_fire", "dots_low_water", "stripes_low_fire", "stripes_high_water")


def test_each_factor_is_scored_apart():
    y = np.array([0, 1, 2, 3])
    fused = np.array([2, 1, 2, 1])  # the first: wrong shape; the last: wrong shape and tone
    own_text = np.array([0, ABSENT, 2, 2])  # no caption on the second; the last: low fire for high water
    got = factor_accuracy(LABELS, y, {"fused": fused, "text": own_text, "audio": np.full(4, ABSENT)})
    assert got == {"fused": [0.5, 0.75, 1.0], "text": [1.0, 0.6667, 0.6667], "audio": [None, None, None]}


def test_labels_that_are_not_factor_names_get_no_split():
    assert factor_accuracy(("cat", "dog"), np.array([0]), {"fused": np.array([1])}) == {}
    assert factor_accuracy(("a_b", "c"), np.array([0]), {"fused": np.array([1])}) == {}


def test_head_predictions_follow_the_model_and_mark_absent_modalities():
    torch.manual_seed(0)
    model = build_model(config()).eval()
    frames, audio, tokens, present = inputs()
    tokens[1] = 0  # no caption
    present[2, 1] = 0  # no audio track
    data = Tensors(frames=frames, audio=audio, tokens=tokens, present=present, labels=torch.zeros(3, dtype=torch.long))
    got = head_predictions(model, data, batch_size=2)  # two batches
    with torch.no_grad():
        probs, _, _ = model(frames, audio, tokens, present)
        own_video = model.unimodal["video"](model.encode(frames, audio, tokens)[0]).argmax(1).numpy()
    assert got["fused"].tolist() == probs.argmax(1).tolist()
    assert got["video"].tolist() == own_video.tolist()
    assert got["text"][1] == ABSENT and got["audio"][2] == ABSENT and (got["text"][[0, 2]] != ABSENT).all()
