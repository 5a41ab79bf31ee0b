"""Image encoder: a CNN backbone on every frame, then pooling over the T frames.

Frames arrive as raw uint8 RGB ``[B, T, H, W, 3]``; scaling to [0, 1] and ImageNet mean/std
normalisation happen inside the model, so the exported graph takes what the decoder gives.

Backbones: ``mobilenet_v3_small`` (what ``avfuse train`` uses by default), ``resnet18`` and
``efficientnet_b0`` from torchvision, and ``tiny`` (a four-layer plain CNN that trains in seconds on two
CPU cores: the demo's, and the default of :class:`avfuse.models.net.ModelConfig`, which the tests build small).
``pretrained=True`` loads torchvision's ImageNet weights through its weights API (needs internet the first
time).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from avfuse.models.recipe import BACKBONES, POOLINGS
from avfuse.stream.errors import ConfigError, DependencyError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _tiny_backbone(width: int = 16) -> tuple[nn.Module, int]:
    """Four stride-2 conv blocks and global average pooling: [N, 3, H, W] -> [N, 8 * width]."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (width, 2 * width, 4 * width, 8 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), c_in


def _load_weights(name: str):
    """torchvision's default ImageNet weights for ``name``, downloaded (or read from its cache)."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        weights.get_state_dict(progress=False, check_hash=True)  # fills torch.hub's cache
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
        raise DependencyError(
            f"could not download torchvision's ImageNet weights for {name} ({weights.url}): "
            f"{type(e).__name__}: {e}; run with internet access once (they are cached in "
            f"{torch.hub.get_dir()}) or train without --pretrained") from e
    return weights


def _torchvision_backbone(name: str, pretrained: bool) -> tuple[nn.Module, int]:
    import torchvision

    weights = _load_weights(name) if pretrained else None
    net = torchvision.models.get_model(name, weights=weights)
    if name == "resnet18":
        features = net.fc.in_features
        net.fc = nn.Identity()
    elif name == "mobilenet_v3_small":
        features = net.classifier[0].in_features
        net.classifier = nn.Identity()
    else:  # efficientnet_b0
        features = net.classifier[1].in_features
        net.classifier = nn.Identity()
    return net, features


def make_backbone(name: str, *, pretrained: bool = False) -> tuple[nn.Module, int]:
    """A per-frame backbone ``[N, 3, H, W] -> [N, F]`` and its feature size F."""
    if name not in BACKBONES:
        raise ConfigError(f"image backbone must be one of {BACKBONES}, got {name!r}")
    if name == "tiny":
        if pretrained:
            raise ConfigError("the 'tiny' backbone has no pretrained weights; choose a torchvision backbone "
                              f"({', '.join(BACKBONES[1:])}) or drop --pretrained")
        return _tiny_backbone()
    return _torchvision_backbone(name, pretrained)


class AttentionPool(nn.Module):
    """A learned score per frame, softmax over time, weighted sum: [B, T, D] -> [B, D]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, D] -> [B, D]."""
        w = torch.softmax(self.score(x), dim=1)  # [B, T, 1]
        return (w * x).sum(dim=1)


class ImageEncoder(nn.Module):
    """uint8 frames [B, T, H, W, 3] -> embedding [B, dim]."""

    def __init__(self, *, backbone: str = "tiny", pooling: str = "mean", dim: int = 128,
                 pretrained: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"frame pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone, features = make_backbone(backbone, pretrained=pretrained)
        self.proj = nn.Sequential(nn.Linear(features, dim), nn.LayerNorm(dim))
        self.pool = AttentionPool(dim) if pooling == "attention" else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, frames: Tensor) -> Tensor:
        """frames uint8 [B, T, H, W, 3] -> embedding float32 [B, dim]."""
        t = frames.shape[1]
        x = frames.flatten(0, 1).permute(0, 3, 1, 2).float()  # [B*T, 3, H, W]
        x = (x - self.mean) / self.std
        x = self.proj(self.backbone(x))  # [B*T, dim]
        x = x.reshape(-1, t, x.shape[-1])  # [B, T, dim]
        return x.mean(dim=1) if self.pool is None else self.pool(x)
