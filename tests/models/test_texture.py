"""The image encoder's fixed texture energies: they follow the texture, not its place, colour or contrast."""

from __future__ import annotations

import math

import numpy as np
import torch

from avfuse.models.image import ImageEncoder, TextureBank

SIDE = 64


def _stripes(angle_deg: float, wavelength: float = 5.0) -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    t = math.radians(angle_deg)
    return (np.sin(2 * math.pi * (x * math.cos(t) + y * math.sin(t)) / wavelength) > 0).astype(np.float64)


def _dots(period: int = 8, radius: float = 2.0) -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE] % period - period / 2
    return (x ** 2 + y ** 2 <= radius ** 2).astype(np.float64)


def _checks(period: int = 8) -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE] // (period // 2)
    return ((x + y) % 2).astype(np.float64)


def _rgb(pattern: np.ndarray, low: tuple, high: tuple) -> np.ndarray:
    """float [3, SIDE, SIDE] in 0..255: the pattern's 0s in one colour, its 1s in another."""
    lo, hi = np.array(low, float)[:, None, None], np.array(high, float)[:, None, None]
    return lo + (hi - lo) * pattern[None]


def _energies(*images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return TextureBank()(torch.tensor(np.stack(images), dtype=torch.float32)).numpy()


def test_stripes_peak_at_their_orientation_wherever_they_are_and_in_any_colour_or_contrast():
    bank = TextureBank
    angles = [k * 180 / bank.ORIENTATIONS for k in range(bank.ORIENTATIONS)]
    plain = _energies(*[_rgb(_stripes(a), (0, 0, 0), (255, 255, 255)) for a in angles])
    moved = _energies(*[_rgb(np.roll(_stripes(a), (7, 3), axis=(0, 1)), (90, 20, 40), (140, 60, 70)) for a in angles])
    for k in range(bank.ORIENTATIONS):
        for e in (plain[k], moved[k]):
            by_orientation = e.reshape(len(bank.WAVELENGTHS), bank.ORIENTATIONS)[1]  # the 5-pixel wavelength
            assert by_orientation.argmax() == k
    nearest = np.linalg.norm(moved[:, None] - plain[None], axis=2).argmin(axis=1)
    assert (nearest == np.arange(bank.ORIENTATIONS)).all()  # a place, colour and contrast apart, still the same


def test_the_three_textures_are_told_apart_by_the_nearest_mean_across_colours_and_places():
    rng = np.random.default_rng(0)
    makers = (lambda: _stripes(45), lambda: _dots(), lambda: _checks())

    def draw(make):
        low = tuple(rng.uniform(0, 120, 3))
        high = tuple(np.array(low) + rng.uniform(40, 135, 3))
        return _rgb(np.roll(make(), tuple(rng.integers(0, SIDE, 2)), axis=(0, 1)), low, high)

    train = [_energies(*[draw(m) for _ in range(6)]) for m in makers]
    centres = np.stack([t.mean(axis=0) for t in train])
    test = [_energies(*[draw(m) for _ in range(10)]) for m in makers]
    said = [np.linalg.norm(t[:, None] - centres[None], axis=2).argmin(axis=1) for t in test]
    assert all((s == i).all() for i, s in enumerate(said)), said


def test_flat_frames_give_finite_energies_and_the_encoder_takes_them():
    flat = np.full((3, SIDE, SIDE), 128.0)
    assert np.isfinite(_energies(flat)).all()
    encoder = ImageEncoder(dim=16, texture=True).eval()
    frames = torch.full((2, 3, SIDE, SIDE, 3), 128, dtype=torch.uint8)
    with torch.no_grad():
        out = encoder(frames)
    assert out.shape == (2, 16) and torch.isfinite(out).all()
