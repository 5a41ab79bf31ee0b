"""Training data: manifests and folders decoded by the runtime's segmenter, the segment cache, splits."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avfuse.models import data
from avfuse.models.data import SegmentSet, kfold_by_source, load_folder, load_manifest, read_manifest, split_by_source
from avfuse.models.synth import WORDS, synthesize
from avfuse.stream.errors import ConfigError, DataError
from avfuse.stream.media import segmenter
from avfuse.stream.media.config import DecodeConfig, SegmentConfig

DECODE = DecodeConfig(fps=4, height=48, width=48)
SEGMENT = SegmentConfig(window_s=2.0)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    # 6 videos x 2 windows: three full decks of the pair rule, 3 windows per class.
    return synthesize(tmp_path_factory.mktemp("data"), videos=6, test_videos=2, seed=11, seconds=4.0,
                      width=64, height=64)


@pytest.fixture(scope="module")
def loaded(synth, tmp_path_factory):
    return load_manifest(synth.manifest, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture
def decodes(monkeypatch):
    """Counts the files the segmenter really decodes."""
    calls: list[str] = []
    real = segmenter.iter_segments

    def counting(source, **kwargs):
        calls.append(Path(source).name)
        return real(source, **kwargs)

    monkeypatch.setattr(segmenter, "iter_segments", counting)
    return calls


@pytest.fixture(scope="module")
def mp4s(synth) -> list[str]:
    """The training files that are MP4 (with sidecar captions when captioned), by name."""
    return sorted(p.name for p in synth.out_dir.glob("v*.mp4"))


def _write(path: Path, text: str, names: list[str] | tuple[str, ...] = ()) -> Path:
    """Write a CSV; {0}, {1}, ... in ``text`` stand for ``names``."""
    path.write_text(text.format(*names))
    return path


# ---- manifests ------------------------------------------------------------------------------------------


def test_read_manifest_resolves_paths_and_whole_file_rows(synth, mp4s, tmp_path):
    sub = tmp_path / "lists"
    sub.mkdir()
    rel = Path("..") / synth.out_dir.name
    shutil.copytree(synth.out_dir, tmp_path / synth.out_dir.name)
    rows = read_manifest(_write(sub / "m.csv", f"path,start,end,label\n{rel}/{mp4s[0]},,,a\n{rel}/{mp4s[1]},2,4,b\n"))
    assert [r.path.resolve() for r in rows] == [(tmp_path / synth.out_dir.name / n).resolve() for n in mp4s[:2]]
    assert (rows[0].start, rows[0].end, rows[0].label) == (0.0, float("inf"), "a")
    assert (rows[1].start, rows[1].end, rows[1].line) == (2.0, 4.0, 3)


def test_missing_files_are_reported_with_their_line_and_skipped(synth, mp4s, caplog):
    csv_path = _write(synth.out_dir / "with_missing.csv", "path,start,end,label\n{0},0,2,a\ngone.mp4,0,2,b\n", mp4s)
    with caplog.at_level(logging.WARNING):
        rows = read_manifest(csv_path)
    assert [r.label for r in rows] == ["a"]
    assert "with_missing.csv:3" in caplog.text and "gone.mp4" in caplog.text
    with pytest.raises(DataError, match="all 1 rows name missing files"):
        read_manifest(_write(synth.out_dir / "all_missing.csv", "path,start,end,label\ngone.mp4,,,a\n"))


@pytest.mark.parametrize(("text", "message"), [
    ("", "manifest is empty"),
    ("path,start,end,label\n", "no rows"),
    ("file,from,to,class\n{0},0,2,a\n", r":1: header must start with path,start,end,label"),
    ("path,start,end,label\n{0},zero,2,a\n", r":2: start must be seconds"),
    ("path,start,end,label\n{0},0,2,a\n{0},4,3,a\n", r":3: end \(3\) must be after start \(4\)"),
    ("path,start,end,label\n{0},0,2\n", r":2: expected 4 fields"),
    ("path,start,end,label\n{0},0,2,\n", r":2: path and label must not be empty"),
    ("path,start,end,label\n{0},0,3,a\n{0},2,4,b\n", r":3: .* overlaps line 2 with another label"),
])
def test_bad_manifests_are_one_clear_error(synth, mp4s, text, message):
    with pytest.raises(DataError, match=message):
        read_manifest(_write(synth.out_dir / "bad.csv", text, mp4s))


def test_a_missing_manifest_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"no.csv: cannot read the manifest"):
        read_manifest(tmp_path / "no.csv")


# ---- loading --------------------------------------------------------------------------------------------


def test_synth_set_decodes_to_one_labelled_segment_per_window(synth, loaded):
    truth = {(str(synth.out_dir / w.path), w.start): w for w in synth.train}
    assert len(loaded) == len(truth) == 12
    assert loaded.frames.shape == (12, 8, 48, 48, 3) and loaded.frames.dtype == np.uint8
    assert loaded.audio.shape == (12, 32000) and loaded.audio.dtype == np.float32
    assert loaded.label_names == ("circle_high", "circle_low", "square_high", "square_low")  # sorted
    assert loaded.counts() == dict.fromkeys(loaded.label_names, 3)
    for i in range(len(loaded)):
        w = truth[(loaded.sources[i], float(loaded.starts[i]))]
        assert loaded.label_names[loaded.labels[i]] == w.label
        assert loaded.texts[i] == w.caption  # sidecar .srt and embedded mkv subtitles alike
        assert loaded.present[i].tolist() == [1.0, float(w.has_audio), float(bool(w.caption))]
        if not w.has_audio:
            assert not loaded.audio[i].any()
    assert any(s.endswith(".mkv") for s in loaded.sources)


def _largest_blob(mask: np.ndarray) -> np.ndarray:
    """The 4-connected component of ``mask`` with the most pixels."""
    best, left = np.zeros_like(mask), mask.copy()
    while left.any():
        blob = np.zeros_like(mask)
        blob[tuple(np.argwhere(left)[0])] = True
        while True:
            grown = blob.copy()
            grown[1:] |= blob[:-1]
            grown[:-1] |= blob[1:]
            grown[:, 1:] |= blob[:, :-1]
            grown[:, :-1] |= blob[:, 1:]
            grown &= mask
            if (grown == blob).all():
                break
            blob = grown
        left &= ~blob
        best = blob if blob.sum() > best.sum() else best
    return best


def test_each_factor_survives_encoding_and_decoding(synth, loaded):
    """What a small model has to learn is still there after H.264/AAC and scaling to 48x48: the shape's
    fill of its bounding box (circle ~0.79, square ~1), the tone's pitch, the caption's word group."""
    truth = {(str(synth.out_dir / w.path), w.start): w for w in synth.train}
    group_of = {word: mood for mood, words in WORDS.items() for word in words}
    for i in range(len(loaded)):
        w = truth[(loaded.sources[i], float(loaded.starts[i]))]
        blob = _largest_blob(loaded.frames[i, 4].min(axis=-1) > 122)  # bright in every channel; specks aside
        ys, xs = np.nonzero(blob)
        fill = blob.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
        assert ("square" if fill > 0.87 else "circle") == w.shape, fill
        if w.has_audio:
            peak_hz = np.abs(np.fft.rfft(loaded.audio[i])).argmax() * DECODE.sample_rate / loaded.audio.shape[1]
            assert ("high" if peak_hz > 1000 else "low") == w.tone, peak_hz
        if w.caption:
            assert {group_of[word] for word in loaded.texts[i].split() if word in group_of} == {w.mood}


def test_segments_take_the_label_of_the_row_holding_their_midpoint(synth, mp4s, tmp_path):
    csv_path = _write(synth.out_dir / "partial.csv",
                      "path,start,end,label\n{0},1.5,4,late\n{2},,,whole\n{3},0,0.9,early\n", mp4s)
    ds = load_manifest(csv_path, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path)
    got = [(Path(s).name, float(t), ds.label_names[lab]) for s, t, lab in zip(ds.sources, ds.starts, ds.labels,
                                                                               strict=True)]
    # The first file's [0,2) has midpoint 1 < 1.5: dropped; the fourth's row holds no midpoint: nothing.
    # A whole-file row labels every window the segmenter yields, a padded tail window included.
    whole = [s.start for s in segmenter.iter_segments(synth.out_dir / mp4s[2], decode=DECODE, segment=SEGMENT)]
    assert whole[:2] == [0.0, 2.0]
    assert got == [(mp4s[0], 2.0, "late")] + [(mp4s[2], t, "whole") for t in whole]


def test_undecodable_files_are_skipped_with_their_line_and_nothing_left_fails(synth, mp4s, tmp_path, caplog):
    (synth.out_dir / "junk.mp4").write_bytes(b"\x00not a video" * 100)
    csv_path = _write(synth.out_dir / "junk.csv", "path,start,end,label\n{0},,,a\njunk.mp4,,,b\n", mp4s)
    with caplog.at_level(logging.WARNING):
        ds = load_manifest(csv_path, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path)
    assert set(ds.sources) == {str(synth.out_dir / mp4s[0])} and ds.label_names == ("a",)
    assert "junk.csv:3" in caplog.text and "junk.mp4" in caplog.text
    with pytest.raises(DataError, match="no segments left"):
        load_manifest(_write(synth.out_dir / "junk_only.csv", "path,start,end,label\njunk.mp4,,,b\n"),
                      decode=DECODE, segment=SEGMENT, cache_dir=tmp_path)


def test_evaluation_sets_use_the_training_label_order(synth, loaded, tmp_path):
    order = ("circle_low", "circle_high", "square_low", "square_high")
    test = load_manifest(synth.test_manifest, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path, labels=order)
    assert test.label_names == order and len(test) == 4
    names = [order[i] for i in test.labels]
    assert names == [w.label for w in synth.test]
    unknown = names[0]
    with pytest.raises(DataError, match=rf"test/manifest.csv:2: label '{unknown}' is not one of the model's labels"):
        load_manifest(synth.test_manifest, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path,
                      labels=[n for n in order if n != unknown])


def test_load_folder_labels_each_file_by_its_folder(synth, mp4s, tmp_path):
    root = tmp_path / "classes"
    for label, names in {"cats": (mp4s[0], mp4s[2]), "dogs": (mp4s[3],)}.items():
        (root / label).mkdir(parents=True)
        for name in names:
            for path in (synth.out_dir / name, (synth.out_dir / name).with_suffix(".srt")):
                if path.exists():
                    shutil.copy(path, root / label)
    (root / "dogs" / "notes.txt").write_text("not a video")
    ds = load_folder(root, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path / "cache")
    assert ds.label_names == ("cats", "dogs")
    windows = {n: len(list(segmenter.iter_segments(synth.out_dir / n, decode=DECODE, segment=SEGMENT)))
               for n in mp4s[:4]}
    assert ds.counts() == {"cats": windows[mp4s[0]] + windows[mp4s[2]], "dogs": windows[mp4s[3]]}
    assert {Path(s).parent.name for s, lab in zip(ds.sources, ds.labels, strict=True) if lab == 1} == {"dogs"}
    with pytest.raises(DataError, match="no videos found"):
        load_folder(tmp_path / "cache", decode=DECODE, segment=SEGMENT, cache_dir=tmp_path)


# ---- the cache ------------------------------------------------------------------------------------------


def test_second_load_decodes_nothing(synth, tmp_path, decodes):
    first = load_manifest(synth.manifest, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path)
    assert len(decodes) == 6
    assert len(list(tmp_path.glob("*.npz"))) == 6 and not list(tmp_path.glob("*.tmp"))
    decodes.clear()
    second = load_manifest(synth.manifest, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path)
    assert decodes == []
    for field in ("frames", "audio", "present", "labels", "starts"):
        assert np.array_equal(getattr(first, field), getattr(second, field))
    assert first.texts == second.texts and first.sources == second.sources
    # Another decode config is another key.
    load_manifest(synth.manifest, decode=DecodeConfig(fps=2, height=48, width=48), segment=SEGMENT, cache_dir=tmp_path)
    assert len(decodes) == 6


def test_edited_media_or_captions_are_decoded_again(synth, tmp_path, decodes):
    work = tmp_path / "set"
    shutil.copytree(synth.out_dir, work, ignore=shutil.ignore_patterns("test"))
    cache = tmp_path / "cache"
    load_manifest(work / "manifest.csv", decode=DECODE, segment=SEGMENT, cache_dir=cache)
    decodes.clear()
    srt = next(p for p in sorted(work.glob("v*.srt")))
    srt.write_text(srt.read_text().replace(" ", "  ", 1))  # same words, other bytes
    mkv = next(p for p in sorted(work.glob("v*.mkv")))
    content = mkv.read_bytes()
    mkv.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # same size and name, other bytes
    load_manifest(work / "manifest.csv", decode=DECODE, segment=SEGMENT, cache_dir=cache)
    assert sorted(decodes) == sorted([srt.with_suffix(".mp4").name, mkv.name])


def test_a_corrupt_cache_entry_is_decoded_again(synth, mp4s, tmp_path, decodes, caplog):
    csv_path = _write(synth.out_dir / "one.csv", "path,start,end,label\n{0},,,a\n", mp4s)
    first = load_manifest(csv_path, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again = load_manifest(csv_path, decode=DECODE, segment=SEGMENT, cache_dir=tmp_path)
    assert decodes == [mp4s[0], mp4s[0]] and "unreadable cache entry" in caplog.text
    assert np.array_equal(first.frames, again.frames)


def test_default_cache_dir_follows_avfuse_cache(synth, mp4s, tmp_path, monkeypatch):
    monkeypatch.setenv("AVFUSE_CACHE", str(tmp_path / "env-cache"))
    assert data.default_cache_dir() == tmp_path / "env-cache"
    load_manifest(_write(synth.out_dir / "one.csv", "path,start,end,label\n{0},,,a\n", mp4s),
                  decode=DECODE, segment=SEGMENT)
    assert len(list((tmp_path / "env-cache").glob("*.npz"))) == 1


# ---- splits ---------------------------------------------------------------------------------------------


def test_split_never_puts_a_source_on_both_sides(loaded):
    for seed in range(5):
        train, val = split_by_source(loaded, 0.25, seed)
        assert len(train) + len(val) == len(loaded) and not set(train) & set(val)
        train_sources = {loaded.sources[i] for i in train}
        val_sources = {loaded.sources[i] for i in val}
        assert val_sources and not train_sources & val_sources
        assert set(loaded.labels[train]) == set(loaded.labels)  # every label is trained
    assert all(np.array_equal(a, b) for a, b in zip(split_by_source(loaded, 0.25, 3),
                                                    split_by_source(loaded, 0.25, 3), strict=True))


def _toy(labels_per_source: dict[str, list[int]], names: tuple[str, ...]) -> SegmentSet:
    sources = [s for s, labs in labels_per_source.items() for _ in labs]
    labels = np.array([lab for labs in labels_per_source.values() for lab in labs], dtype=np.int64)
    n = len(labels)
    return SegmentSet(frames=np.zeros((n, 1, 8, 8, 3), np.uint8), audio=np.zeros((n, 16), np.float32),
                      texts=[""] * n, present=np.ones((n, 3), np.float32), labels=labels, label_names=names,
                      sources=sources, starts=np.zeros(n))


def test_split_is_stratified_by_label():
    ds = _toy({f"{c}{i}": [k] * 3 for k, c in enumerate("abcd") for i in range(10)}, ("a", "b", "c", "d"))
    train, val = split_by_source(ds, 0.2, seed=0)
    assert np.bincount(ds.labels[val]).tolist() == [6, 6, 6, 6]  # 2 of each label's 10 videos
    assert len(train) == 96
    ds = _toy({f"{c}{i}": [k] * 2 for k, c in enumerate("abcd") for i in range(6)}, ("a", "b", "c", "d"))
    train, val = split_by_source(ds, 0.25, seed=0)
    assert len(val) == 2 * 6 and sorted(np.bincount(ds.labels[val]).tolist()) == [2, 2, 4, 4]  # 6 of 24 videos


def test_a_label_with_a_single_video_cannot_be_split():
    ds = _toy({"a1": [0, 0], "a2": [0], "b1": [1, 1, 1]}, ("a", "b"))
    with pytest.raises(DataError, match=r"label 'b' occurs in one video only \(b1\).*both trained and validated"):
        split_by_source(ds, 0.5, seed=0)
    with pytest.raises(DataError, match="cross-validated"):
        kfold_by_source(ds, 2, seed=0)
    with pytest.raises(ConfigError, match="val_fraction"):
        split_by_source(ds, 1.0, seed=0)


def test_kfold_validates_every_source_exactly_once(loaded):
    folds = kfold_by_source(loaded, 4, seed=1)
    assert len(folds) == 4
    held_out = []
    for train, val in folds:
        assert len(train) + len(val) == len(loaded) and not set(train) & set(val)
        val_sources = {loaded.sources[i] for i in val}
        assert not val_sources & {loaded.sources[i] for i in train}
        held_out += sorted(val_sources)
    assert sorted(held_out) == sorted(set(loaded.sources))
    with pytest.raises(ConfigError, match="number of source files"):
        kfold_by_source(loaded, 7, seed=1)


def test_kfold_keeps_every_label_on_each_training_side():
    # label c is never a video's main label: dealing by main label alone left both c videos in one fold
    ds = _toy({"a1": [0, 0], "a2": [0, 0, 2], "b1": [1, 1], "b2": [1, 1, 2]}, ("a", "b", "c"))
    for seed in range(10):
        for train, _ in kfold_by_source(ds, 2, seed):
            assert set(ds.labels[train]) == {0, 1, 2}


# ---- torch ----------------------------------------------------------------------------------------------


def test_torch_dataset_gives_model_inputs(loaded):
    torch = pytest.importorskip("torch")
    from avfuse.models.torchdata import TorchSegments
    from avfuse.stream.infer.tokenize import Tokenizer

    tok = Tokenizer.build(loaded.texts, max_len=8)
    ds = TorchSegments(loaded, tok)
    frames, audio, tokens, present, label = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert frames.dtype == torch.uint8 and frames.shape == (5, 8, 48, 48, 3)
    assert audio.dtype == torch.float32 and audio.shape == (5, 32000)
    assert tokens.dtype == torch.int64 and tokens.shape == (5, 8)
    assert present.shape == (5, 3) and label.dtype == torch.int64
    for i in range(len(ds)):
        _, _, tokens, present, label = ds[i]
        assert bool(tokens.any()) == bool(present[2]) == bool(loaded.texts[i])
        assert int(label) == loaded.labels[i]


def test_manifest_rows_round_trip_through_csv(synth):
    with open(synth.manifest, newline="") as f:
        written = list(csv.DictReader(f))
    rows = read_manifest(synth.manifest)
    assert [(r.path.name, r.start, r.end, r.label) for r in rows] == [
        (w["path"], float(w["start"]), float(w["end"]), w["label"]) for w in written]


def test_data_module_imports_no_torch():
    code = "import sys, avfuse.models.data; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
