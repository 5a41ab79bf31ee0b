"""Which part of a model misses which factor of a class.

When each class is a combination of factors, one per modality, and its name their values joined by ``_``
(the generalisation suite's ``stripes_low_water``), a wrong label says little: was the video's factor
missed, or the caption's? ``factor_accuracy`` splits the held-out accuracy by factor, for the fused head and
for each modality's own classifier (the auxiliary heads the training loss keeps, one per modality). A factor
that a modality's own classifier gets right and the fused head misses was learnt by the encoder and lost in
the fusion; one that both miss was never learnt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avfuse.models.net import AvfuseNet
from avfuse.models.torchdata import Tensors
from avfuse.stream.media.segment import MODALITIES

ABSENT = -1


def head_predictions(model: AvfuseNet, data: Tensors, *, batch_size: int = 64) -> dict[str, np.ndarray]:
    """{"fused": the class the model gives each segment (through its held-out confusions where it has them), and
    per modality of the model: its own classifier's class, ABSENT
    where the segment lacks the modality}."""
    model.eval()
    heads: dict[str, list[np.ndarray]] = {"fused": [], **{m: [] for m in model.config.modalities}}
    with torch.no_grad():
        for at in range(0, len(data), batch_size):
            frames, audio, tokens, present, _ = data.batch(torch.arange(at, min(len(data), at + batch_size)))
            heads["fused"].append(model(frames, audio, tokens, present)[0].argmax(1).numpy())
            seen = model.present_mask(tokens, present)
            for i, (m, emb) in enumerate(zip(MODALITIES, model.encode(frames, audio, tokens), strict=True)):
                if emb is not None:
                    own = model.unimodal[m](emb).argmax(1)
                    heads[m].append(torch.where(seen[:, i] > 0, own, torch.full_like(own, ABSENT)).numpy())
    return {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in heads.items()}


def factor_accuracy(labels: Sequence[str], y_true: np.ndarray, predictions: dict[str, np.ndarray], *,
                    sep: str = "_") -> dict[str, list[float | None]]:
    """{head: accuracy on each factor, over the segments the head scored (None: it scored none)}; {} when the
    labels do not all split into the same number (>= 2) of factors."""
    parts = [label.split(sep) for label in labels]
    if len({len(p) for p in parts}) != 1 or len(parts[0]) < 2:
        return {}
    table = np.array(parts)
    out: dict[str, list[float | None]] = {}
    for head, pred in predictions.items():
        scored = pred != ABSENT
        if not scored.any():
            out[head] = [None] * table.shape[1]
            continue
        truth, guess = table[y_true[scored]], table[pred[scored]]
        out[head] = [round(float(np.mean(truth[:, k] == guess[:, k])), 4) for k in range(table.shape[1])]
    return out
