"""The synthetic data set: real H.264/AAC/subtitle files whose class needs all three modalities."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pysubs2
import pytest

from avfuse.models.synth import (
    LEVELS,
    PAIR_LABELS,
    WORDS,
    XOR_LABELS,
    best_single_factor_accuracy,
    label_of,
    synthesize,
)
from avfuse.stream.cli.main import main
from avfuse.stream.errors import ConfigError

FACTORS = ("shape", "tone", "mood")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    # 6 videos x 4 windows = 24 windows: six full decks of the pair rule (the 4 valid combinations each).
    return synthesize(tmp_path_factory.mktemp("synth"), videos=6, test_videos=3, seed=7)


def _rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def _best_accuracy(windows, factors: tuple[str, ...]) -> float:
    """Accuracy of the best predictor of the label that sees only ``factors``."""
    table = Counter((tuple(getattr(w, f) for f in factors), w.label) for w in windows)
    best: dict[tuple, int] = {}
    for (key, _), n in table.items():
        best[key] = max(best.get(key, 0), n)
    return sum(best.values()) / len(windows)


def test_manifest_lists_every_window_with_relative_paths(synth):
    rows = _rows(synth.manifest)
    assert list(rows[0]) == ["path", "start", "end", "label"]
    assert len(rows) == 6 * 4
    for row in rows:
        assert (synth.manifest.parent / row["path"]).is_file()
        assert row["label"] in PAIR_LABELS
        assert float(row["end"]) - float(row["start"]) == 2.0
    by_file = Counter(row["path"] for row in rows)
    assert set(by_file.values()) == {4}
    test_rows = _rows(synth.test_manifest)
    assert len(test_rows) == 3 * 4
    assert all((synth.test_manifest.parent / r["path"]).is_file() for r in test_rows)
    info = json.loads((synth.out_dir / "info.json").read_text())
    assert info["classes"] == list(PAIR_LABELS) and "shape XOR tone" in info["rule"]
    assert info["best_accuracy_from_one_factor"] == {"shape": 0.5, "tone": 0.5, "mood": 0.5}
    assert "no window lacks both" in info["missing"]


def test_under_the_pair_rule_one_modality_never_suffices_and_any_two_always_do(synth):
    windows = synth.train + synth.test
    assert Counter(w.label for w in synth.train) == dict.fromkeys(PAIR_LABELS, 6)  # balanced classes
    for factor in FACTORS:
        for value in ({"circle", "square"}, {"low", "high"}, {"calm", "alert"})[FACTORS.index(factor)]:
            given = Counter(w.label for w in synth.train if getattr(w, factor) == value)
            assert len(given) == 2 and len(set(given.values())) == 1  # two classes left open, equally often
        assert _best_accuracy(synth.train, (factor,)) == best_single_factor_accuracy(synth.train, factor) == 0.5
    for pair in itertools.combinations(FACTORS, 2):
        assert _best_accuracy(windows, pair) == 1.0  # the third factor follows from the other two
    for w in windows:
        assert (w.mood == "alert") == ((w.shape == "square") != (w.tone == "high"))
        assert w.label == f"{w.shape}_{w.tone}"
    with pytest.raises(ConfigError, match="shape XOR tone"):
        label_of("circle", "low", "alert")


def test_no_window_lacks_both_audio_and_caption(synth):
    windows = synth.train + synth.test
    assert any(not w.has_audio for w in windows) and any(not w.caption for w in windows)
    assert all(w.caption for w in windows if not w.has_audio)


def test_no_single_modality_suffices_under_the_count_rule(tmp_path):
    # 3 videos x 4 windows: one full deck of the count rule (12 combinations).
    windows = synthesize(tmp_path, videos=3, test_videos=0, seed=7, width=32, height=32, rule="count").train
    assert Counter(w.label for w in windows) == dict.fromkeys(LEVELS, 3)  # balanced classes
    for factor in FACTORS:
        for value in {getattr(w, factor) for w in windows}:
            given = Counter(w.label for w in windows if getattr(w, factor) == value)
            assert len(given) == 3  # one factor leaves three classes open
        assert _best_accuracy(windows, (factor,)) == best_single_factor_accuracy(windows, factor) == 0.5
    for pair in itertools.combinations(FACTORS, 2):
        assert _best_accuracy(windows, pair) == pytest.approx(2 / 3)
    assert _best_accuracy(windows, FACTORS) == 1.0
    for shape, tone, mood in itertools.product(("circle", "square"), ("low", "high"), ("calm", "alert")):
        labels = {w.label for w in windows if (w.shape, w.tone, w.mood) == (shape, tone, mood)}
        assert labels == {label_of(shape, tone, mood, "count")}
        # each factor moves the level on its own: a learning signal for each encoder from the start
        assert (LEVELS.index(label_of("square", tone, mood, "count"))
                == LEVELS.index(label_of("circle", tone, mood, "count")) + 1)


def test_under_the_xor_rule_no_pair_suffices_either(tmp_path):
    info = synthesize(tmp_path, videos=4, test_videos=0, seed=2, width=32, height=32, rule="xor")
    windows = info.train  # 16 windows: two full decks of the 8 combinations
    assert info.labels == XOR_LABELS and Counter(w.label for w in windows) == dict.fromkeys(XOR_LABELS, 4)
    assert [_best_accuracy(windows, (f,)) for f in FACTORS] == [0.25, 0.25, 0.5]
    assert [_best_accuracy(windows, pair) for pair in itertools.combinations(FACTORS, 2)] == [0.5, 0.5, 0.5]
    assert _best_accuracy(windows, FACTORS) == 1.0
    assert {r["label"] for r in _rows(info.manifest)} == set(XOR_LABELS)


def test_videos_decode_with_the_planned_audio_and_captions(synth):
    files = {}
    for w in synth.train:
        files.setdefault(w.path, []).append(w)
    kinds = Counter()
    for name, windows in files.items():
        path = synth.out_dir / name
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert bool(c.streams.audio) == windows[0].has_audio
            if c.streams.audio:
                assert c.streams.audio[0].codec_context.name == "aac"
            frames = sum(1 for _ in c.decode(video=0))
        assert frames == 25 * 8
        captions = [w.caption for w in windows if w.caption]
        if path.suffix == ".mkv":
            assert not path.with_suffix(".srt").exists()
            with av.open(str(path)) as c:
                cues = [(float(p.pts * p.time_base), bytes(s.dialogue).decode())
                        for p in c.demux(c.streams.subtitles[0]) for s in p.decode()]
            starts, texts = [t for t, _ in cues], [text for _, text in cues]
        else:
            subs = pysubs2.load(str(path.with_suffix(".srt")))
            texts = [e.text for e in subs]
            starts = [e.start / 1000 for e in subs]
        assert texts == captions
        for start, w in zip(starts, [w for w in windows if w.caption], strict=True):
            assert w.start <= start < w.end  # each caption lies inside its window
        kinds[(path.suffix, windows[0].has_audio)] += 1
    assert kinds[(".mkv", True)] + kinds[(".mkv", False)] == 2  # a quarter of the files embed captions
    assert kinds[(".mp4", False)] + kinds[(".mkv", False)] == 1  # some files have no audio track
    assert any(not w.caption for w in synth.train)


def test_each_caption_holds_exactly_one_word_of_its_group(synth):
    group_of = {word: mood for mood, words in WORDS.items() for word in words}
    captions = [w for w in synth.train + synth.test if w.caption]
    assert captions and any(len(w.caption.split()) == 2 for w in captions)  # some with a distractor word
    for w in captions:
        moods = [group_of[word] for word in w.caption.split() if word in group_of]
        assert moods == [w.mood]


def test_held_out_videos_are_rendered_from_other_seeds(synth):
    def first_frame(path: Path) -> np.ndarray:
        with av.open(str(path)) as c:
            return next(c.decode(video=0)).to_ndarray(format="rgb24")

    train = {first_frame(synth.out_dir / w.path).tobytes() for w in synth.train[::4]}
    test = {first_frame(synth.out_dir / "test" / w.path).tobytes() for w in synth.test[::4]}
    assert not train & test


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = synthesize(tmp_path / "a", videos=2, test_videos=0, seed=3, seconds=4.0, width=64, height=64)
    b = synthesize(tmp_path / "b", videos=2, test_videos=0, seed=3, seconds=4.0, width=64, height=64)
    c = synthesize(tmp_path / "c", videos=2, test_videos=0, seed=4, seconds=4.0, width=64, height=64)
    assert a.train == b.train and a.train != c.train
    assert a.test_manifest is None and not (tmp_path / "a" / "test").exists()
    for name in ("v000", "v001"):
        for ext in (".mp4", ".mkv"):
            if (tmp_path / "a" / f"{name}{ext}").exists():
                assert (tmp_path / "a" / f"{name}{ext}").read_bytes() == (tmp_path / "b" / f"{name}{ext}").read_bytes()


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="multiple of the 2 s window"):
        synthesize("/nonexistent", videos=1, test_videos=0, seconds=3.0)
    with pytest.raises(ConfigError, match="size"):
        synthesize("/nonexistent", videos=1, test_videos=0, width=20)
    with pytest.raises(ConfigError, match="videos"):
        synthesize("/nonexistent", videos=0, test_videos=0)


def test_cli_writes_a_data_set_without_torch_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "set"
    code = ("import sys; from avfuse.stream.cli.main import main; rc = main(sys.argv[1:]); "
            "sys.exit(rc if 'torch' not in sys.modules else 99)")
    args = [sys.executable, "-c", code, "synth", str(out), "--videos", "2", "--test-videos", "1", "--seconds", "2",
            "--size", "64x48"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "wrote 2 training windows" in done.stdout and "circle_low" in done.stdout
    with av.open(str(out / "test" / _rows(out / "test" / "manifest.csv")[0]["path"])) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (64, 48)
    assert main(["synth", str(out), "--videos", "2"]) == 1  # already holds a data set
    assert main(["synth", str(tmp_path / "x"), "--videos", "1", "--seconds", "3"]) == 1
