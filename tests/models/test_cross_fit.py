"""Cross-fitting: confusion matrices counted on held-out files, and a model that reads its classifiers
through them: the arithmetic, its use on factor-structured classes, the saved model and its ONNX file."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avfuse.export import verify as V  # noqa: E402
from avfuse.export.onnx import export_model, model_info, save  # noqa: E402
from avfuse.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from avfuse.models.cross_fit import HeldOut, combine, confusions, held_out, with_confusions  # noqa: E402
from avfuse.models.evaluate import Tensors  # noqa: E402
from avfuse.models.net import ModelConfig, build_model  # noqa: E402
from avfuse.stream.infer.tokenize import Tokenizer  # noqa: E402
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata  # noqa: E402

DECODE = decode_metadata(DecodeConfig(fps=2, height=32, width=32), SegmentConfig(window_s=1.0))
TOKENIZER = Tokenizer.build(["a river", "the flame", "a lake now"], max_len=6)


def test_confusions_count_each_classifiers_probabilities_per_true_class():
    probs = np.zeros((3, 4, 2))
    probs[:, :, 0] = [[0.9, 0.5, 0.2, 0.6], [0.7, 0.5, 0.4, 0.8], [0.1, 0.5, 0.3, 0.3]]
    probs[:, :, 1] = 1 - probs[:, :, 0]
    present = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=float)  # no text on the first
    m = confusions(HeldOut(probs=probs, present=present, labels=np.array([0, 0, 1])), 2, alpha=0.5)
    assert m.shape == (4, 2, 2) and np.allclose(m.sum(axis=2), 1)
    assert np.allclose(m[0, 0], [(0.9 + 0.7 + 0.5) / 3, (0.1 + 0.3 + 0.5) / 3])  # video, class 0: two segments
    assert np.allclose(m[2, 0], [(0.4 + 0.5) / 2, (0.6 + 0.5) / 2])  # text, class 0: only the second counts
    assert np.allclose(m[2, 1], [(0.3 + 0.5) / 2, (0.7 + 0.5) / 2])


def _factor_outputs(rng: np.random.Generator, n: int) -> HeldOut:
    """Four classes (v, a) in {0,1}^2, class = 2v + a. The video classifier knows v only, the audio one a only,
    and each names one class of its half with confidence (the class of the training file it resembles);
    the fused head is right half the time."""
    y = rng.integers(0, 4, n)
    v, a = y // 2, y % 2
    probs = np.full((n, 4, 4), 0.02)
    probs[np.arange(n), 0, 2 * v + rng.integers(0, 2, n)] = 0.94  # right v, a guessed
    probs[np.arange(n), 1, 2 * rng.integers(0, 2, n) + a] = 0.94  # right a, v guessed
    probs[:, 2] = 0.25  # no text
    probs[np.arange(n), 3, np.where(rng.random(n) < 0.5, y, rng.integers(0, 4, n))] = 0.94
    probs /= probs.sum(axis=2, keepdims=True)
    return HeldOut(probs=probs, present=np.tile([1.0, 1.0, 0.0, 1.0], (n, 1)), labels=y)


def test_classifiers_that_each_know_one_factor_give_the_class_together():
    rng = np.random.default_rng(0)
    seen, new = _factor_outputs(rng, 400), _factor_outputs(rng, 400)
    alone = [(new.probs[:, c].argmax(1) == new.labels).mean() for c in (0, 1, 3)]
    assert max(alone) < 0.8  # each alone is right about half the time
    scores = combine(new.probs, new.present, confusions(seen, 4))
    assert (scores.argmax(1) == new.labels).mean() >= 0.99


def _config(**kw) -> ModelConfig:
    return ModelConfig(**{**dict(labels=("water", "fire", "stone"), frames=DECODE["frames"], height=32, width=32,
                                 sample_rate=16000, samples=DECODE["samples"], vocab_size=len(TOKENIZER),
                                 max_tokens=6, dim=16, n_mels=16), **kw})


def _tensors(n: int, seed: int = 0) -> Tensors:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.from_numpy(TOKENIZER.encode_batch(["a river", "", "the flame now", "lake", "", "a"] * n)[:n])
    return Tensors(frames=torch.randint(0, 256, (n, DECODE["frames"], 32, 32, 3), dtype=torch.uint8, generator=g),
                   audio=torch.randn(n, DECODE["samples"], generator=g), tokens=tokens,
                   present=torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]] * n)[:n],
                   labels=torch.arange(n) % 3)


@pytest.mark.parametrize("modalities", [("video", "audio", "text"), ("audio", "text")])
def test_the_model_computes_the_combination_over_the_classifiers_present(modalities):
    torch.manual_seed(0)
    model = build_model(_config(modalities=modalities)).eval()
    data = _tensors(6)
    matrices = np.random.default_rng(1).dirichlet(np.ones(3), size=(4, 3)).astype(np.float32)
    combined = with_confusions(model, matrices)
    outputs = held_out(model, data)
    assert np.allclose(outputs.probs.sum(axis=2), 1, atol=1e-5)
    # the second row has no audio, the rows without words no text, a model without video no video
    assert outputs.present[1, 1] == 0 and outputs.present[1, 2] == 0 and outputs.present[0, 3] == 1
    assert (outputs.present[:, 0] == 0).all() == ("video" not in modalities)
    with torch.no_grad():
        probs, gates, _ = combined(data.frames, data.audio, data.tokens, data.present)
        _, plain_gates, _ = model(data.frames, data.audio, data.tokens, data.present)
    want = combine(outputs.probs, outputs.present, matrices)
    want = np.exp(want - want.max(1, keepdims=True))
    assert np.allclose(probs.numpy(), want / want.sum(1, keepdims=True), atol=1e-5)
    assert torch.equal(gates, plain_gates)  # the gates still say what the fused head drew on


def test_the_matrices_travel_in_the_checkpoint_and_the_onnx_file(tmp_path):
    torch.manual_seed(2)
    model = build_model(_config()).eval()
    matrices = np.random.default_rng(3).dirichlet(np.ones(3) * 0.3, size=(4, 3)).astype(np.float32)
    combined = with_confusions(model, matrices)
    save_checkpoint(tmp_path / "run", combined, config=combined.config, decode=DECODE, tokenizer=TOKENIZER,
                    metrics={}, train_args={})
    loaded, ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.config.confusions and np.array_equal(loaded.confusions.numpy(), matrices)
    data = _tensors(6, seed=4)
    onnx_path = tmp_path / "m.onnx"
    save(export_model(loaded, model_info(loaded, decode=DECODE, tokenizer=TOKENIZER, metrics={}), onnx_path),
         onnx_path)
    rows = V.Inputs(frames=data.frames.numpy(), audio=data.audio.numpy(), tokens=data.tokens.numpy(),
                    present=data.present.numpy())
    with torch.no_grad():
        want = combined(data.frames, data.audio, data.tokens, data.present)[0].numpy()
    got = V.run_onnxruntime(onnx_path, rows, batch=3)["probs"]
    assert np.allclose(got, want, atol=1e-5), np.abs(got - want).max()
    assert not np.allclose(want, model(data.frames, data.audio, data.tokens, data.present)[0].detach().numpy(),
                           atol=1e-3)  # the file serves the combination, not the fused head


def _segments(files: int, per_file: int = 4):
    """Segments of ``files`` short sources, two labels told apart by the caption (what a run needs, no more)."""
    from avfuse.models.data import SegmentSet

    n = files * per_file
    rng = np.random.default_rng(5)
    labels = np.arange(n) // per_file % 2
    return SegmentSet(frames=rng.integers(0, 256, (n, DECODE["frames"], 32, 32, 3), dtype=np.uint8),
                      audio=rng.standard_normal((n, DECODE["samples"])).astype(np.float32),
                      texts=["a river" if y == 0 else "the flame" for y in labels],
                      present=np.ones((n, 3), np.float32), labels=labels.astype(np.int64),
                      label_names=("water", "fire"), sources=[f"f{i // per_file}.mp4" for i in range(n)],
                      starts=np.arange(n, dtype=np.float64) % per_file)


def _trained(ds, **config):
    from avfuse.models import data
    from avfuse.models.recipe import TrainConfig
    from avfuse.models.train import train

    train_idx, val_idx = data.split_by_source(ds, 0.25, 0)
    cfg = TrainConfig(epochs=2, batch_size=8, dim=16, n_mels=16, threads=1, progress=False, **config)
    return train(ds.subset(train_idx), ds.subset(val_idx), config=cfg, decode=DECODE), train_idx, val_idx, cfg


def test_every_training_file_is_held_out_once():
    from avfuse.models.cross_fit import cross_fit

    ds = _segments(8)
    result, train_idx, val_idx, cfg = _trained(ds)
    new, report = cross_fit(result, ds, train_idx, val_idx, config=cfg, decode=DECODE, folds=4)
    assert report["folds"] == 4 and report["held_out_segments"] == len(ds)
    assert set(report["held_out_accuracy"]) == {"video", "audio", "text", "fused", "combined"}
    assert new.model.config.confusions and not result.model.config.confusions
    assert np.allclose(new.model.confusions.sum(dim=2).numpy(), 1)
    for name, p in result.model.state_dict().items():  # the served weights are the trained model's
        assert torch.equal(new.model.state_dict()[name], p)


def test_too_few_files_to_deal_keeps_the_fused_head_and_says_why():
    from avfuse.models.cross_fit import cross_fit
    from avfuse.models.train_cmd import cross_fit_line

    ds = _segments(4)  # one validation file and three training files: not four shares
    result, train_idx, val_idx, cfg = _trained(ds)
    new, report = cross_fit(result, ds, train_idx, val_idx, config=cfg, decode=DECODE, folds=5)
    assert new is result
    assert report == {"folds": 5, "skipped": "3 training files cannot make 4 shares besides the validation files"}
    assert cross_fit_line(report) == ("cross-fitting skipped (3 training files cannot make 4 shares besides the "
                                      "validation files): the model serves its fused head alone")
