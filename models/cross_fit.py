"""Cross-fitting: what each of a model's classifiers says on files it never trained on, and a model that
reads its classifiers through that.

A model trained on a few dozen files learns more from each file than it should. Where a class is a
combination of factors (the video's texture, the audio's pitch, the caption's words), a modality's own
classifier (``AvfuseNet.unimodal``) can only know its factor, yet on its training files it names the
whole class with confidence: the class of the training file it resembles. The fused head learns to trust
that, and on new files it follows the guess. On files the model did not train on, though, each
classifier is honest: how often it says class k when the class is y (its confusion matrix) shows which
classes it can tell apart and which it cannot.

``cross_fit`` trains ``folds - 1`` more models with the recipe, each holding out another share of the
training files (the served model's validation files are the first share), so that every training file is
held out once. It runs each model on its held-out files and counts, per true class, the probabilities
that each classifier (video, audio, text, and the fused head) gives: four confusion matrices, smoothed by
``ALPHA`` and normalised per row, then each classifier's rows pooled over the classes it cannot tell
apart (:mod:`avfuse.models.class_groups`: a row's differences within such a group are noise). The served
model keeps its weights and gets the matrices. It then
scores class y by ``sum over classifiers c present: w_c log sum_k p_c(k) K_c[y, k]``: each classifier's
output is evidence, weighed by how it behaved on unseen files (naive Bayes over the classifiers), the fused
head's at half weight (``FUSED_EVIDENCE``: it reads the same embeddings as the others). On the
generalisation suite (``avfuse bench quality``) it raised held-out accuracy on the sets where each modality
gives one factor of the class, and cost nothing on the others; it costs ``folds - 1`` more trainings. The
saved model's validation figures are the combination's, whose matrices counted the validation files too, so
they lean optimistic: a ``--test-manifest`` gives the honest figure.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from avfuse.models import class_groups, data
from avfuse.models.evaluate import Tensors, evaluate
from avfuse.models.net import FUSED_EVIDENCE, AvfuseNet, build_model
from avfuse.models.train import TrainResult, held_out_tensors, train
from avfuse.stream.errors import DataError
from avfuse.stream.media.segment import MODALITIES

log = logging.getLogger(__name__)

ALPHA = 0.3  # pseudo-count added to every cell of a confusion matrix: a class seen on few files keeps doubt
CLASSIFIERS = (*MODALITIES, "fused")


@dataclass(frozen=True)
class HeldOut:
    """Every classifier's probabilities on segments its model did not train on."""

    probs: np.ndarray  # float [N, 4, C]: video, audio, text, fused
    present: np.ndarray  # float [N, 4]: 0 where the modality is absent (the fused head is always there)
    labels: np.ndarray  # int [N]


@torch.no_grad()
def held_out(model: AvfuseNet, tensors: Tensors, *, batch_size: int = 64) -> HeldOut:
    """``model``'s classifiers on ``tensors``, as the served model reads them (eval mode, no modality dropout)."""
    was_training = model.training
    model.eval()
    try:
        outs = [model.classifier_probs(*tensors.batch(slice(at, at + batch_size))[:4])
                for at in range(0, len(tensors), batch_size)]
    finally:
        model.train(was_training)
    present = [torch.cat([p, torch.ones_like(p[:, :1])], dim=1) for p, _ in outs]  # the fused head: always
    return HeldOut(probs=torch.cat([q for _, q in outs]).numpy(), present=torch.cat(present).numpy(),
                   labels=tensors.labels.numpy())


def confusions(outputs: HeldOut, num_classes: int, *, alpha: float = ALPHA) -> np.ndarray:
    """float32 [4, C, C]: row y of matrix c is classifier c's mean probabilities on held-out segments of class
    y (where the classifier's modality is there), with ``alpha`` added to every cell before normalising."""
    counts = soft_counts(outputs, num_classes) + alpha
    return (counts / counts.sum(axis=2, keepdims=True)).astype(np.float32)


def soft_counts(outputs: HeldOut, num_classes: int) -> np.ndarray:
    """float64 [4, C, C]: per classifier, true class x the summed probabilities it gave (where present)."""
    counts = np.zeros((len(CLASSIFIERS), num_classes, num_classes), dtype=np.float64)
    for c in range(len(CLASSIFIERS)):
        np.add.at(counts[c], outputs.labels, outputs.probs[:, c] * outputs.present[:, c:c + 1])
    return counts


def pooled_confusions(outputs: HeldOut, num_classes: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(``confusions`` with each classifier's rows pooled over the classes it cannot tell apart, float32
    [4, C, C]; each classifier's group per class, models/class_groups.py)."""
    matrices, counts = confusions(outputs, num_classes), soft_counts(outputs, num_classes)
    groups = [class_groups.indistinct_groups(counts[c], int(outputs.present[:, c].sum()))
              for c in range(len(CLASSIFIERS))]
    pooled = np.stack([class_groups.pool(matrices[c], groups[c]) for c in range(len(CLASSIFIERS))])
    return pooled.astype(np.float32), groups


def with_confusions(model: AvfuseNet, matrices: np.ndarray) -> AvfuseNet:
    """A copy of ``model`` that combines its classifiers through ``matrices`` (in eval mode)."""
    combined = build_model(replace(model.config, confusions=True))
    state = {**model.state_dict(), "confusions": torch.from_numpy(matrices)}
    combined.load_state_dict(state)
    return combined.eval()


def _parts(ds, train_idx: np.ndarray, val_idx: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Segment indices of ``folds`` shares of files: the validation files first, then the training files dealt
    into ``folds - 1`` shares by source (stratified by label)."""
    if folds == 2:
        return [val_idx, train_idx]
    files = len({ds.sources[i] for i in train_idx})
    if files < folds - 1:
        raise DataError(f"{files} training files cannot make {folds - 1} shares besides the validation files")
    rest = data.kfold_by_source(ds.subset(train_idx), folds - 1, seed)
    return [val_idx, *(train_idx[held] for _, held in rest)]


def cross_fit(result: TrainResult, ds, train_idx: np.ndarray, val_idx: np.ndarray, *, config, decode: dict,
              folds: int) -> tuple[TrainResult, dict]:
    """``result``'s model reading its classifiers through confusion matrices from ``folds`` shares of files
    (``result`` was trained on ``train_idx`` and validated on ``val_idx``) -> (the new result, a report).

    Where the files cannot be dealt into ``folds`` shares (too few, or a label held by too few files) the
    model is returned as it is, and the report says why."""
    began = time.perf_counter()
    num_classes = len(result.config.labels)
    try:
        parts = _parts(ds, np.asarray(train_idx), np.asarray(val_idx), folds, config.seed)
    except (DataError, ValueError) as e:
        log.warning("cross-fitting skipped: the training files cannot be dealt into %d shares (%s); the model "
                    "keeps its fused head alone", folds, e)
        return result, {"folds": folds, "skipped": str(e)}
    val = held_out_tensors(result, ds.subset(val_idx))
    outputs = [held_out(result.model, val)]
    used = np.concatenate(parts)
    for k, part in enumerate(parts[1:], start=2):
        log.info("cross-fitting: model %d of %d, holding out %d segments", k, folds, len(part))
        rest = np.setdiff1d(used, part)
        held = ds.subset(part)
        fold = train(ds.subset(rest), held, config=config, decode=decode)
        outputs.append(held_out(fold.model, held_out_tensors(fold, held)))
    joined = HeldOut(probs=np.concatenate([o.probs for o in outputs]),
                     present=np.concatenate([o.present for o in outputs]),
                     labels=np.concatenate([o.labels for o in outputs]))
    matrices, groups = pooled_confusions(joined, num_classes)
    model = with_confusions(result.model, matrices)
    accuracy, seconds = _accuracies(joined, matrices), round(time.perf_counter() - began, 2)
    labels = result.config.labels
    told_apart = {name: [[labels[k] for k in np.flatnonzero(g == v)] for v in np.unique(g)]
                  for name, g in zip(CLASSIFIERS, groups, strict=True)}
    report = {"folds": folds, "held_out_segments": len(joined.labels), "held_out_accuracy": accuracy,
              "groups": told_apart, "seconds": seconds}
    log.info("cross-fitting: %d held-out segments, fused head %.3f, read through their confusions %.3f (%.1f s)",
             len(joined.labels), accuracy["fused"], accuracy["combined"], seconds)
    new = replace(result, model=model, config=model.config, metrics=evaluate(model, val),
                  seconds=result.seconds + seconds)
    return new, report


def combine(probs: np.ndarray, present: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """float [N, C] scores: sum over the classifiers present of w log sum_k p(k) K[y, k], w = FUSED_EVIDENCE for
    the fused head and 1 for the others (what the model computes)."""
    evidence = np.log(np.einsum("nck,cyk->ncy", probs, matrices))
    weights = np.array([1.0] * len(MODALITIES) + [FUSED_EVIDENCE])
    return (evidence * (present * weights)[:, :, None]).sum(axis=1)


def _accuracies(outputs: HeldOut, matrices: np.ndarray) -> dict:
    """Held-out accuracy of each classifier and of their combination (the matrices were counted on these very
    segments, so the combination's figure leans optimistic; a test manifest is the honest one)."""
    y = outputs.labels
    out = {}
    for c, name in enumerate(CLASSIFIERS):
        seen = outputs.present[:, c] > 0
        out[name] = round(float((outputs.probs[seen, c].argmax(1) == y[seen]).mean()), 4) if seen.any() else None
    out["combined"] = round(float((combine(outputs.probs, outputs.present, matrices).argmax(1) == y).mean()), 4)
    return out
