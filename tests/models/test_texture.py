"""The image encoder's fixed texture energies: they follow the texture, not its place, colour, contrast or (by
default) the way it turns."""

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


def _turned(angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """The pixel grid's coordinates turned by ``angle_deg`` about the frame's centre."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64) - SIDE / 2
    t = math.radians(angle_deg)
    return x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)


def _dots(period: int = 8, radius: float = 2.0, angle_deg: float = 0.0) -> np.ndarray:
    x, y = (c % period - period / 2 for c in _turned(angle_deg))
    return (x ** 2 + y ** 2 <= radius ** 2).astype(np.float64)


def _checks(period: int = 8, angle_deg: float = 0.0) -> np.ndarray:
    x, y = (np.floor(c / (period // 2)) for c in _turned(angle_deg))
    return ((x + y) % 2).astype(np.float64)


def _rgb(pattern: np.ndarray, low: tuple, high: tuple) -> np.ndarray:
    """float [3, SIDE, SIDE] in 0..255: the pattern's 0s in one colour, its 1s in another."""
    lo, hi = np.array(low, float)[:, None, None], np.array(high, float)[:, None, None]
    return lo + (hi - lo) * pattern[None]


def _energies(*images: np.ndarray, invariant: bool = True) -> np.ndarray:
    with torch.no_grad():
        return TextureBank(invariant=invariant)(torch.tensor(np.stack(images), dtype=torch.float32)).numpy()


def test_oriented_energies_of_stripes_peak_at_their_orientation_wherever_they_are_and_in_any_colour_or_contrast():
    bank = TextureBank
    angles = [k * 180 / bank.ORIENTATIONS for k in range(bank.ORIENTATIONS)]
    plain = _energies(*[_rgb(_stripes(a), (0, 0, 0), (255, 255, 255)) for a in angles], invariant=False)
    moved = _energies(*[_rgb(np.roll(_stripes(a), (7, 3), axis=(0, 1)), (90, 20, 40), (140, 60, 70)) for a in angles],
                      invariant=False)
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


def _nearest_mean_said(invariant: bool) -> list[np.ndarray]:
    """What the nearest of the means of stripes, dots and checks drawn at three angles names each texture turned
    to six others, in other colours and places (each feature standardised over the training images, as the
    encoder's batch norm does)."""
    rng = np.random.default_rng(1)

    def draw(make, angles):
        images = []
        for angle in angles:
            low = tuple(rng.uniform(0, 120, 3))
            high = tuple(np.array(low) + rng.uniform(40, 135, 3))
            images.append(_rgb(np.roll(make(angle), tuple(rng.integers(0, SIDE, 2)), axis=(0, 1)), low, high))
        return _energies(*images, invariant=invariant)

    makers = (_stripes, lambda a: _dots(angle_deg=a), lambda a: _checks(angle_deg=a))
    train = [draw(m, [0.0, 60.0, 120.0] * 2) for m in makers]
    everything = np.concatenate(train)
    mu, sd = everything.mean(axis=0), everything.std(axis=0) + 1e-6
    centres = np.stack([((t - mu) / sd).mean(axis=0) for t in train])
    turns = (17.0, 41.0, 63.0, 98.0, 125.0, 152.0)
    return [np.linalg.norm(((draw(m, turns) - mu) / sd)[:, None] - centres[None], axis=2).argmin(axis=1)
            for m in makers]


def test_the_invariant_energies_name_a_texture_turned_to_angles_no_training_image_had():
    said = _nearest_mean_said(invariant=True)
    assert all((s == i).all() for i, s in enumerate(said)), said


def test_the_energies_per_orientation_miss_stripes_turned_away_from_the_training_angle():
    said = _nearest_mean_said(invariant=False)  # why the default recipe sorts them: this is what it avoids
    assert (said[0] != 0).sum() >= 2, said


def test_flat_frames_give_finite_energies_and_the_encoder_takes_them():
    flat = np.full((3, SIDE, SIDE), 128.0)
    assert np.isfinite(_energies(flat)).all() and np.isfinite(_energies(flat, invariant=False)).all()
    for texture, size in (("invariant", 30), ("oriented", 18)):
        encoder = ImageEncoder(dim=16, texture=texture).eval()
        assert encoder.texture is not None and encoder.texture[1].num_features == size
        frames = torch.full((2, 3, SIDE, SIDE, 3), 128, dtype=torch.uint8)
        with torch.no_grad():
            out = encoder(frames)
        assert out.shape == (2, 16) and torch.isfinite(out).all()
