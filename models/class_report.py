"""What a training run learnt, per class: the confusion matrix, precision / recall / F1 and the mean gate of each
modality, as text for the summary ``avfuse train`` prints; and the warnings about data too thin to trust.

Plain Python over the metrics dicts of :mod:`avfuse.models.evaluate` (no torch), so the same text can be made again
from a run's ``metrics.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from avfuse.stream.media.segment import MODALITIES

MIN_SEGMENTS_PER_CLASS = 5  # fewer training (or validation) segments than this per class: a warning


def class_table(metrics: dict, title: str) -> list[str]:
    """Per-class precision, recall, F1, support and mean gates, then the confusion matrix (rows: true class)."""
    per_class, gates = metrics.get("per_class", {}), metrics.get("gates_per_class", {})
    if not per_class:
        return []
    width = max(8, *(len(label) for label in per_class))
    lines = [f"{title}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
             f"({metrics['segments']} segments)",
             f"  {'class':<{width}} {'precision':>9} {'recall':>6} {'F1':>6} {'support':>7}   mean gate "
             + " ".join(f"{m:>5}" for m in MODALITIES)]
    for label, row in per_class.items():
        gate = gates.get(label)
        shown = " ".join(f"{gate[m]:>5.2f}" for m in MODALITIES) if gate else "    -" * 3
        lines.append(f"  {label:<{width}} {row['precision']:>9.3f} {row['recall']:>6.3f} {row['f1']:>6.3f} "
                     f"{row['support']:>7}   {'':>9} {shown}")
    confusion = metrics.get("confusion")
    if confusion:
        labels, matrix = confusion["labels"], confusion["matrix"]
        cell = max(4, *(len(str(v)) for row in matrix for v in row))
        lines.append(f"  confusion (rows: true class, columns: predicted, in the order above; "
                     f"{_worst_pair(labels, matrix)})")
        lines += [f"  {label:<{width}} " + " ".join(f"{v:>{cell}}" for v in row)
                  for label, row in zip(labels, matrix, strict=True)]
    return lines


def _worst_pair(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    off = [(matrix[i][j], labels[i], labels[j]) for i in range(len(labels)) for j in range(len(labels)) if i != j]
    count, true, pred = max(off, default=(0, "", ""))
    return f"most confused: {true} taken for {pred} {count} times" if count else "no class confused"


def data_warnings(label_names: Sequence[str], train_labels: Sequence[int], val_labels: Sequence[int] | None
                  ) -> list[str]:
    """Plain warnings about data too thin to trust the figures: classes with fewer than
    MIN_SEGMENTS_PER_CLASS training segments, and classes in training but absent from validation."""
    out = []
    train = Counter(int(y) for y in train_labels)
    val = Counter(int(y) for y in val_labels) if val_labels is not None else Counter()
    thin = [f"{label_names[i]} ({train[i]})" for i in range(len(label_names)) if train[i] < MIN_SEGMENTS_PER_CLASS]
    if thin:
        out.append(f"only a few training segments for {', '.join(thin)}: fewer than {MIN_SEGMENTS_PER_CLASS} per "
                   "class rarely generalise; label more video of these classes")
    if val_labels is not None:
        missing = [label_names[i] for i in sorted(train) if val[i] == 0]
        if missing:
            out.append(f"classes in training but absent from validation: {', '.join(missing)}; their validation "
                       "figures are unknown and --keep best's choice of epoch ignores them (give more files, or a "
                       "larger --val-split)")
    return out
