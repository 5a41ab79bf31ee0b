"""The whole avfuse model: three encoders, a fusion head, softmax. Rebuilt from a ModelConfig.

Inputs and outputs are the ONNX contract in ARCHITECTURE.md. Every model has the same four inputs:
a modality not in ``config.modalities`` has no encoder and counts as absent whatever ``present``
says, and empty text (all-zero tokens) counts as absent text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from avfuse.models.audio import AudioEncoder
from avfuse.models.fusion import FUSIONS, make_fusion
from avfuse.models.image import BACKBONES, POOLINGS, ImageEncoder
from avfuse.models.recipe import TEXTURES, TrainConfig
from avfuse.models.text import TextEncoder
from avfuse.stream.errors import ConfigError
from avfuse.stream.media.segment import MODALITIES

# The weight of the fused head's evidence beside the modalities' own classifiers' (1 each) in the served scores:
# it reads the same embeddings they do, so counting it in full counts their evidence twice. On the
# generalisation suite, 0.5 gave 77.8% on average over the factor sets (three sets, two seeds) where 1 gave
# 76.4% and 0 78.1%, and no less than 1 on the pair sets; 0 would leave the fusion head out of the labels.
# With the rows pooled (models/class_groups.py), 0, 0.5 and 1 gave 83.8, 83.6 and 83.3% (three sets, three seeds).
FUSED_EVIDENCE = 0.5


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Everything that rebuilds the network; saved in the checkpoint and the ONNX metadata."""

    labels: tuple[str, ...]
    frames: int  # T
    height: int  # H
    width: int  # W
    sample_rate: int  # 16000
    samples: int  # S
    vocab_size: int  # len(tokenizer)
    max_tokens: int  # tokenizer.max_len (L)
    # the network the default recipe trains (avfuse.models.recipe.TrainConfig) unless told otherwise
    image_backbone: str = TrainConfig.backbone
    pooling: str = TrainConfig.pooling  # over frames: mean | attention
    texture: str = TrainConfig.texture  # fixed Gabor texture energies beside the image backbone (models/image.py)
    fusion: str = TrainConfig.fusion
    modalities: tuple[str, ...] = MODALITIES  # encoders are built only for these
    dim: int = TrainConfig.dim  # every modality embedding and the fused embedding
    n_mels: int = TrainConfig.n_mels
    n_fft: int = 400
    hop_length: int = TrainConfig.hop_length
    text_embed: int = 64
    dropout: float = 0.1
    modality_dropout: float = TrainConfig.modality_dropout  # training only: chance to hide each present modality
    # the served probabilities read each classifier (the modalities' own and the fused head) through its
    # confusion matrix on held-out files (avfuse.models.cross_fit); False: the fused head's softmax
    confusions: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "modalities", tuple(self.modalities))
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels must be at least 2 distinct names, got {self.labels!r}")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities!r}")
        if self.image_backbone not in BACKBONES:
            raise ConfigError(f"image_backbone must be one of {BACKBONES}, got {self.image_backbone!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.texture not in TEXTURES:
            raise ConfigError(f"texture must be one of {TEXTURES}, got {self.texture!r}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for name in ("frames", "height", "width", "sample_rate", "samples", "vocab_size", "max_tokens", "n_fft",
                     "hop_length", "text_embed"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model {name} must be >= 1, got {getattr(self, name)!r}")
        if self.dim < 2:  # the text GRU runs dim // 2 units each way
            raise ConfigError(f"model dim must be >= 2, got {self.dim!r}")
        mel_frames = self.samples // self.hop_length + 1
        if "audio" in self.modalities and (self.n_mels < 8 or mel_frames < 8):  # the audio CNN pools 2x2 three times
            raise ConfigError(f"the audio encoder needs n_mels >= 8 and at least 8 log-mel frames (samples // "
                              f"hop_length + 1); got n_mels={self.n_mels}, {mel_frames} frames from "
                              f"samples={self.samples}, hop_length={self.hop_length}: use longer windows or a "
                              "shorter hop")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.modality_dropout < 1.0):
            raise ConfigError(f"dropout and modality_dropout must be in [0, 1), got "
                              f"{self.dropout}, {self.modality_dropout}")

    def to_dict(self) -> dict:
        """Plain JSON-able types (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model config has unknown fields {unknown}; it was written by another avfuse version")
        d = {"texture": False, **d}  # written before the texture energies: the network had none
        if isinstance(d["texture"], bool):  # written when they were on or off: an energy per orientation, or none
            d["texture"] = "oriented" if d["texture"] else "none"
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class AvfuseNet(nn.Module):
    """frames, audio, tokens, present -> probs, gates, embedding: the ONNX contract in ARCHITECTURE.md."""

    def __init__(self, config: ModelConfig, *, pretrained: bool = False) -> None:
        super().__init__()
        self.config = c = config
        self.video = (ImageEncoder(backbone=c.image_backbone, pooling=c.pooling, dim=c.dim, pretrained=pretrained,
                                   texture=c.texture) if "video" in c.modalities else None)
        self.audio = (AudioEncoder(sample_rate=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length,
                                   n_mels=c.n_mels, dim=c.dim) if "audio" in c.modalities else None)
        self.text = (TextEncoder(vocab_size=c.vocab_size, dim=c.dim, embed=c.text_embed)
                     if "text" in c.modalities else None)
        self.fusion = make_fusion(c.fusion, (c.dim,) * 3, dim=c.dim, num_classes=len(c.labels), dropout=c.dropout)
        # One linear classifier per modality, used in training only (an auxiliary loss): every encoder gets a
        # learning signal of its own, so an easy modality cannot starve a slower one through the fusion gates.
        self.unimodal = nn.ModuleDict({m: nn.Linear(c.dim, len(c.labels)) for m in c.modalities})
        enabled = torch.tensor([float(m in c.modalities) for m in MODALITIES])
        self.register_buffer("enabled", enabled, persistent=False)
        if c.confusions:  # [video, audio, text, fused] x true class x said class; filled by cross-fitting
            n = len(c.labels)
            self.register_buffer("confusions", torch.full((len(MODALITIES) + 1, n, n), 1.0 / n))

    def present_mask(self, tokens: Tensor, present: Tensor) -> Tensor:
        """present [B, 3] with modalities not in the config and empty text (all-zero tokens) zeroed."""
        has_text = tokens.ne(0).any(dim=1, keepdim=True).float()
        ones = torch.ones_like(has_text)
        return present.float() * self.enabled * torch.cat([ones, ones, has_text], dim=1)

    def drop_modalities(self, p: Tensor) -> Tensor:
        """Training only: hide each present modality with chance ``modality_dropout``, never all of a row's."""
        if not self.training or self.config.modality_dropout <= 0:
            return p
        keep = p * (torch.rand_like(p) >= self.config.modality_dropout).float()
        one = nn.functional.one_hot((torch.rand_like(p) * p).argmax(dim=1), p.shape[1]).float() * p
        return torch.where(keep.sum(dim=1, keepdim=True) > 0, keep, one)  # all dropped: keep one at random

    def effective_present(self, tokens: Tensor, present: Tensor) -> Tensor:
        """The present mask the fusion head sees (with modality dropout in training)."""
        return self.drop_modalities(self.present_mask(tokens, present))

    def encode(self, frames: Tensor, audio: Tensor, tokens: Tensor) -> list[Tensor | None]:
        """Per-modality embeddings [B, dim] in MODALITIES order; None for a modality without an encoder."""
        return [None if enc is None else enc(x)
                for enc, x in ((self.video, frames), (self.audio, audio), (self.text, tokens))]

    def _fuse(self, raw: list[Tensor | None], p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        zeros = p.new_zeros(p.shape[0], self.config.dim)
        embs = [zeros if e is None else e * p[:, i: i + 1] for i, e in enumerate(raw)]  # absent: zeros
        return self.fusion(embs, p)

    def fuse(self, frames: Tensor, audio: Tensor, tokens: Tensor, present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> logits [B, C], gates [B, 3], embedding [B, D]."""
        p = self.effective_present(tokens, present)
        return self._fuse(self.encode(frames, audio, tokens), p)

    def logits(self, frames: Tensor, audio: Tensor, tokens: Tensor, present: Tensor) -> Tensor:
        """Pre-softmax scores [B, C], for the loss."""
        return self.fuse(frames, audio, tokens, present)[0]

    def training_outputs(self, frames: Tensor, audio: Tensor, tokens: Tensor,
                         present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> fused logits [B, C], per-modality logits [B, 3, C] and the real present mask [B, 3] (without
        modality dropout: a modality's own head learns whenever the modality is there)."""
        real = self.present_mask(tokens, present)
        raw = self.encode(frames, audio, tokens)
        logits = self._fuse(raw, self.drop_modalities(real))[0]
        zeros = logits.new_zeros(logits.shape)
        per_modality = torch.stack([zeros if e is None else self.unimodal[m](e)
                                    for m, e in zip(MODALITIES, raw, strict=True)], dim=1)
        return logits, per_modality, real

    def classifier_probs(self, frames: Tensor, audio: Tensor, tokens: Tensor,
                         present: Tensor) -> tuple[Tensor, Tensor]:
        """-> the present mask [B, 3] and the probabilities [B, 4, C] of each modality's own classifier and of
        the fused head (a modality without an encoder: uniform), as cross-fitting counts them."""
        p = self.effective_present(tokens, present)
        raw = self.encode(frames, audio, tokens)
        return p, torch.stack(self._classifier_probs(raw, self._fuse(raw, p)[0]), dim=1)

    def _classifier_probs(self, raw: list[Tensor | None], fused_logits: Tensor) -> list[Tensor]:
        uniform = torch.full_like(fused_logits, 1.0 / fused_logits.shape[1])
        return [uniform if e is None else torch.softmax(self.unimodal[m](e), dim=1)
                for m, e in zip(MODALITIES, raw, strict=True)] + [torch.softmax(fused_logits, dim=1)]

    def _read_through_confusions(self, raw: list[Tensor | None], fused_logits: Tensor, p: Tensor) -> Tensor:
        """Scores [B, C]: sum over the classifiers present of w log sum_k q(k) K[y, k], w = 1 for a modality's own
        classifier and FUSED_EVIDENCE for the fused head (avfuse.models.cross_fit)."""
        weights = torch.cat([p, torch.full_like(p[:, :1], FUSED_EVIDENCE)], dim=1)  # the fused head: always there
        scores = torch.zeros_like(fused_logits)
        for i, q in enumerate(self._classifier_probs(raw, fused_logits)):
            if i < len(raw) and raw[i] is None:
                continue
            evidence = torch.log((q.unsqueeze(1) * self.confusions[i]).sum(dim=2))  # Mul and ReduceSum: fp32
            scores = scores + weights[:, i: i + 1] * evidence
        return scores

    def forward(self, frames: Tensor, audio: Tensor, tokens: Tensor, present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """frames uint8 [B,T,H,W,3]; audio float32 [B,S]; tokens int64 [B,L]; present float32 [B,3]
        -> probs [B,C] (softmax), gates [B,3], embedding [B,D]."""
        p = self.effective_present(tokens, present)
        raw = self.encode(frames, audio, tokens)
        logits, gates, embedding = self._fuse(raw, p)
        if self.config.confusions:
            logits = self._read_through_confusions(raw, logits, p)
        return torch.softmax(logits, dim=1), gates, embedding

    def describe(self) -> dict:
        """The ``avfuse.model`` metadata: encoders, fusion, dims."""
        c = self.config
        video = c.image_backbone + ("" if c.texture == "none" else f"+gabor-texture-{c.texture}")
        encoders = {"video": f"{video}+{c.pooling}-pool", "audio": f"log-mel{c.n_mels}+cnn",
                    "text": "embedding+bigru+masked-mean"}
        return {"encoders": {m: encoders[m] for m in c.modalities}, "fusion": c.fusion, "dim": c.dim,
                "combination": "held-out confusions" if c.confusions else "fused head",
                "modalities": list(c.modalities), "num_classes": len(c.labels),
                "parameters": sum(p.numel() for p in self.parameters())}


def build_model(config: ModelConfig, *, pretrained: bool = False) -> AvfuseNet:
    """The network for ``config``; ``pretrained`` loads ImageNet weights into the image backbone."""
    return AvfuseNet(config, pretrained=pretrained)
