"""Training data: manifests and class folders, decoded by the runtime's own segmenter into numpy,
cached on disk, and split by source file. No torch here (see models/torchdata.py).

Cache: one ``.npz`` per source file under ``$AVFUSE_CACHE`` (default ``~/.cache/avfuse/segments``),
named by a sha256 over the file's bytes, its sidecar captions' bytes, the decode and segment configs
and the avfuse version. Hashing reads the file once, which costs far less than decoding it, and a file
edited in place (same size, same mtime or not) is never served stale. Labels are not cached: they come
from the manifest on every load. Writes go to a temporary file that is renamed into place.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import tempfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from avfuse import __version__
from avfuse.stream.errors import AvfuseError, ConfigError, DataError
from avfuse.stream.media.config import DecodeConfig, SegmentConfig

log = logging.getLogger(__name__)

COLUMNS = ("path", "start", "end", "label")
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mpg", ".mpeg", ".flv"})
CACHE_FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class ManifestRow:
    path: Path  # resolved against the manifest's folder
    start: float  # 0 when the manifest leaves it empty
    end: float  # math.inf when the manifest leaves it empty
    label: str
    line: int  # line number in the CSV, for messages (0 for files found in a folder)

    def where(self, origin: str) -> str:
        return f"{origin}:{self.line}" if self.line else f"{origin}: {self.path.name}"


@dataclass(frozen=True, kw_only=True, eq=False)
class SegmentSet:
    """All decoded segments of a data set, in memory as numpy, in source order."""

    frames: np.ndarray  # uint8 [N, T, H, W, 3]
    audio: np.ndarray  # float32 [N, S]
    texts: list[str]
    present: np.ndarray  # float32 [N, 3]: video, audio, text
    labels: np.ndarray  # int64 [N], indices into label_names
    label_names: tuple[str, ...]
    sources: list[str]
    starts: np.ndarray  # float64 [N], seconds

    def __post_init__(self) -> None:
        n = len(self.labels)
        sizes = (len(self.frames), len(self.audio), len(self.texts), len(self.present), len(self.sources),
                 len(self.starts))
        if any(size != n for size in sizes):
            raise DataError(f"segment set fields disagree on the number of segments: {n} labels, {sizes}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.label_names)):
            raise DataError(f"labels must index label_names ({len(self.label_names)} names)")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: Sequence[int] | np.ndarray) -> SegmentSet:
        idx = np.asarray(idx, dtype=np.int64)
        return SegmentSet(frames=self.frames[idx], audio=self.audio[idx], texts=[self.texts[i] for i in idx],
                          present=self.present[idx], labels=self.labels[idx], label_names=self.label_names,
                          sources=[self.sources[i] for i in idx], starts=self.starts[idx])

    def counts(self) -> dict[str, int]:
        """Segments per label name."""
        found = Counter(self.labels.tolist())
        return {name: found.get(i, 0) for i, name in enumerate(self.label_names)}


# ---- manifests -------------------------------------------------------------------------------------------


def _time(text: str, *, name: str, csv_path: Path, line: int, empty: float) -> float:
    if not text.strip():
        return empty
    try:
        value = float(text)
    except ValueError as e:
        raise DataError(f"{csv_path}:{line}: {name} must be seconds (a number) or empty, got {text!r}") from e
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{csv_path}:{line}: {name} must be a finite number of seconds >= 0, got {text!r}")
    return value


def read_manifest(csv_path: str | os.PathLike) -> list[ManifestRow]:
    """Rows of a ``path,start,end,label`` CSV. Paths are relative to the CSV; empty start/end mean the
    whole file. A row whose file is missing is logged (with its line number) and skipped."""
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{csv_path}: cannot read the manifest: {e}") from e
    if not lines:
        raise DataError(f"{csv_path}: manifest is empty; expected a header {','.join(COLUMNS)} and rows")
    header = [h.strip().lower() for h in lines[0]]
    if header[: len(COLUMNS)] != list(COLUMNS):
        raise DataError(f"{csv_path}:1: header must start with {','.join(COLUMNS)}, got {','.join(lines[0])!r}")
    rows, missing = [], 0
    for line, fields in enumerate(lines[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) < len(COLUMNS):
            raise DataError(f"{csv_path}:{line}: expected {len(COLUMNS)} fields ({','.join(COLUMNS)}), "
                            f"got {len(fields)}")
        path_text, start_text, end_text, label = (f.strip() for f in fields[:4])
        if not path_text or not label:
            raise DataError(f"{csv_path}:{line}: path and label must not be empty")
        start = _time(start_text, name="start", csv_path=csv_path, line=line, empty=0.0)
        end = _time(end_text, name="end", csv_path=csv_path, line=line, empty=math.inf)
        if not end > start:
            raise DataError(f"{csv_path}:{line}: end ({end_text}) must be after start ({start_text})")
        path = csv_path.parent / path_text
        if not path.is_file():
            log.warning("%s:%d: %s: no such file; row skipped", csv_path, line, path)
            missing += 1
            continue
        rows.append(ManifestRow(path=path, start=start, end=end, label=label, line=line))
    if not rows:
        what = f"all {missing} rows name missing files" if missing else "it has a header but no rows"
        raise DataError(f"{csv_path}: nothing to load: {what}")
    _check_overlaps(csv_path, rows)
    return rows


def _check_overlaps(csv_path: Path, rows: list[ManifestRow]) -> None:
    by_file: dict[Path, list[ManifestRow]] = {}
    for row in rows:
        by_file.setdefault(row.path, []).append(row)
    for file_rows in by_file.values():
        for i, a in enumerate(file_rows):
            b = next((b for b in file_rows[i + 1:] if b.start < a.end and a.start < b.end and a.label != b.label),
                     None)
            if b is not None:
                raise DataError(f"{csv_path}:{b.line}: [{b.start:g}, {b.end:g}) of {b.path.name} overlaps line "
                                f"{a.line} with another label ({a.label!r} vs {b.label!r})")


# ---- decoding and the cache ---------------------------------------------------------------------------


def default_cache_dir() -> Path:
    return Path(os.environ.get("AVFUSE_CACHE") or Path.home() / ".cache" / "avfuse" / "segments")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(path: Path, decode: DecodeConfig, segment: SegmentConfig) -> str:
    """What a file's cached segments depend on: its bytes, its sidecar captions, the configs, the code."""
    from avfuse.stream.media import captions  # the segmenter's own rule for which sidecar a file has

    config = {k: v for k, v in asdict(decode).items() if k not in ("threads", "queue_size")}
    parts = {"format": CACHE_FORMAT, "version": __version__, "decode": config, "segment": asdict(segment),
             "media": _sha256_file(path),
             "captions": _sha256_file(sidecar) if (sidecar := captions.sidecar_for(path)) else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _decode(path: Path, decode: DecodeConfig, segment: SegmentConfig) -> dict[str, np.ndarray]:
    from avfuse.stream.media import segmenter  # looked up at call time: the decoder is the runtime's own

    items = list(segmenter.iter_segments(str(path), decode=decode, segment=segment))
    if not items:
        raise DataError(f"{path}: decoded to no segments")
    return {
        "frames": np.stack([s.frames for s in items]),
        "audio": np.stack([s.audio for s in items]),
        "texts": np.array([s.text for s in items], dtype=np.str_),
        "present": np.stack([s.present.as_array() for s in items]),
        "starts": np.array([s.start for s in items], dtype=np.float64),
        "ends": np.array([s.end for s in items], dtype=np.float64),
    }


def _load_cached(file: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("%s: unreadable cache entry, decoding again: %s", file, e)
        return None


def _save_cached(file: Path, arrays: dict[str, np.ndarray]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, file)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        log.warning("%s: could not write the segment cache: %s", file, e)


def file_segments(path: Path, *, decode: DecodeConfig, segment: SegmentConfig,
                  cache_dir: Path | None) -> dict[str, np.ndarray]:
    """Decoded segments of one file as arrays, from the cache when the key matches."""
    file = None
    if cache_dir is not None:
        file = cache_dir / f"{cache_key(path, decode, segment)}.npz"
        if file.is_file() and (cached := _load_cached(file)) is not None:
            log.debug("%s: segments from cache %s", path, file.name)
            return cached
    arrays = _decode(path, decode, segment)
    if file is not None:
        _save_cached(file, arrays)
    return arrays


# ---- loading ------------------------------------------------------------------------------------------


def _load_rows(rows: list[ManifestRow], *, where: str, decode: DecodeConfig, segment: SegmentConfig,
               cache_dir: str | os.PathLike | None, labels: Sequence[str] | None) -> SegmentSet:
    if labels is not None:
        names = tuple(labels)
        for row in rows:
            if row.label not in names:
                raise DataError(f"{row.where(where)}: label {row.label!r} is not one of the model's labels {names}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    by_file: dict[Path, list[ManifestRow]] = {}
    for row in rows:
        by_file.setdefault(row.path, []).append(row)
    parts, failed, dropped = [], 0, 0
    for path, file_rows in by_file.items():
        try:
            arrays = file_segments(path, decode=decode, segment=segment, cache_dir=cache)
        except (AvfuseError, av.FFmpegError, OSError) as e:
            log.warning("%s: %s: cannot decode, skipped: %s", file_rows[0].where(where), path, e)
            failed += 1
            continue
        mids = (arrays["starts"] + arrays["ends"]) / 2
        row_of = np.full(len(mids), -1)
        for j in range(len(file_rows) - 1, -1, -1):  # earlier rows win
            inside = (mids >= file_rows[j].start) & (mids < file_rows[j].end)
            row_of[inside] = j
        keep = np.flatnonzero(row_of >= 0)
        dropped += len(mids) - len(keep)
        if len(keep):
            parts.append((str(path), arrays, keep, [file_rows[j].label for j in row_of[keep]]))
    if not parts:
        raise DataError(f"{where}: no segments left ({failed} of {len(by_file)} files could not be decoded, "
                        f"{dropped} segments fell outside every row)")
    if failed or dropped:
        log.info("%s: %d files skipped, %d segments outside every row dropped", where, failed, dropped)
    names = tuple(labels) if labels is not None else tuple(sorted({lab for *_, labs in parts for lab in labs}))
    index = {name: i for i, name in enumerate(names)}
    return SegmentSet(
        frames=np.concatenate([a["frames"][k] for _, a, k, _ in parts]),
        audio=np.concatenate([a["audio"][k] for _, a, k, _ in parts]),
        texts=[str(t) for _, a, k, _ in parts for t in a["texts"][k]],
        present=np.concatenate([a["present"][k] for _, a, k, _ in parts]).astype(np.float32),
        labels=np.array([index[lab] for *_, labs in parts for lab in labs], dtype=np.int64),
        label_names=names,
        sources=[src for src, _, k, _ in parts for _ in k],
        starts=np.concatenate([a["starts"][k] for _, a, k, _ in parts]),
    )


def load_manifest(csv_path: str | os.PathLike, *, decode: DecodeConfig, segment: SegmentConfig,
                  cache_dir: str | os.PathLike | None = None, labels: Sequence[str] | None = None) -> SegmentSet:
    """Decode every file of a manifest; a segment takes the label of the row holding its midpoint.

    ``labels``: the training label order, for evaluation sets (an unknown label is a DataError).
    """
    rows = read_manifest(csv_path)
    return _load_rows(rows, where=str(csv_path), decode=decode, segment=segment, cache_dir=cache_dir, labels=labels)


def load_folder(root: str | os.PathLike, *, decode: DecodeConfig, segment: SegmentConfig,
                cache_dir: str | os.PathLike | None = None, labels: Sequence[str] | None = None) -> SegmentSet:
    """``ROOT/<label>/*.mp4`` (and .mkv, .mov, ...): every segment of a file gets its folder's label."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; expected one sub-folder of videos per label")
    rows = [ManifestRow(path=p, start=0.0, end=math.inf, label=p.parent.name, line=0)
            for p in sorted(root.glob("*/*")) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
    if not rows:
        raise DataError(f"{root}: no videos found in <label>/ sub-folders ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    return _load_rows(rows, where=str(root), decode=decode, segment=segment, cache_dir=cache_dir, labels=labels)


# ---- splits by source ------------------------------------------------------------------------------------


def _sources(ds: SegmentSet) -> tuple[list[str], dict[str, np.ndarray], dict[str, int]]:
    """Sources in order, their segment indices, and each one's most common label."""
    order = list(dict.fromkeys(ds.sources))
    members = {s: [] for s in order}
    for i, s in enumerate(ds.sources):
        members[s].append(i)
    idx = {s: np.array(m, dtype=np.int64) for s, m in members.items()}
    main = {s: int(np.bincount(ds.labels[m]).argmax()) for s, m in idx.items()}
    return order, idx, main


def _check_labels_span_sources(ds: SegmentSet, idx: dict[str, np.ndarray], what: str) -> None:
    for label, name in enumerate(ds.label_names):
        holders = [s for s, m in idx.items() if np.any(ds.labels[m] == label)]
        if len(holders) == 1:
            raise DataError(f"label {name!r} occurs in one video only ({holders[0]}); a video is never split, so "
                            f"this label cannot be both trained and {what}: add another video of it")


def split_by_source(ds: SegmentSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation segment indices; a file's segments are never split across the two sides.

    Sources are stratified by their most common label: about ``val_fraction`` of each label's sources go
    to validation, and every label stays on the training side.
    """
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction!r}")
    order, idx, main = _sources(ds)
    if len(order) < 2:
        raise DataError(f"a validation split needs at least 2 source files, got {len(order)}")
    _check_labels_span_sources(ds, idx, "validated")
    rng = np.random.default_rng(seed)
    groups = [rng.permutation([s for s in order if main[s] == label]).tolist() for label in range(len(ds.label_names))]
    # round(val_fraction * sources) in all, shared among the label groups by largest remainder, and
    # never a group's last source
    want = np.array([val_fraction * len(g) for g in groups])
    take = np.floor(want).astype(int)
    for g in np.argsort(-(want - take), kind="stable")[: max(0, max(1, round(val_fraction * len(order))) - take.sum())]:
        take[g] += 1
    val = {s for g, n in zip(groups, take, strict=True) for s in g[: min(n, len(g) - 1)]}
    held = {s: set(np.unique(ds.labels[m]).tolist()) for s, m in idx.items()}
    for label in np.unique(ds.labels).tolist():  # a label that only validation sources hold moves one back
        if label not in set().union(*(held[s] for s in order if s not in val)):
            val.discard(next(s for s in sorted(val) if label in held[s]))
    if not val:  # few sources: validate on one whose labels all stay on the training side
        spare = [s for s in order if all(any(lab in held[t] for t in order if t != s) for lab in held[s])]
        if not spare:
            raise DataError("no source file can be held out without taking a label away from training")
        val.add(spare[int(rng.integers(len(spare)))])
    train_idx = np.sort(np.concatenate([idx[s] for s in order if s not in val]))
    val_idx = np.sort(np.concatenate([idx[s] for s in order if s in val]))
    return train_idx, val_idx


def kfold_by_source(ds: SegmentSet, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, validation) index pairs; every source is validation in exactly one fold.

    Sources are dealt to folds label by label (by their most common label), so folds stay stratified.
    """
    order, idx, main = _sources(ds)
    if not 2 <= k <= len(order):
        raise ConfigError(f"k must be between 2 and the number of source files ({len(order)}), got {k!r}")
    _check_labels_span_sources(ds, idx, "cross-validated")
    rng = np.random.default_rng(seed)
    every = set(np.unique(ds.labels).tolist())
    for _ in range(100):  # deal again while a fold would take every video of a (minority) label from training
        dealt = [s for label in range(len(ds.label_names))
                 for s in rng.permutation([s for s in order if main[s] == label]).tolist()]
        out = []
        for fold in (dealt[i::k] for i in range(k)):
            held = set(fold)
            out.append((np.sort(np.concatenate([idx[s] for s in order if s not in held])),
                        np.sort(np.concatenate([idx[s] for s in fold]))))
        missing = [(i, every - set(ds.labels[train].tolist())) for i, (train, _) in enumerate(out, start=1)]
        missing = [(i, labels) for i, labels in missing if labels]
        if not missing:
            return out
    for i, labels in missing:
        log.warning("fold %d of %d never trains on %s: only its validation videos hold them; add videos of "
                    "these labels or use fewer folds", i, k, sorted(ds.label_names[lab] for lab in labels))
    return out
