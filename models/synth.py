"""A generated, labelled data set where no single modality suffices.

Every ``WINDOW_S`` seconds of a video carries three independent binary factors:

- video: a big moving shape, a ``circle`` or a ``square`` of equal area (random colours, positions,
  speeds, a noisy background and small flickering specks as distractors);
- audio: a tone, ``low`` (220-380 Hz) or ``high`` (1800-2600 Hz), under white noise and noise bursts;
- text: a caption holding one word of the ``calm`` or of the ``alert`` group among distractor words.

Three rules map the factors to one of four classes (``--rule``):

- ``pair`` (default): any two modalities fix the class, no single one does. The class is two bits, the
  shape (video) and the tone (audio): ``circle_low``, ``circle_high``, ``square_low``, ``square_high``;
  the caption's word group is their XOR: ``calm`` words when shape and tone agree (circle with low, square
  with high), ``alert`` words when they differ. One modality alone predicts the class right exactly 1 time
  in 2 (chance: 1 in 4); any two, always (the third bit follows from the other two). So a window that
  lacks its caption or its audio is still fully labelled by the two modalities it keeps.
- ``count``: the alarm level is how many of the three factors are "sharp" (a square, a high
  tone, an alert word): ``calm`` (0), ``uneasy`` (1), ``tense`` (2), ``alarm`` (3). Combinations are
  dealt so the four classes are equally frequent (levels 0 and 3 three times as often per combination).
  One modality alone predicts the class right at most 1 time in 2 (chance: 1 in 4), two at most 2 in 3,
  only all three always: a window missing a modality is not fully determined.
- ``xor``: ``{mood}_{harmony}``, harmony is ``match`` when shape and tone agree (circle with low, square
  with high), ``clash`` otherwise. Video or audio alone: 1 in 4 (chance), text alone or any two: 1 in 2.
  The hard setting: shape and tone carry no signal until both are learned, so it needs far more data.

Combinations are dealt from a shuffled deck, so these figures hold in every generated set of full
decks, not only on average.

Some windows have no caption and some files have no audio track, but never both for one window:
a file without audio keeps every caption, so at least two modalities are always there. Most files are
MP4 (H.264 + AAC) with a sidecar ``.srt``; some are Matroska with the captions as an embedded subrip
stream. Held-out videos in ``OUT/test/`` are rendered from other seeds. Needs numpy, PyAV and pysubs2 only (no torch).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pysubs2

from avfuse.stream.errors import ConfigError, MediaError

log = logging.getLogger(__name__)

WINDOW_S = 2.0
FPS = 25
SAMPLE_RATE = 16000
FRAMES_PER_WINDOW = round(FPS * WINDOW_S)
SAMPLES_PER_WINDOW = round(SAMPLE_RATE * WINDOW_S)

SHAPES = ("circle", "square")
TONES = ("low", "high")
MOODS = ("calm", "alert")
LEVELS = ("calm", "uneasy", "tense", "alarm")
XOR_LABELS = ("calm_match", "calm_clash", "alert_match", "alert_clash")
PAIR_LABELS = ("circle_low", "circle_high", "square_low", "square_high")
RULES = {
    "pair": "label = {shape}_{tone}; the caption's word group is shape XOR tone: calm words when (shape, tone) is "
            "(circle, low) or (square, high), alert words otherwise. Any two modalities fix the label, one alone "
            "leaves two labels open",
    "count": "label = the number of sharp factors (square shape, high tone, a caption word of the alert group): "
             "0 calm, 1 uneasy, 2 tense, 3 alarm",
    "xor": "label = {mood}_{harmony}; mood = the caption's word group (calm | alert); harmony = match when "
           "(shape, tone) is (circle, low) or (square, high), clash otherwise (shape XOR tone)",
}
LABELS = {"pair": PAIR_LABELS, "count": LEVELS, "xor": XOR_LABELS}
# Combination c (bit 0: square, bit 1: high tone, bit 2: alert words) -> copies per deck; the count rule
# deals levels 0 and 3 (one combination each) three times so that all four classes are equally frequent; the
# pair rule deals only the four combinations whose word group is shape XOR tone.
DECKS = {"pair": (1, 0, 0, 1, 0, 1, 1, 0), "count": (3, 1, 1, 1, 1, 1, 1, 3), "xor": (1,) * 8}
WORDS = {
    "calm": ("river", "meadow", "cloud", "pillow"),
    "alert": ("siren", "thunder", "danger", "storm"),
}
# Captions stay few and repetitive (16 per group): a caption unique to its window would let a model
# memorise the training labels through the text alone instead of learning the three factors.
DISTRACTORS = ("look", "the", "now")
LOW_HZ, HIGH_HZ = (220.0, 380.0), (1800.0, 2600.0)


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    videos: int = 24
    test_videos: int = 8
    seed: int = 0
    seconds: float = 8.0
    width: int = 128
    height: int = 128
    caption_drop: float = 0.15  # fraction of windows without a caption, among files with audio
    no_audio: float = 0.15  # fraction of files without an audio track (their windows all keep a caption)
    mkv: float = 0.25  # fraction of files with embedded subtitles in .mkv instead of a sidecar .srt
    rule: str = "pair"  # pair | count | xor

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"rule must be one of {tuple(RULES)}, got {self.rule!r}")
        if self.videos < 1 or self.test_videos < 0:
            raise ConfigError(f"videos must be >= 1 and test_videos >= 0, got {self.videos}, {self.test_videos}")
        windows = self.seconds / WINDOW_S
        if self.seconds < WINDOW_S or abs(windows - round(windows)) > 1e-9:
            raise ConfigError(f"seconds must be a positive multiple of the {WINDOW_S:g} s window, got {self.seconds!r}")
        if not (32 <= self.width <= 1024 and 32 <= self.height <= 1024) or self.width % 2 or self.height % 2:
            raise ConfigError(f"size must be even and 32..1024 on each side, got {self.width}x{self.height}")
        for name in ("caption_drop", "no_audio", "mkv"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be a fraction in [0, 1], got {getattr(self, name)!r}")

    @property
    def windows(self) -> int:
        return round(self.seconds / WINDOW_S)


@dataclass(frozen=True, kw_only=True)
class Window:
    """The ground truth of one window: its factors, its class, and which modalities the file has."""

    path: str  # relative to the manifest
    start: float
    end: float
    shape: str
    tone: str
    mood: str
    caption: str  # "" when the window has no caption
    has_audio: bool
    label: str


@dataclass(frozen=True, kw_only=True)
class SynthInfo:
    out_dir: Path
    manifest: Path
    test_manifest: Path | None
    labels: tuple[str, ...]
    rule: str
    train: tuple[Window, ...]
    test: tuple[Window, ...]
    seconds_taken: float


def label_of(shape: str, tone: str, mood: str, rule: str = "pair") -> str:
    sharp = (SHAPES.index(shape), TONES.index(tone), MOODS.index(mood))
    if rule == "pair":
        if sharp[2] != sharp[0] ^ sharp[1]:
            raise ConfigError(f"under the pair rule the word group is shape XOR tone; {shape}, {tone}, {mood} "
                              "is not a valid combination")
        return f"{shape}_{tone}"
    if rule == "count":
        return LEVELS[sum(sharp)]
    harmony = "match" if sharp[0] == sharp[1] else "clash"
    return f"{mood}_{harmony}"


def best_single_factor_accuracy(windows: list[Window] | tuple[Window, ...], factor: str) -> float:
    """Accuracy of the best predictor of the label that sees only ``factor`` (shape, tone or mood)."""
    table: dict[str, dict[str, int]] = {}
    for w in windows:
        row = table.setdefault(getattr(w, factor), {})
        row[w.label] = row.get(w.label, 0) + 1
    return sum(max(row.values()) for row in table.values()) / max(1, len(windows))


# ---- planning: which factors each window gets ------------------------------------------------------


def _plan(cfg: SynthConfig, count: int, stream_id: int, prefix: str, out_dir: Path) -> list[dict]:
    """Factors and file kinds for ``count`` videos; combinations dealt from shuffled decks."""
    rng = np.random.default_rng([cfg.seed, stream_id, 0])
    total = count * cfg.windows
    one_deck = np.repeat(np.arange(8), DECKS[cfg.rule])
    decks = [rng.permutation(one_deck) for _ in range(-(-total // len(one_deck)))]
    deck = rng.permutation(np.concatenate(decks)[:total])
    no_audio = set(rng.choice(count, size=round(count * cfg.no_audio), replace=False).tolist())
    mkv = set(rng.choice(count, size=round(count * cfg.mkv), replace=False).tolist())
    files = []
    for i in range(count):
        name = f"{prefix}{i:03d}.{'mkv' if i in mkv else 'mp4'}"
        windows = []
        for k in range(cfg.windows):
            combo = int(deck[i * cfg.windows + k])
            shape, tone, mood = SHAPES[combo & 1], TONES[(combo >> 1) & 1], MOODS[combo >> 2]
            has_audio = i not in no_audio  # a window never lacks both its audio and its caption
            caption = "" if has_audio and rng.random() < cfg.caption_drop else _caption(rng, mood)
            windows.append(Window(path=name, start=k * WINDOW_S, end=(k + 1) * WINDOW_S, shape=shape, tone=tone,
                                  mood=mood, caption=caption, has_audio=has_audio,
                                  label=label_of(shape, tone, mood, cfg.rule)))
        files.append({"path": out_dir / name, "windows": windows, "seed": [cfg.seed, stream_id, i + 1]})
    return files


def _caption(rng: np.random.Generator, mood: str) -> str:
    """A word of the mood's group, after a distractor word three times in four."""
    word = str(rng.choice(WORDS[mood]))
    k = int(rng.integers(len(DISTRACTORS) + 1))
    return f"{DISTRACTORS[k]} {word}" if k < len(DISTRACTORS) else word


# ---- rendering ---------------------------------------------------------------------------------------


def _render_video(rng: np.random.Generator, shape: str, width: int, height: int) -> np.ndarray:
    """uint8 [FRAMES_PER_WINDOW, H, W, 3]: one shape moving over a noisy background, with specks."""
    side = min(width, height)
    r = side * rng.uniform(0.17, 0.23)
    half = r * math.sqrt(math.pi) / 2  # a square of the circle's area: size says nothing about the class
    bg = rng.integers(10, 90, 3)
    colour = rng.integers(140, 256, 3)
    noise = int(rng.integers(6, 16))
    pos = np.array([rng.uniform(r + 1, width - r - 1), rng.uniform(r + 1, height - r - 1)])
    vel = rng.uniform(-1.5, 1.5, 2) * side / 128
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((FRAMES_PER_WINDOW, height, width, 3), np.uint8)
    for f in range(FRAMES_PER_WINDOW):
        for d, limit in enumerate((width, height)):  # bounce off the edges
            if not r < pos[d] + vel[d] < limit - r:
                vel[d] = -vel[d]
            pos[d] += vel[d]
        cx, cy = pos
        if shape == "circle":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        else:
            mask = (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
        img = rng.integers(-noise, noise + 1, (height, width, 3), dtype=np.int16) + bg.astype(np.int16)
        img[mask] += (colour - bg).astype(np.int16)
        for _ in range(3):  # specks: small bright distractors
            x, y = rng.integers(0, width - 3), rng.integers(0, height - 3)
            img[y : y + 3, x : x + 3] = rng.integers(60, 256, 3)
        out[f] = np.clip(img, 0, 255)
    return out


def _render_audio(rng: np.random.Generator, tone: str) -> np.ndarray:
    """float32 [SAMPLES_PER_WINDOW] in [-1, 1]: a tone with noise, faded in and out, plus a noise burst."""
    t = np.arange(SAMPLES_PER_WINDOW) / SAMPLE_RATE
    hz = rng.uniform(*(LOW_HZ if tone == "low" else HIGH_HZ))
    sig = rng.uniform(0.2, 0.4) * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    sig = sig * fade + rng.uniform(0.01, 0.05) * rng.standard_normal(t.size)
    if rng.random() < 0.5:
        length = int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)
        at = int(rng.integers(0, t.size - length))
        sig[at : at + length] += rng.uniform(0.05, 0.15) * rng.standard_normal(length)
    return np.clip(sig, -1, 1).astype(np.float32)


def _write_srt(windows: list[Window], rng: np.random.Generator, path: Path) -> bool:
    subs = pysubs2.SSAFile()
    for w in windows:
        if w.caption:
            start = w.start + rng.uniform(0.05, 0.4)
            end = w.end - rng.uniform(0.05, 0.4)
            subs.append(pysubs2.SSAEvent(start=round(start * 1000), end=round(end * 1000), text=w.caption))
    if not subs.events:
        return False
    subs.save(str(path), format_="srt")
    return True


def embed_subtitles(out: av.container.OutputContainer, srt: Path) -> None:
    """Mux the subtitle stream of the file ``srt`` into ``out`` as an embedded subrip stream."""
    with av.open(str(srt)) as subs_in:
        sub_stream = out.add_stream_from_template(subs_in.streams.subtitles[0])
        for packet in subs_in.demux(subs_in.streams.subtitles[0]):
            if packet.size:
                packet.stream = sub_stream
                out.mux(packet)


def _render_file(cfg: SynthConfig, spec: dict) -> None:
    path: Path = spec["path"]
    windows: list[Window] = spec["windows"]
    rng = np.random.default_rng(spec["seed"])
    srt = path.with_suffix(".srt")
    has_captions = _write_srt(windows, rng, srt)
    try:
        with av.open(str(path), "w") as out:
            video = out.add_stream("libx264", rate=FPS)
            video.width, video.height, video.pix_fmt = cfg.width, cfg.height, "yuv420p"
            video.options = {"preset": "ultrafast", "crf": "20"}
            audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if windows[0].has_audio else None
            if path.suffix == ".mkv" and has_captions:
                embed_subtitles(out, srt)
            for k, w in enumerate(windows):
                for f, img in enumerate(_render_video(rng, w.shape, cfg.width, cfg.height)):
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts = k * FRAMES_PER_WINDOW + f
                    out.mux(video.encode(frame))
                if audio is not None:
                    wave = _render_audio(rng, w.tone)
                    for at in range(0, wave.size, 1024):
                        frame = av.AudioFrame.from_ndarray(wave[None, at : at + 1024], format="fltp", layout="mono")
                        frame.sample_rate = SAMPLE_RATE
                        frame.time_base = Fraction(1, SAMPLE_RATE)
                        frame.pts = k * SAMPLES_PER_WINDOW + at
                        out.mux(audio.encode(frame))
            out.mux(video.encode(None))
            if audio is not None:
                out.mux(audio.encode(None))
    except av.FFmpegError as e:
        raise MediaError(f"{path}: could not encode the synthetic video: {e}") from e
    if path.suffix == ".mkv" and has_captions:
        srt.unlink()  # embedded instead


# ---- the data set -------------------------------------------------------------------------------------


def _write_manifest(path: Path, windows: list[Window]) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "start", "end", "label"])
        out.writerows([w.path, f"{w.start:g}", f"{w.end:g}", w.label] for w in windows)


def _write_factors(path: Path, windows: list[Window]) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "start", "end", "label", "shape", "tone", "mood", "caption", "has_audio"])
        out.writerows([w.path, f"{w.start:g}", f"{w.end:g}", w.label, w.shape, w.tone, w.mood, w.caption,
                       int(w.has_audio)] for w in windows)


def _build(cfg: SynthConfig, out_dir: Path, count: int, stream_id: int, prefix: str) -> list[Window]:
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(cfg, count, stream_id, prefix, out_dir)
    for spec in plan:
        _render_file(cfg, spec)
    windows = [w for spec in plan for w in spec["windows"]]
    _write_manifest(out_dir / "manifest.csv", windows)
    _write_factors(out_dir / "factors.csv", windows)
    return windows


def synthesize(out_dir: str | Path, *, videos: int, test_videos: int, seed: int = 0, seconds: float = 8.0,
               width: int = 128, height: int = 128, caption_drop: float = 0.15, no_audio: float = 0.15,
               mkv: float = 0.25, rule: str = "pair") -> SynthInfo:
    """Write ``videos`` training videos (``OUT/manifest.csv``) and ``test_videos`` held-out ones rendered
    from other seeds (``OUT/test/manifest.csv``), plus ``OUT/info.json`` describing classes and rule."""
    cfg = SynthConfig(videos=videos, test_videos=test_videos, seed=seed, seconds=seconds, width=width,
                      height=height, caption_drop=caption_drop, no_audio=no_audio, mkv=mkv, rule=rule)
    out = Path(out_dir)
    began = time.perf_counter()
    train = _build(cfg, out, cfg.videos, 1, "v")
    test = _build(cfg, out / "test", cfg.test_videos, 2, "t") if cfg.test_videos else []
    info = {
        "classes": list(LABELS[cfg.rule]),
        "rule": RULES[cfg.rule],
        "factors": {"video": list(SHAPES), "audio": list(TONES), "text": WORDS, "distractor_words": DISTRACTORS},
        "best_accuracy_from_one_factor": {
            factor: round(best_single_factor_accuracy(train, factor), 3) for factor in ("shape", "tone", "mood")},
        "missing": f"{cfg.caption_drop:.0%} of the windows of files with audio have no caption; "
                   f"{cfg.no_audio:.0%} of the files have no audio track and keep every caption: no window lacks both",
        "window_s": WINDOW_S, "fps": FPS, "sample_rate": SAMPLE_RATE,
        "config": asdict(cfg),
        "train": {"manifest": "manifest.csv", "videos": cfg.videos, "windows": len(train)},
        "test": {"manifest": "test/manifest.csv" if test else None, "videos": cfg.test_videos, "windows": len(test)},
        "ground_truth": "factors.csv beside each manifest: shape, tone, mood, caption and audio of every window",
    }
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    took = time.perf_counter() - began
    log.info("wrote %d + %d videos (%d + %d labelled windows) to %s in %.1f s",
             cfg.videos, cfg.test_videos, len(train), len(test), out, took)
    return SynthInfo(out_dir=out, manifest=out / "manifest.csv",
                     test_manifest=out / "test" / "manifest.csv" if test else None, labels=LABELS[cfg.rule],
                     rule=RULES[cfg.rule], train=tuple(train), test=tuple(test), seconds_taken=took)
