"""Image encoder: a CNN backbone on every frame, then pooling over the T frames.

Frames arrive as raw uint8 RGB ``[B, T, H, W, 3]``; scaling to [0, 1] and ImageNet mean/std
normalisation happen inside the model, so the exported graph takes what the decoder gives.

Backbones: ``tiny`` (a four-layer plain CNN that trains in seconds on two CPU cores, from scratch: the
default recipe's, :class:`avfuse.models.recipe.TrainConfig`) and, from torchvision, ``mobilenet_v3_small``,
``resnet18`` and ``efficientnet_b0``.
``pretrained=True`` loads torchvision's ImageNet weights through its weights API (needs internet the first
time). ``texture="invariant"`` (the default recipe's) puts fixed Gabor texture energies that do not turn with
the texture (:class:`TextureBank`) beside the backbone's features, before the projection; ``"oriented"`` puts the
energy of each orientation there instead, ``"none"`` neither.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor, nn

from avfuse.models.recipe import BACKBONES, POOLINGS, TEXTURES
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


class TextureBank(nn.Module):
    """Fixed Gabor filters on the grey frame: [N, 3, H, W] (0..255) -> texture energies [N, features], not learnt.

    Each frame's grey levels are scaled to zero mean and unit variance, so the energies do not follow its
    contrast or brightness, and each filter pair (even and odd phase) gives the energy of one wavelength and
    orientation averaged over the frame, so they do not follow where things are or what colour they are. That
    is the classic texture descriptor of small-data vision (Gabor energies, as in GIST): stripes, dots and
    checks, foliage, water or brick fill it differently wherever they are in the frame. A CNN trained from
    scratch on a few dozen files learns each file's colours and layout instead.

    ``invariant=True`` (the default recipe's) gives, per wavelength, the log energies sorted over the
    orientations, the log of their sum and the magnitudes of the orientation profile's first three harmonics
    (how much the energy prefers one direction, two at right angles, three at 60 degrees): none of them moves
    when the texture turns, so stripes at an angle no training file had are still stripes. On the
    generalisation suite (``avfuse bench quality``, seeds 0-2) a linear classifier on these named the moving
    blobs' texture on 100% of the held-out segments of webcam and broadcast, where on the energies per
    orientation (``invariant=False``, the log energy of each wavelength and orientation as it is) it got
    81-100% and 83-92%."""

    WAVELENGTHS = (3.0, 5.0, 8.0)  # pixels of the model's input frame
    ORIENTATIONS = 6
    HARMONICS = 3  # of the orientation profile, which repeats every 180 degrees: 2, 4 and 6 cycles a turn
    SIZE = 11  # kernel side
    STRIDE = 4  # of the filters' responses: their energies are smooth, so the mean over the frame barely moves

    def __init__(self, *, invariant: bool = True) -> None:
        super().__init__()
        self.invariant = invariant
        r = torch.arange(self.SIZE, dtype=torch.float32) - self.SIZE // 2
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        kernels = []
        for wavelength in self.WAVELENGTHS:
            envelope = torch.exp(-(xx ** 2 + yy ** 2) / (2 * (0.56 * wavelength) ** 2))  # about one octave wide
            for k in range(self.ORIENTATIONS):
                theta = k * math.pi / self.ORIENTATIONS
                along = xx * math.cos(theta) + yy * math.sin(theta)
                for phase in (0.0, math.pi / 2):
                    kernel = envelope * torch.cos(2 * math.pi * along / wavelength + phase)
                    kernel = kernel - kernel.mean()  # no response to flat grey
                    kernels.append(kernel / kernel.norm())
        self.register_buffer("kernels", torch.stack(kernels).unsqueeze(1))  # [2 W O, 1, SIZE, SIZE]
        self.register_buffer("grey", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1))
        angles = torch.arange(self.ORIENTATIONS, dtype=torch.float32) * math.pi / self.ORIENTATIONS
        turns = 2 * torch.arange(1, self.HARMONICS + 1, dtype=torch.float32).view(-1, 1) * angles  # [M, O]
        self.register_buffer("cos", torch.cos(turns))
        self.register_buffer("sin", torch.sin(turns))

    @classmethod
    def features(cls, *, invariant: bool = True) -> int:
        bands = len(cls.WAVELENGTHS)
        return bands * (cls.ORIENTATIONS + 1 + cls.HARMONICS) if invariant else bands * cls.ORIENTATIONS

    def forward(self, x: Tensor) -> Tensor:
        """x float [N, 3, H, W] in 0..255 -> float [N, features]."""
        g = (x * self.grey).sum(dim=1, keepdim=True)
        g = (g - g.mean(dim=(2, 3), keepdim=True)) / (g.std(dim=(2, 3), keepdim=True) + 1.0)
        r = nn.functional.conv2d(g, self.kernels, stride=self.STRIDE, padding=self.SIZE // 2)
        n, bands = x.shape[0], len(self.WAVELENGTHS)
        energy = r.pow(2).mean(dim=(2, 3)).view(n, bands, self.ORIENTATIONS, 2).sum(dim=3) + 1e-4  # [N, W, O]
        if not self.invariant:
            return torch.log(energy).flatten(1)
        total = energy.sum(dim=2, keepdim=True)
        share = (energy / total).unsqueeze(2)  # [N, W, 1, O]
        harmonics = ((share * self.cos).sum(dim=3).pow(2) + (share * self.sin).sum(dim=3).pow(2) + 1e-8).sqrt()
        ordered = torch.sort(energy, dim=2).values
        return torch.cat([torch.log(ordered).flatten(1), torch.log(total).flatten(1), harmonics.flatten(1)], dim=1)


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
                 pretrained: bool = False, texture: str = "none") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"frame pooling must be one of {POOLINGS}, got {pooling!r}")
        if texture not in TEXTURES:
            raise ConfigError(f"texture must be one of {TEXTURES}, got {texture!r}")
        self.backbone, features = make_backbone(backbone, pretrained=pretrained)
        # the fixed texture energies, standardised, beside the backbone's features (see TextureBank)
        self.texture = None
        if texture != "none":
            invariant = texture == "invariant"
            size = TextureBank.features(invariant=invariant)
            self.texture = nn.Sequential(TextureBank(invariant=invariant), nn.BatchNorm1d(size))
            features += size
        self.proj = nn.Sequential(nn.Linear(features, dim), nn.LayerNorm(dim))
        self.pool = AttentionPool(dim) if pooling == "attention" else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, frames: Tensor) -> Tensor:
        """frames uint8 [B, T, H, W, 3] -> embedding float32 [B, dim]."""
        t = frames.shape[1]
        x = frames.flatten(0, 1).permute(0, 3, 1, 2).float()  # [B*T, 3, H, W]
        features = self.backbone((x - self.mean) / self.std)
        if self.texture is not None:
            features = torch.cat([features, self.texture(x)], dim=1)
        x = self.proj(features)  # [B*T, dim]
        x = x.reshape(-1, t, x.shape[-1])  # [B, T, dim]
        return x.mean(dim=1) if self.pool is None else self.pool(x)
