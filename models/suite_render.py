"""Frames, sounds and encoded files for the generalisation suite (``models/suite.py``).

Every function renders one span (a stretch of a file with one class) from its factor value and a
random generator, at the set's own frame size and sample rate, with numpy only (no per-pixel loops).

- video ``photos``: a real scikit-image photograph of the value's group, cropped, panned and zoomed,
  maybe mirrored, with colour gains, a brightness drift and sensor noise;
- video ``shapes``: one to three large blobs filled with the value's texture (stripes, dots, checks)
  moving over a gradient, with small plain distractor blobs;
- audio ``tones``: a melody of harmonic notes with vibrato in the value's band, over background noise;
- audio ``textures``: low band noise, high band noise or a click train, amplitude-modulated, over
  background noise, sometimes with a quiet chirp sweeping up or down.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pysubs2

from avfuse.models.synth import embed_subtitles
from avfuse.stream.errors import MediaError

PHOTO_GROUPS = {
    "cat": ("chelsea",),
    "space": ("rocket", "astronaut", "hubble_deep_field"),
    "food": ("coffee",),
}
TEXTURES = ("stripes", "dots", "checks")
TONE_BANDS = {"low": (150.0, 300.0), "mid": (600.0, 1000.0), "high": (1700.0, 3200.0)}
SOUND_TEXTURES = ("rumble", "hiss", "clicks")
RUMBLE_HZ, HISS_HZ = (60.0, 500.0), (2000.0, 3300.0)  # both under the 4 kHz Nyquist limit of 8 kHz audio
CLICK_RATE_HZ = (4.0, 14.0)
AUDIO_FRAME = 1024  # samples per encoded audio frame


@functools.cache
def photo(name: str) -> np.ndarray:
    """uint8 [H, W, 3]: a photograph shipped with scikit-image."""
    from skimage import data  # imported when photos are rendered: a shapes-only run does not need it

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def _noise_bank(rng: np.random.Generator, width: int, height: int, level: float) -> np.ndarray:
    """float32 [4, H, W, 3] of sensor noise; frames pick one at random (cheaper than fresh noise each)."""
    return (rng.standard_normal((4, height, width, 3), dtype=np.float32) * level).astype(np.float32)


def _finish(img: np.ndarray, gain: np.ndarray | float, noise: np.ndarray) -> np.ndarray:
    """uint8 frame: ``img`` (uint8 or float32) times a brightness ``gain`` (scalar or per channel), plus noise."""
    out = img * np.asarray(gain, np.float32)  # float32 all through: a float64 gain would double the cost
    out += noise
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def photo_frames(rng: np.random.Generator, group: str, n: int, width: int, height: int) -> Iterator[np.ndarray]:
    """``n`` uint8 [H, W, 3] frames: one photo of ``group``, a crop panning and zooming over it."""
    src = photo(str(rng.choice(PHOTO_GROUPS[group])))
    ph, pw = src.shape[:2]
    aspect = height / width
    widest = min(pw, ph / aspect)  # the largest crop of the frame's aspect that fits the photo
    zoom = rng.uniform(0.45, 1.0, 2) * widest  # crop widths at the span's start and end
    centres = []
    for cw in zoom:
        ch = cw * aspect
        centres.append((rng.uniform(cw / 2, pw - cw / 2), rng.uniform(ch / 2, ph - ch / 2)))
    flip = rng.random() < 0.5
    gains = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    light = rng.uniform(0.7, 1.2, 2)  # brightness at the start and the end
    noise = _noise_bank(rng, width, height, rng.uniform(2.0, 8.0))
    cols, rows = (np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height
    if flip:
        cols = cols[::-1]
    for f in range(n):
        a = f / max(1, n - 1)
        cw = (1 - a) * zoom[0] + a * zoom[1]
        cx = (1 - a) * centres[0][0] + a * centres[1][0]
        cy = (1 - a) * centres[0][1] + a * centres[1][1]
        xs = np.clip((cx - cw / 2 + cols * cw).astype(np.intp), 0, pw - 1)
        ys = np.clip((cy - cw * aspect / 2 + rows * cw * aspect).astype(np.intp), 0, ph - 1)
        img = src.take(ys, axis=0).take(xs, axis=1)
        yield _finish(img, gains * ((1 - a) * light[0] + a * light[1]), noise[rng.integers(len(noise))])


def _texture(kind: str, h: int, w: int, period: float, rng: np.random.Generator) -> np.ndarray:
    """bool [h, w]: where the texture's second colour shows."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "stripes":
        angle = rng.uniform(0, math.pi)
        return np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period) > 0
    px, py = xx + rng.uniform(0, period), yy + rng.uniform(0, period)
    if kind == "dots":
        dx, dy = px % period - period / 2, py % period - period / 2
        return dx * dx + dy * dy < (0.3 * period) ** 2
    return (np.floor(px / period) + np.floor(py / period)) % 2 == 1


def _sprite(rng: np.random.Generator, texture: str | None, h: int, w: int, period: float) -> tuple:
    """(rgb uint8 [h, w, 3], mask bool [h, w]) of an ellipse or a rounded box, textured or plain."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx + 0.5) / w * 2 - 1, (yy + 0.5) / h * 2 - 1
    mask = u * u + v * v <= 1 if rng.random() < 0.5 else u**4 + v**4 <= 1
    first = rng.integers(20, 120, 3, dtype=np.uint8)
    second = rng.integers(150, 256, 3, dtype=np.uint8)
    if rng.random() < 0.5:
        first, second = second, first
    rgb = np.broadcast_to(first, (h, w, 3)).copy()
    if texture is not None:
        rgb[_texture(texture, h, w, period, rng)] = second
    return rgb, mask


def shape_frames(rng: np.random.Generator, texture: str, n: int, width: int, height: int) -> Iterator[np.ndarray]:
    """``n`` uint8 [H, W, 3] frames: 1-3 blobs of ``texture`` and 0-3 plain small ones, moving."""
    period = max(width, height) / 11 * rng.uniform(0.85, 1.2)
    objects = []
    for big in [True] * int(rng.integers(1, 4)) + [False] * int(rng.integers(0, 4)):
        h = int(height * (rng.uniform(0.35, 0.6) if big else rng.uniform(0.08, 0.15)))
        w = int(h * rng.uniform(0.8, 1.6))
        rgb, mask = _sprite(rng, texture if big else None, h, w, period)
        pos = np.array([rng.uniform(0, width - w), rng.uniform(0, height - h)])
        heading = rng.uniform(0, 2 * math.pi)
        vel = np.array([math.cos(heading), math.sin(heading)]) * rng.uniform(0.2, 0.8) * width / max(1, n)
        objects.append((rgb, mask, pos, vel))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    lo, hi = rng.uniform(0, 90, 3), rng.uniform(0, 90, 3)
    background = (lo + (hi - lo) * ramp[..., None]).astype(np.uint8)
    light = rng.uniform(0.8, 1.15, 2)
    noise = _noise_bank(rng, width, height, rng.uniform(2.0, 6.0))
    for f in range(n):
        img = background.copy()
        for rgb, mask, pos, vel in objects:
            for d, limit in enumerate((width - rgb.shape[1], height - rgb.shape[0])):
                if not 0 <= pos[d] + vel[d] <= limit:  # bounce off the edges
                    vel[d] = -vel[d]
                pos[d] = min(max(pos[d] + vel[d], 0), limit)
            x, y = int(pos[0]), int(pos[1])
            region = img[y : y + rgb.shape[0], x : x + rgb.shape[1]]
            np.copyto(region, rgb, where=mask[..., None])
        a = f / max(1, n - 1)
        yield _finish(img, (1 - a) * light[0] + a * light[1], noise[rng.integers(len(noise))])


# ---- sound -----------------------------------------------------------------------------------------


def band_noise(rng: np.random.Generator, n: int, rate: int, low: float, high: float) -> np.ndarray:
    """float32 [n]: white noise kept between ``low`` and ``high`` Hz, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    hz = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(hz < low) | (hz > high)] = 0
    wave = np.fft.irfft(spectrum, n)
    return (wave / (np.sqrt(np.mean(wave * wave)) + 1e-9)).astype(np.float32)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.arange(1, spectrum.size + 1))
    wave = np.fft.irfft(spectrum, n)
    return (wave / (np.sqrt(np.mean(wave * wave)) + 1e-9)).astype(np.float32)


def _melody(rng: np.random.Generator, n: int, rate: int, band: tuple[float, float]) -> np.ndarray:
    """Notes of 0.15-0.5 s in ``band`` with two weak harmonics and vibrato, some rests between."""
    out = np.zeros(n, np.float32)
    at = 0
    while at < n:
        length = min(n - at, int(rng.uniform(0.15, 0.5) * rate))
        if rng.random() < 0.85:
            t = np.arange(length) / rate
            hz = rng.uniform(*band) * (1 + 0.01 * np.sin(2 * math.pi * rng.uniform(4, 6) * t))
            phase = 2 * math.pi * np.cumsum(hz) / rate
            note = np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase)
            envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02) * np.exp(-t * rng.uniform(0, 3))
            out[at : at + length] = note * envelope
        at += length
    return out


def _clicks(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """A train of 3 ms broadband clicks at 4-14 per second, with jitter."""
    out = np.zeros(n, np.float32)
    width = max(4, int(0.003 * rate))
    decay = np.exp(-np.arange(width) / (width / 4)).astype(np.float32)
    step = rate / rng.uniform(*CLICK_RATE_HZ)
    at = rng.uniform(0, step)
    while at < n - width:
        i = int(at)
        out[i : i + width] += rng.standard_normal(width).astype(np.float32) * decay * rng.uniform(2.0, 4.0)
        at += step * rng.uniform(0.85, 1.15)
    return out


def _chirp(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    start, stop = (300.0, min(2500.0, 0.4 * rate)) if rng.random() < 0.5 else (min(2500.0, 0.4 * rate), 300.0)
    hz = start + (stop - start) * t / max(t[-1], 1e-9)
    return np.sin(2 * math.pi * np.cumsum(hz) / rate).astype(np.float32)


def sound(rng: np.random.Generator, kind: str, value: str, n: int, rate: int, channels: int) -> np.ndarray:
    """float32 [channels, n] in [-1, 1]: one span of ``value`` (a tone band or a sound texture)."""
    if kind == "tones":
        main = _melody(rng, n, rate, (TONE_BANDS[value][0], min(TONE_BANDS[value][1], 0.4 * rate)))
    elif value == "clicks":
        main = _clicks(rng, n, rate)
    else:
        low, high = RUMBLE_HZ if value == "rumble" else HISS_HZ
        main = band_noise(rng, n, rate, low * rng.uniform(1, 1.3), high * rng.uniform(0.85, 1))
        t = np.arange(n) / rate
        main *= 1 - rng.uniform(0, 0.7) * (0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(0.5, 4) * t))
        if rng.random() < 0.3:
            main += 0.3 * _chirp(rng, n, rate)
    main *= rng.uniform(0.1, 0.25)
    fade = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.01 * rate))
    pan = rng.uniform(0.6, 1.0, channels)
    level = rng.uniform(0.005, 0.03)
    out = np.stack([main * fade * pan[c] + level * _pink(rng, n) for c in range(channels)])
    return np.clip(out, -1, 1).astype(np.float32)


# ---- files -------------------------------------------------------------------------------------------


def write_srt(cues: list[tuple[float, float, str]], path: Path) -> bool:
    """Write ``(start_s, end_s, text)`` cues as SubRip; False (and no file) when there are none."""
    if not cues:
        return False
    subs = pysubs2.SSAFile()
    for start, end, text in cues:
        subs.append(pysubs2.SSAEvent(start=round(start * 1000), end=round(end * 1000), text=text))
    subs.save(str(path), format_="srt")
    return True


def encode(path: Path, *, frames: Iterator[np.ndarray], audio: np.ndarray, width: int, height: int, fps: float,
           sample_rate: int, srt: Path | None) -> None:
    """Encode H.264 + AAC into ``path`` (.mp4 or .mkv); an .mkv gets ``srt``'s cues as a subrip stream."""
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    try:
        with av.open(str(path), "w") as out:
            video = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.options = {"preset": "ultrafast", "crf": "28"}
            sound_out = out.add_stream("aac", rate=sample_rate, layout=layout)
            sound_out.options = {"aac_coder": "fast"}
            if path.suffix == ".mkv" and srt is not None:
                embed_subtitles(out, srt)
            for i, img in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            for at in range(0, audio.shape[1], AUDIO_FRAME):
                chunk = np.ascontiguousarray(audio[:, at : at + AUDIO_FRAME])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate, frame.time_base, frame.pts = sample_rate, Fraction(1, sample_rate), at
                out.mux(sound_out.encode(frame))
            out.mux(sound_out.encode(None))
    except av.FFmpegError as e:
        raise MediaError(f"{path}: could not encode the suite video: {e}") from e
    if path.suffix == ".mkv" and srt is not None:
        srt.unlink()  # embedded instead
