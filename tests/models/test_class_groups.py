"""Which classes a classifier cannot tell apart: groups found from held-out counts alone, and pooling that
keeps a classifier's noise out of the combined scores."""

from __future__ import annotations

import numpy as np
import pytest

from avfuse.models.class_groups import indistinct_groups, pool
from avfuse.models.cross_fit import HeldOut, combine, confusions, pooled_confusions


def _same_groups(found: np.ndarray, expected: list[int]) -> bool:
    """The two labellings make the same partition (group numbers may differ)."""
    pairs = {(int(a), int(b)) for a, b in zip(found, expected, strict=True)}
    return len(pairs) == len(set(found)) == len(set(expected))


def _factor_outputs(rng: np.random.Generator, n: int, *, video_levels: int = 3) -> HeldOut:
    """Classes (v, a, t) with v in Z_video_levels and a, t in {0, 1}: class = 4v + 2a + t. Each modality's
    classifier knows its factor and names a random class of it with confidence (the training file it
    resembles), wrong on its factor a tenth of the time; the fused head is right 40% of the time."""
    classes = 4 * video_levels
    y = rng.integers(0, classes, n)
    v, a, t = y // 4, (y // 2) % 2, y % 2
    probs = np.full((n, 4, classes), 0.01)
    wrong = rng.random((n, 3)) < 0.1
    v = np.where(wrong[:, 0], rng.integers(0, video_levels, n), v)
    a, t = np.where(wrong[:, 1], 1 - a, a), np.where(wrong[:, 2], 1 - t, t)
    rows = np.arange(n)
    probs[rows, 0, 4 * v + rng.integers(0, 4, n)] = 0.9
    probs[rows, 1, 4 * rng.integers(0, video_levels, n) + 2 * a + rng.integers(0, 2, n)] = 0.9
    probs[rows, 2, 4 * rng.integers(0, video_levels, n) + 2 * rng.integers(0, 2, n) + t] = 0.9
    probs[rows, 3, np.where(rng.random(n) < 0.4, y, rng.integers(0, classes, n))] = 0.9
    probs /= probs.sum(axis=2, keepdims=True)
    return HeldOut(probs=probs, present=np.ones((n, 4)), labels=y)


@pytest.mark.parametrize("video_levels", [2, 3])
def test_each_modality_s_factor_is_found_as_its_groups(video_levels):
    rng = np.random.default_rng(video_levels)
    seen = _factor_outputs(rng, 160, video_levels=video_levels)  # what 40 files of 8 s give at 2 s windows
    _, groups = pooled_confusions(seen, 4 * video_levels)
    y = np.arange(4 * video_levels)
    assert _same_groups(groups[0], list(y // 4))  # the video knows v
    assert _same_groups(groups[1], list((y // 2) % 2))  # the audio a
    assert _same_groups(groups[2], list(y % 2))  # the text t


def test_a_classifier_that_tells_every_class_apart_keeps_every_row():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 120)
    counts = np.zeros((6, 6))
    np.add.at(counts, (y, np.where(rng.random(120) < 0.85, y, rng.integers(0, 6, 120))), 1.0)
    assert len(set(indistinct_groups(counts, 120))) == 6


def test_pooling_gives_each_class_its_group_s_mean_row():
    m = np.array([[0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9]])
    out = pool(m, np.array([0, 0, 1]))
    assert np.allclose(out[0], [0.4, 0.6, 0.0]) and np.allclose(out[1], out[0]) and np.allclose(out[2], m[2])
    assert np.allclose(out.sum(axis=1), 1)


def test_pooled_rows_label_new_files_better_than_the_raw_rows():
    # few held-out segments per class: the raw rows' noise outvotes what each classifier knows
    wins = []
    for seed in range(5):
        rng = np.random.default_rng(10 + seed)
        seen, new = _factor_outputs(rng, 160), _factor_outputs(rng, 2000)
        raw = (combine(new.probs, new.present, confusions(seen, 12)).argmax(1) == new.labels).mean()
        pooled = (combine(new.probs, new.present, pooled_confusions(seen, 12)[0]).argmax(1) == new.labels).mean()
        wins.append(pooled - raw)
    assert min(wins) > 0 and np.mean(wins) > 0.03
