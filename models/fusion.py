"""Fusion heads: per-modality embeddings (+ the present mask) -> logits, gates, fused embedding.

Every head takes ``embs`` = [video, audio, text] embeddings, each [B, dim_m] and already zeroed
where the modality is absent, and ``present`` float32 [B, 3], and returns
``(logits [B, C], gates [B, 3], embedding [B, D])``.

- ``gated``: a Gated Multimodal Unit (Arevalo et al., 2017). Each modality gets a tanh projection
  h_m [D]; a gate vector z_m [D] per modality (one gate per hidden unit, as in the paper) comes from a
  linear map of all inputs, softmax over modalities; gates of absent modalities are masked and the rest
  renormalised; the embedding is sum_m z_m * h_m. The ``gates`` output is each modality's mean gate
  over the D units: how much of the fused embedding it supplied (sums to 1 over present modalities).
- ``concat``: the embeddings (and the present mask) concatenated, then an MLP.
- ``sequential``: the embeddings, projected to D and tagged with their presence, as a three-step
  ordered sequence (video, audio, text) through a GRU; its last state is the embedding.

For ``concat`` and ``sequential`` there is no learned gate: their ``gates`` output is the present
mask renormalised to sum to 1 (equal shares for the modalities present).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avfuse.models.recipe import FUSIONS
from avfuse.stream.errors import ConfigError

EPS = 1e-6


def classifier(dim: int, num_classes: int, dropout: float) -> nn.Module:
    """The head every fusion shares: one hidden layer, so it can combine modalities non-linearly (an XOR)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(dim, num_classes))


def renormalise(present: Tensor) -> Tensor:
    """Rows scaled to sum to 1; an all-zero row stays zero."""
    return present / present.sum(dim=1, keepdim=True).clamp(min=EPS)


class GatedFusion(nn.Module):
    def __init__(self, dims: tuple[int, ...], *, dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.modalities, self.dim = len(dims), dim
        self.hidden = nn.ModuleList(nn.Linear(d, dim) for d in dims)
        self.gate = nn.Linear(sum(dims) + len(dims), len(dims) * dim)  # a gate per modality and hidden unit
        self.head = classifier(dim, num_classes, dropout)

    def forward(self, embs: list[Tensor], present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = torch.stack([torch.tanh(lin(e)) for lin, e in zip(self.hidden, embs, strict=True)], dim=1)  # [B, M, D]
        scores = self.gate(torch.cat([*embs, present], dim=1)).view(-1, self.modalities, self.dim)  # [B, M, D]
        mask = present.unsqueeze(-1)  # [B, M, 1]
        z = torch.softmax(scores.masked_fill(mask == 0, -1e4), dim=1) * mask
        z = z / z.sum(dim=1, keepdim=True).clamp(min=EPS)  # absent modalities' gates are 0, the rest sum to 1
        fused = (z * h).sum(dim=1)  # [B, D]
        return self.head(fused), z.mean(dim=2), fused


class ConcatFusion(nn.Module):
    def __init__(self, dims: tuple[int, ...], *, dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(sum(dims) + len(dims), dim), nn.ReLU(inplace=True))
        self.head = classifier(dim, num_classes, dropout)

    def forward(self, embs: list[Tensor], present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fused = self.mlp(torch.cat([*embs, present], dim=1))
        return self.head(fused), renormalise(present), fused


class SequentialFusion(nn.Module):
    def __init__(self, dims: tuple[int, ...], *, dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.inputs = nn.ModuleList(nn.Linear(d + 1, dim) for d in dims)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.head = classifier(dim, num_classes, dropout)

    def forward(self, embs: list[Tensor], present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        steps = [torch.relu(lin(torch.cat([e, present[:, i: i + 1]], dim=1))) for i, (lin, e)
                 in enumerate(zip(self.inputs, embs, strict=True))]
        out, _ = self.rnn(torch.stack(steps, dim=1))  # [B, M, D]
        fused = out[:, -1]
        return self.head(fused), renormalise(present), fused


def make_fusion(method: str, dims: tuple[int, ...], *, dim: int, num_classes: int,
                dropout: float = 0.1) -> nn.Module:
    """A fusion head for modality embeddings of sizes ``dims`` producing a ``dim`` embedding."""
    heads = {"gated": GatedFusion, "concat": ConcatFusion, "sequential": SequentialFusion}
    if method not in heads:
        raise ConfigError(f"fusion must be one of {FUSIONS}, got {method!r}")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 labels, got {num_classes}")
    return heads[method](tuple(dims), dim=dim, num_classes=num_classes, dropout=dropout)
