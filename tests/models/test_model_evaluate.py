"""Evaluation over a segment set: metrics, removing a modality at test time, the model's mode kept."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from avfuse.models.evaluate import evaluate, without_each_modality  # noqa: E402
from avfuse.models.net import ModelConfig, build_model  # noqa: E402
from avfuse.models.torchdata import Tensors  # noqa: E402

N = 10


def data() -> Tensors:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 20, (N, 6), generator=g)
    return Tensors(frames=torch.randint(0, 256, (N, 2, 32, 32, 3), dtype=torch.uint8, generator=g),
                   audio=torch.randn(N, 8000, generator=g) * 0.1, tokens=tokens, present=torch.ones(N, 3),
                   labels=torch.arange(N) % 3)


def test_evaluate_reports_metrics_and_gates_and_keeps_the_model_mode():
    model = build_model(ModelConfig(labels=("a", "b", "c"), frames=2, height=32, width=32, sample_rate=16000,
                                    samples=8000, vocab_size=20, max_tokens=6, dim=16, n_mels=32)).train()
    m = evaluate(model, data(), batch_size=4)
    assert model.training
    matrix = m["confusion"]["matrix"]
    assert m["segments"] == N and sum(matrix[i][j] for i in range(3) for j in range(3)) == N
    assert m["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(3)) / N)  # the matrix's diagonal
    assert sum(m["mean_gates"].values()) == pytest.approx(1.0, abs=1e-3)
    dropped = evaluate(model, data(), drop="audio")
    assert dropped["mean_gates"]["audio"] == 0 and sum(dropped["mean_gates"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(without_each_modality(model, data())) == {"video", "audio", "text"}
