"""Metrics and evaluation: accuracy, macro-F1, a per-class report and the confusion matrix.

``classification_metrics`` is plain numpy; ``predict`` and ``evaluate`` run a model over an
in-memory segment set, optionally with one modality removed (its ``present`` column zeroed) to
show how much the model leans on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avfuse.models.net import AvfuseNet
from avfuse.models.torchdata import Tensors, to_tensors
from avfuse.stream.media.segment import MODALITIES

__all__ = ["Tensors", "classification_metrics", "evaluate", "gates_per_class", "predict", "to_tensors",
           "without_each_modality"]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """accuracy, macro_f1, per_class {label: precision, recall, f1, support}, confusion [true][pred]."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    seen = support > 0  # macro average over classes present in y_true
    return {
        "segments": len(y_true),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "per_class": {label: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                              "f1": round(float(f1[i]), 4), "support": int(support[i])}
                      for i, label in enumerate(labels)},
        "confusion": {"labels": list(labels), "matrix": confusion.tolist()},
    }


@torch.no_grad()
def predict(model: AvfuseNet, data: Tensors, *, drop: str | None = None, batch_size: int = 64,
            device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [N, C] and gates [N, 3] (in eval mode; the model's mode is restored after);
    ``drop`` removes one modality at test time."""
    was_training = model.training
    model.eval()
    probs, gates = [], []
    try:
        for start in range(0, len(data), batch_size):
            frames, audio, tokens, present, _ = data.batch(slice(start, start + batch_size))
            if drop is not None:
                present = present.clone()
                present[:, MODALITIES.index(drop)] = 0
            p, g, _ = model(frames.to(device), audio.to(device), tokens.to(device), present.to(device))
            probs.append(p.float().cpu().numpy())
            gates.append(g.float().cpu().numpy())
    finally:
        model.train(was_training)
    n_classes = len(model.config.labels)
    return (np.concatenate(probs) if probs else np.zeros((0, n_classes), np.float32),
            np.concatenate(gates) if gates else np.zeros((0, 3), np.float32))


def evaluate(model: AvfuseNet, data: Tensors, *, drop: str | None = None, batch_size: int = 64,
             device: str | torch.device = "cpu") -> dict:
    """Classification metrics of ``model`` on ``data`` plus the mean gate of each modality."""
    probs, gates = predict(model, data, drop=drop, batch_size=batch_size, device=device)
    metrics = classification_metrics(data.labels.numpy(), probs.argmax(axis=1), model.config.labels)
    metrics["mean_gates"] = {m: round(float(gates[:, i].mean()), 4) if len(gates) else 0.0
                             for i, m in enumerate(MODALITIES)}
    metrics["gates_per_class"] = gates_per_class(gates, data.labels.numpy(), model.config.labels)
    return metrics


def gates_per_class(gates: np.ndarray, y_true: np.ndarray, labels: Sequence[str]) -> dict:
    """{label: {modality: mean gate over the segments of that (true) class}}: which modality carries each
    class. A class with no segments is left out."""
    out = {}
    for i, label in enumerate(labels):
        mine = gates[np.asarray(y_true) == i]
        if len(mine):
            out[label] = {m: round(float(mine[:, j].mean()), 4) for j, m in enumerate(MODALITIES)}
    return out


def without_each_modality(model: AvfuseNet, data: Tensors, *, batch_size: int = 64,
                          device: str | torch.device = "cpu") -> dict:
    """Accuracy with each configured modality removed at test time: {"video": acc, ...}."""
    return {m: evaluate(model, data, drop=m, batch_size=batch_size, device=device)["accuracy"]
            for m in model.config.modalities}
