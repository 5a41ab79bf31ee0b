"""A generalisation suite: labelled data sets that differ from ``avfuse synth``'s default as real data does.

``avfuse synth`` makes one kind of data (128x128 at 25 fps, 16 kHz mono, circles and squares, two sine
tones, four balanced classes, a label every 2 s window). A model trained on it by a default recipe fits
it and nothing else. Each set of ``SUITE`` changes what real data changes: frame size and rate, sample
rate and channels, labels per file or per span, 4 to 12 classes of unequal size, many missing captions,
real photographs instead of drawn shapes, noise textures instead of tones, containers.

Each modality carries one factor, a value in Z_n:

- video: the photo group (``cat``, ``space``, ``food``) or the texture of the moving blobs
  (``stripes``, ``dots``, ``checks``);
- audio: the tone band (``low``, ``mid``, ``high``) or the sound texture (``rumble``, ``hiss``, ``clicks``);
- text: the word group of the caption (``water``, ``fire``, ``stone``), several synonyms each, among
  distractor words.

Two rules make classes from factors: ``factor`` (the class is all three factors; one missing leaves it
open) and ``pair`` (a Latin square: the class is video v and audio a, the text is t = (v + a) mod n, so
any two modalities fix it). ``generate`` writes ``OUT/train/*``, ``OUT/test/*``, the manifests
``OUT/train.csv`` and ``OUT/test.csv`` (``path,start,end,label``, paths relative to the CSV), the ground
truth ``OUT/train_factors.csv``, ``OUT/test_factors.csv`` and ``OUT/info.json``. Held-out videos come
from other seeds: other crops, motions, voices and caption word combinations.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avfuse.models import suite_render as render
from avfuse.stream.errors import ConfigError
from avfuse.stream.infer import tokenize

log = logging.getLogger(__name__)

RULES = {
    "factor": "label = {video}_{audio}_{text}: each modality gives one factor, only all three fix the label",
    "pair": "label = {video}_{audio}; the caption's word group is text = (video + audio) mod n (a Latin "
            "square): any two modalities fix the label, one alone leaves n labels open",
}
SPANS = {"file": 1, "halves": 2, "thirds": 3, "quarters": 4}
VISUALS = {"photos": tuple(render.PHOTO_GROUPS), "shapes": render.TEXTURES}
SOUNDS = {"tones": tuple(render.TONE_BANDS), "textures": render.SOUND_TEXTURES}
CONTAINERS = ("mp4", "mkv", "mixed")
PARTS = ("train", "test")
# classes -> values per modality (video, audio, text)
LEVELS = {"factor": {8: (2, 2, 2), 12: (3, 2, 2)}, "pair": {4: (2, 2, 2), 9: (3, 3, 3)}}
WORDS = {
    "water": ("river", "lake", "rain", "ocean", "stream", "flood"),
    "fire": ("flame", "blaze", "ember", "smoke", "spark", "ash"),
    "stone": ("rock", "granite", "pebble", "boulder", "cliff", "gravel"),
}
DISTRACTORS = ("the", "a", "we", "see", "now", "there", "look", "here", "some", "big", "old", "again", "near")
MAX_MISSING = {"factor": 0.1, "pair": 0.6}  # a factor window without its caption cannot be decided


@dataclass(frozen=True, kw_only=True)
class SuiteSet:
    """One data set of the suite."""

    name: str
    width: int
    height: int
    fps: float
    sample_rate: int
    channels: int  # 1 or 2
    classes: int  # 4, 9 (pair) or 8, 12 (factor)
    rule: str  # factor | pair
    videos: int
    test_videos: int
    seconds: float = 8.0
    spans: str  # file | halves | thirds | quarters: the labelled spans of each file
    missing_captions: float  # share of spans without a caption
    imbalance: float  # 0: equal classes; 0.5: the rarest class has half the spans of the commonest
    visuals: str  # photos | shapes
    sounds: str  # tones | textures
    container: str  # mp4 (sidecar .srt) | mkv (embedded subrip) | mixed

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"name must be letters, digits, '-' and '_', got {self.name!r}")
        if not (32 <= self.width <= 1920 and 32 <= self.height <= 1080) or self.width % 2 or self.height % 2:
            raise ConfigError(f"size must be even, 32..1920 x 32..1080, got {self.width}x{self.height}")
        if not 5 <= self.fps <= 60:
            raise ConfigError(f"fps must be 5..60, got {self.fps!r}")
        if not 8000 <= self.sample_rate <= 48000:
            raise ConfigError(f"sample_rate must be 8000..48000 Hz, got {self.sample_rate!r}")
        if self.channels not in (1, 2):
            raise ConfigError(f"channels must be 1 or 2, got {self.channels!r}")
        for field, allowed in (("rule", RULES), ("spans", SPANS), ("visuals", VISUALS), ("sounds", SOUNDS),
                               ("container", CONTAINERS)):
            if getattr(self, field) not in allowed:
                raise ConfigError(f"{field} must be one of {tuple(allowed)}, got {getattr(self, field)!r}")
        if self.classes not in LEVELS[self.rule]:
            raise ConfigError(f"the {self.rule} rule makes {tuple(LEVELS[self.rule])} classes, got {self.classes!r}")
        if not 2.0 <= self.seconds <= 60.0:
            raise ConfigError(f"seconds must be 2..60, got {self.seconds!r}")
        if not 0.0 <= self.missing_captions <= MAX_MISSING[self.rule]:
            raise ConfigError(f"missing_captions must be 0..{MAX_MISSING[self.rule]} under the {self.rule} rule, "
                              f"got {self.missing_captions!r}")
        if not 0.0 <= self.imbalance < 1.0:
            raise ConfigError(f"imbalance must be in [0, 1), got {self.imbalance!r}")
        for field in ("videos", "test_videos"):
            if getattr(self, field) * SPANS[self.spans] < self.classes:
                raise ConfigError(f"{field} ({getattr(self, field)!r}) x {SPANS[self.spans]} spans per file must "
                                  f"give every one of the {self.classes} classes a span")

    @property
    def levels(self) -> tuple[int, int, int]:
        return LEVELS[self.rule][self.classes]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label_of(self, *factors_of(self, c)) for c in range(self.classes))


@dataclass(frozen=True, kw_only=True)
class SuiteData:
    """What ``generate`` wrote."""

    name: str
    out_dir: Path
    train_manifest: Path
    test_manifest: Path
    labels: tuple[str, ...]
    seconds_taken: float


def factors_of(s: SuiteSet, c: int) -> tuple[int, int, int]:
    """Class index -> (video, audio, text) factor values."""
    _nv, na, nt = s.levels
    if s.rule == "pair":
        v, a = divmod(c, na)
        return v, a, (v + a) % nt
    return c // (na * nt), (c // nt) % na, c % nt


def label_of(s: SuiteSet, v: int, a: int, t: int) -> str:
    names = (VISUALS[s.visuals][v], SOUNDS[s.sounds][a], tuple(WORDS)[t])
    return "_".join(names[:2] if s.rule == "pair" else names)


SUITE: tuple[SuiteSet, ...] = (
    SuiteSet(name="phone", width=176, height=144, fps=15, sample_rate=8000, channels=1, classes=9, rule="pair",
             videos=40, test_videos=12, spans="file", missing_captions=0.3, imbalance=0.5, visuals="photos",
             sounds="textures", container="mp4"),
    SuiteSet(name="webcam", width=320, height=240, fps=25, sample_rate=16000, channels=1, classes=8,
             rule="factor", videos=40, test_videos=12, spans="halves", missing_captions=0.05, imbalance=0.0,
             visuals="shapes", sounds="tones", container="mkv"),
    SuiteSet(name="hd-clips", width=640, height=360, fps=30, sample_rate=48000, channels=2, classes=4,
             rule="pair", videos=40, test_videos=10, spans="thirds", missing_captions=0.5, imbalance=0.3,
             visuals="photos", sounds="tones", container="mixed"),
    SuiteSet(name="broadcast", width=640, height=360, fps=30, sample_rate=44100, channels=2, classes=12,
             rule="factor", videos=40, test_videos=12, spans="halves", missing_captions=0.1, imbalance=0.5,
             visuals="shapes", sounds="textures", container="mp4"),
    SuiteSet(name="radio", width=320, height=240, fps=25, sample_rate=44100, channels=1, classes=4, rule="pair",
             videos=40, test_videos=8, spans="quarters", missing_captions=0.4, imbalance=0.0, visuals="shapes",
             sounds="textures", container="mkv"),
    SuiteSet(name="archive", width=176, height=144, fps=15, sample_rate=16000, channels=2, classes=9,
             rule="pair", videos=200, test_videos=40, spans="file", missing_captions=0.2, imbalance=0.5,
             visuals="photos", sounds="textures", container="mixed"),
    SuiteSet(name="lab", width=320, height=240, fps=25, sample_rate=48000, channels=1, classes=12, rule="factor",
             videos=40, test_videos=12, spans="file", missing_captions=0.0, imbalance=0.3, visuals="photos",
             sounds="tones", container="mixed"),
)


# ---- planning: which class each span gets -------------------------------------------------------------


def _class_counts(s: SuiteSet, total: int, rng: np.random.Generator) -> np.ndarray:
    """Spans per class summing to ``total``: weights falling linearly from 1 to 1 - imbalance, every class >= 1."""
    weights = np.linspace(1.0, 1.0 - s.imbalance, s.classes)[rng.permutation(s.classes)]
    share = weights / weights.sum() * (total - s.classes)
    counts = 1 + np.floor(share).astype(int)
    for c in np.argsort(share - np.floor(share))[::-1][: total - counts.sum()]:
        counts[c] += 1  # largest remainders
    return counts


def _deal(counts: np.ndarray, files: int, per_file: int, rng: np.random.Generator) -> np.ndarray:
    """int [files, per_file] class of each span, shuffled so that neighbouring spans of a file differ."""
    deck = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    grid = deck.reshape(files, per_file)
    for _ in range(100 * deck.size):
        bad = np.argwhere(grid[:, 1:] == grid[:, :-1])
        if not len(bad):
            return grid
        i, k = bad[rng.integers(len(bad))]
        j, m = rng.integers(files), rng.integers(per_file)
        grid[i, k + 1], grid[j, m] = grid[j, m], grid[i, k + 1]
        if _clashes(grid, i, k + 1) or _clashes(grid, j, m):
            grid[i, k + 1], grid[j, m] = grid[j, m], grid[i, k + 1]  # undo: it made another clash
    raise ConfigError(f"cannot deal {counts.tolist()} spans so that neighbours differ; lower the imbalance")


def _clashes(grid: np.ndarray, i: int, k: int) -> bool:
    return bool((k > 0 and grid[i, k] == grid[i, k - 1]) or (k + 1 < grid.shape[1] and grid[i, k] == grid[i, k + 1]))


def _caption(rng: np.random.Generator, group: str, used: set[str], known: set[str] | None) -> str:
    """1-2 words of ``group`` among 1-3 distractors, only ``known`` words (all when None); a word
    combination not in ``used`` where one is found."""
    words_of = [w for w in WORDS[group] if known is None or w in known] or list(WORDS[group])
    distractors = [w for w in DISTRACTORS if known is None or w in known] or list(DISTRACTORS)
    for _ in range(20):
        chosen = list(rng.choice(words_of, size=min(len(words_of), int(rng.integers(1, 3))), replace=False))
        chosen += list(rng.choice(distractors, size=min(len(distractors), int(rng.integers(1, 4))), replace=False))
        words = [str(w) for w in rng.permutation(chosen)]
        if " ".join(words) not in used:  # compared as the tokenizer sees them
            break
    text = " ".join(words)
    if rng.random() < 0.5:
        text = text.capitalize() + str(rng.choice([".", "!", "..."]))
    return text


# ---- the data set -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Span:
    """The ground truth of one labelled span."""

    path: str  # relative to the manifest
    start: float
    end: float
    label: str
    video: str
    audio: str
    text: str
    caption: str  # "" when the span has no caption


def _render(s: SuiteSet, path: Path, spans: list[Span], seed: list[int]) -> None:
    rng = np.random.default_rng(seed)
    n_frames = round(s.seconds * s.fps)
    frames_at = np.arange(n_frames) / s.fps
    ends = [sp.end for sp in spans]
    span_of = np.minimum(np.searchsorted(ends, frames_at, side="right"), len(spans) - 1)
    draw = render.photo_frames if s.visuals == "photos" else render.shape_frames

    def frames():
        for j, sp in enumerate(spans):
            yield from draw(rng, sp.video, int(np.sum(span_of == j)), s.width, s.height)

    edges = [round(sp.start * s.sample_rate) for sp in spans] + [round(s.seconds * s.sample_rate)]
    audio = np.concatenate([render.sound(rng, s.sounds, sp.audio, edges[j + 1] - edges[j], s.sample_rate,
                                         s.channels) for j, sp in enumerate(spans)], axis=1)
    cues = []
    for sp in spans:
        if sp.caption:
            length = sp.end - sp.start
            cues.append((sp.start + rng.uniform(0.02, 0.1) * length, sp.end - rng.uniform(0.02, 0.1) * length,
                         sp.caption))
    srt = path.with_suffix(".srt")
    has = render.write_srt(cues, srt)
    render.encode(path, frames=frames(), audio=audio, width=s.width, height=s.height, fps=s.fps,
                  sample_rate=s.sample_rate, srt=srt if has else None)


def _plan_part(s: SuiteSet, part: str, count: int, seed: int, used: set[str], known: set[str] | None) -> list[Span]:
    rng = np.random.default_rng([seed, PARTS.index(part) + 1, 0])
    per_file = SPANS[s.spans]
    grid = _deal(_class_counts(s, count * per_file, rng), count, per_file, rng)
    missing = set(rng.choice(grid.size, size=round(grid.size * s.missing_captions), replace=False).tolist())
    mkv = {"mp4": 0.0, "mkv": 1.0, "mixed": 0.5}[s.container]
    kinds = rng.permutation([".mkv"] * round(count * mkv) + [".mp4"] * (count - round(count * mkv)))
    spans: list[Span] = []
    for i, k in itertools.product(range(count), range(per_file)):
        v, a, t = factors_of(s, int(grid[i, k]))
        caption = "" if i * per_file + k in missing else _caption(rng, tuple(WORDS)[t], used, known)
        spans.append(Span(path=f"{part}/{s.name}-{part}{i:03d}{kinds[i]}", start=round(k * s.seconds / per_file, 3),
                          end=round((k + 1) * s.seconds / per_file, 3), label=label_of(s, v, a, t),
                          video=VISUALS[s.visuals][v], audio=SOUNDS[s.sounds][a], text=tuple(WORDS)[t],
                          caption=caption))
    used.update(" ".join(tokenize.words(sp.caption)) for sp in spans)
    return spans


def plan(suite_set: SuiteSet, *, seed: int = 0) -> tuple[tuple[Span, ...], tuple[Span, ...]]:
    """The (train, test) spans of a set, with their classes, factors and captions, without rendering.

    Test captions are new combinations of the words of the training captions, wherever one is found."""
    used: set[str] = set()
    train = _plan_part(suite_set, "train", suite_set.videos, seed, used, None)
    known = {w for caption in used for w in caption.split()}
    return tuple(train), tuple(_plan_part(suite_set, "test", suite_set.test_videos, seed, used, known))


def _write_csv(path: Path, spans: tuple[Span, ...], *, factors: bool, whole_file: bool) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "start", "end", "label"] + (["video", "audio", "text", "caption"] * factors))
        for sp in spans:
            times = ["", ""] if whole_file and not factors else [f"{sp.start:g}", f"{sp.end:g}"]
            out.writerow([sp.path, *times, sp.label] + ([sp.video, sp.audio, sp.text, sp.caption] * factors))


def generate(suite_set: SuiteSet, out_dir: str | Path, *, seed: int = 0) -> SuiteData:
    """Write one set of the suite into ``out_dir``: media, manifests, ground truth and ``info.json``."""
    s, out = suite_set, Path(out_dir)
    began = time.perf_counter()
    train, test = plan(s, seed=seed)
    for part, spans in (("train", train), ("test", test)):
        (out / part).mkdir(parents=True, exist_ok=True)
        for i, (path, file_spans) in enumerate(itertools.groupby(spans, key=lambda sp: sp.path)):
            _render(s, out / path, list(file_spans), [seed, PARTS.index(part) + 1, i + 1])
    for part, spans in (("train", train), ("test", test)):
        _write_csv(out / f"{part}.csv", spans, factors=False, whole_file=s.spans == "file")
        _write_csv(out / f"{part}_factors.csv", spans, factors=True, whole_file=False)
    info = {
        **asdict(s),
        "labels": list(s.labels),
        "rule_text": RULES[s.rule],
        "factors": {"video": list(VISUALS[s.visuals][: s.levels[0]]), "audio": list(SOUNDS[s.sounds][: s.levels[1]]),
                    "text": {g: list(WORDS[g]) for g in tuple(WORDS)[: s.levels[2]]},
                    "distractor_words": list(DISTRACTORS)},
        "photos": {g: list(p) for g, p in render.PHOTO_GROUPS.items()} if s.visuals == "photos" else None,
        "seed": seed,
        "train": {"manifest": "train.csv", "factors": "train_factors.csv", "spans": len(train)},
        "test": {"manifest": "test.csv", "factors": "test_factors.csv", "spans": len(test)},
    }
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    took = time.perf_counter() - began
    log.info("%s: wrote %d + %d videos (%d + %d spans) to %s in %.1f s", s.name, s.videos, s.test_videos,
             len(train), len(test), out, took)
    return SuiteData(name=s.name, out_dir=out, train_manifest=out / "train.csv", test_manifest=out / "test.csv",
                     labels=s.labels, seconds_taken=took)


def main(argv: list[str] | None = None) -> int:
    by_name = {s.name: s for s in SUITE}
    parser = argparse.ArgumentParser(prog="python -m avfuse.models.suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder; each set goes to OUT/NAME")
    parser.add_argument("--set", choices=tuple(by_name), action="append", help="one set (repeatable); default all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.set or tuple(by_name):
        data = generate(by_name[name], args.out / name, seed=args.seed)
        print(f"{name}: {len(data.labels)} classes, {data.train_manifest}, {data.test_manifest}, "
              f"{data.seconds_taken:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
