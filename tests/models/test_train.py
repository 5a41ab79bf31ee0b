"""Training on in-memory segment sets: it learns, it is repeatable with a seed, it rejects bad setups.

The sets are shaped like avfuse.models.data.SegmentSet. Each class is marked in every modality (frame colour, a
tone, a caption word) plus noise; ``informative`` picks which modalities carry the mark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avfuse.models.evaluate import classification_metrics, evaluate  # noqa: E402
from avfuse.models.train import TrainConfig, held_out_tensors, train  # noqa: E402
from avfuse.stream.errors import ConfigError, DataError  # noqa: E402


@dataclass
class ArraySegments:
    frames: np.ndarray
    audio: np.ndarray
    texts: list[str]
    present: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    sources: list[str] = field(default_factory=list)
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def subset(self, idx) -> ArraySegments:
        idx = np.asarray(idx)
        return ArraySegments(self.frames[idx], self.audio[idx], [self.texts[i] for i in idx], self.present[idx],
                             self.labels[idx], self.label_names, [self.sources[i] for i in idx], self.starts[idx])


WORDS = ("apple", "river", "stone", "cloud")
TONES_HZ = (300.0, 900.0, 2000.0, 3500.0)


def make_segments(n: int, *, classes: int = 3, seed: int = 0, frames: int = 2, size: int = 32,
                  samples: int = 8000, informative=("video", "audio", "text")) -> ArraySegments:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    t = np.arange(samples) / 16000
    frames_ = rng.integers(0, 60, size=(n, frames, size, size, 3)).astype(np.uint8)
    audio = (0.05 * rng.standard_normal((n, samples))).astype(np.float32)
    texts = []
    for i, y in enumerate(labels):
        if "video" in informative:
            frames_[i, ..., y % 3] += 150
        if "audio" in informative:
            audio[i] += 0.5 * np.sin(2 * np.pi * TONES_HZ[y] * t).astype(np.float32)
        texts.append(f"some {WORDS[y] if 'text' in informative else 'word'} here")
    return ArraySegments(frames=frames_, audio=audio, texts=texts, present=np.ones((n, 3), np.float32),
                         labels=labels.astype(np.int64), label_names=tuple(f"class{i}" for i in range(classes)),
                         sources=[f"file{i // 4}.mp4" for i in range(n)], starts=np.zeros(n))


DECODE = {"sample_rate": 16000}
FAST = dict(dim=32, n_mels=32, epochs=8, batch_size=8, lr=3e-3, threads=1, progress=False, backbone="tiny")


def test_learns_a_separable_set_well_above_chance():
    ds, val = make_segments(48, classes=3, seed=0), make_segments(24, classes=3, seed=1)
    result = train(ds, val, config=TrainConfig(**FAST), decode=DECODE)
    assert result.metrics["accuracy"] >= 0.8  # chance is 1/3
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert not result.model.training
    assert result.config.labels == ("class0", "class1", "class2") and result.config.frames == 2


@pytest.mark.parametrize("modality", ["audio", "text"])
def test_single_modality_model_learns_from_its_modality(modality):
    ds = make_segments(48, classes=3, seed=2, informative=(modality,))
    val = make_segments(24, classes=3, seed=3, informative=(modality,))
    result = train(ds, val, config=TrainConfig(**{**FAST, "modalities": (modality,)}), decode=DECODE)
    assert result.metrics["accuracy"] >= 0.8
    assert result.metrics["mean_gates"][modality] == pytest.approx(1.0)


def test_the_last_epoch_is_kept_by_default_and_the_best_on_validation_when_asked():
    ds, val = make_segments(32, classes=2, seed=4), make_segments(16, classes=2, seed=5)
    last = train(ds, val, config=TrainConfig(**{**FAST, "epochs": 5}), decode=DECODE)
    assert len(last.history) == 5 and last.best_epoch == 5  # every epoch run, none stopped on
    assert round(evaluate(last.model, held_out_tensors(last, val))["macro_f1"], 4) == last.history[-1]["val_macro_f1"]
    best = train(ds, val, config=TrainConfig(**{**FAST, "epochs": 5, "keep": "best", "patience": 1}), decode=DECODE)
    f1 = [h["val_macro_f1"] for h in best.history]
    assert best.history[best.best_epoch - 1]["val_macro_f1"] == max(f1)
    assert round(evaluate(best.model, held_out_tensors(best, val))["macro_f1"], 4) == max(f1)  # its weights
    assert len(f1) == 5 or f1[-1] <= max(f1[:-1])  # stopped only on an epoch no better than one before
    with pytest.raises(ConfigError, match="keep must be one of"):
        TrainConfig(keep="first")


def test_same_seed_same_run_and_another_seed_differs():
    ds, val = make_segments(32, classes=2, seed=4), make_segments(16, classes=2, seed=5)
    cfg = TrainConfig(**{**FAST, "epochs": 2, "seed": 7})
    a, b = (train(ds, val, config=cfg, decode=DECODE) for _ in range(2))
    assert a.history == b.history and a.metrics == b.metrics
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train(ds, val, config=TrainConfig(**{**FAST, "epochs": 2, "seed": 8}), decode=DECODE)
    assert [h["loss"] for h in c.history] != [h["loss"] for h in a.history]


def test_test_set_labels_are_mapped_by_name():
    ds, val = make_segments(24, classes=3, seed=6), make_segments(12, classes=3, seed=7)
    result = train(ds, val, config=TrainConfig(**{**FAST, "epochs": 1}), decode=DECODE)
    test = make_segments(6, classes=2, seed=8)
    test.label_names = ("class2", "class0")  # another order, a subset
    tensors = held_out_tensors(result, test)
    assert set(tensors.labels.tolist()) == {0, 2}
    test.label_names = ("class0", "zebra")
    with pytest.raises(DataError, match="zebra"):
        held_out_tensors(result, test)


def test_bad_setups_are_clear_errors():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ConfigError, match="modalities"):
        TrainConfig(modalities=("video", "smell"))
    one_class = make_segments(8, classes=1, seed=0)
    with pytest.raises(DataError, match="only one class"):
        train(one_class, None, config=TrainConfig(**FAST), decode=DECODE)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            train(make_segments(8, classes=2), None, config=TrainConfig(**{**FAST, "device": "cuda"}), decode=DECODE)


def test_classification_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["confusion"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_ablation_counts_the_modalities_the_model_sees():
    """A caption with no words ("♪ ♪") is no text to the model: the ablation's 'keeps the other two' check
    must not count it as text (nor a segment whose file has no audio as audio)."""
    from avfuse.models.train_cmd import _keeping_the_others

    ds, val = make_segments(24, classes=3, seed=6), make_segments(12, classes=3, seed=7)
    result = train(ds, val, config=TrainConfig(**{**FAST, "epochs": 1}), decode=DECODE)
    test = make_segments(4, classes=3, seed=8)
    test.texts = ["some calm here", "♪ ♪", "some calm here", "♪ ♪"]  # present says text for all four
    test.present[2:, 1] = 0  # the last two have no audio
    kept = _keeping_the_others(result, test)
    assert kept["video"].tolist() == [True, False, False, False]  # audio and text
    assert kept["audio"].tolist() == [True, False, True, False]  # video and text
    assert kept["text"].tolist() == [True, True, False, False]  # video and audio
