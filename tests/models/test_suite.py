"""The generalisation suite: sets unlike ``avfuse synth``'s, whose files decode as the set says and whose
factors really differ between classes, in the decoded pixels, samples and captions."""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from avfuse.models import suite
from avfuse.models.suite import SUITE, SuiteSet, generate
from avfuse.models.suite_render import PHOTO_GROUPS, photo
from avfuse.stream.errors import ConfigError
from avfuse.stream.infer import tokenize
from avfuse.stream.media.captions import embedded_captions, load_captions, sidecar_for

PHOTOS = SuiteSet(name="tiny-photos", width=176, height=144, fps=15, sample_rate=8000, channels=1, classes=9,
                  rule="pair", videos=4, test_videos=3, spans="quarters", missing_captions=0.5, imbalance=0.5,
                  visuals="photos", sounds="textures", container="mixed")
SHAPES = SuiteSet(name="tiny-shapes", width=176, height=144, fps=25, sample_rate=44100, channels=2, classes=12,
                  rule="factor", videos=4, test_videos=3, spans="quarters", missing_captions=0.1, imbalance=0.0,
                  visuals="shapes", sounds="tones", container="mkv")


@pytest.fixture(scope="module", params=[PHOTOS, SHAPES], ids=lambda s: s.name)
def made(request, tmp_path_factory):
    s = request.param
    return s, generate(s, tmp_path_factory.mktemp(s.name), seed=3)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _spans(data) -> list[dict]:
    return _rows(data.out_dir / "train_factors.csv") + _rows(data.out_dir / "test_factors.csv")


def _decode(path: Path) -> tuple[list, np.ndarray, int]:
    """(video frames, float audio [channels, n], sample rate) of a file."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        audio = np.concatenate([f.to_ndarray() for f in c.decode(stream)], axis=1)
        return frames, audio, stream.rate


def _span_of(row: dict, frames: list, audio: np.ndarray, rate: int) -> tuple[list[np.ndarray], np.ndarray]:
    start, end = float(row["start"]), float(row["end"])
    images = [f.to_ndarray(format="rgb24") for f in frames[::2] if start <= f.time < end]  # every other one
    return images, audio.mean(axis=0)[round(start * rate) : round(end * rate)]


def test_the_suite_covers_what_real_data_varies():
    assert len(SUITE) >= 6 and len({s.name for s in SUITE}) == len(SUITE)
    assert {(176, 144, 15), (320, 240, 25), (640, 360, 30)} <= {(s.width, s.height, s.fps) for s in SUITE}
    assert {8000, 16000, 44100, 48000} <= {s.sample_rate for s in SUITE}
    assert {s.channels for s in SUITE} == {1, 2} and {s.rule for s in SUITE} == {"pair", "factor"}
    assert "file" in {s.spans for s in SUITE} and len({s.spans for s in SUITE}) > 1
    assert min(s.classes for s in SUITE) == 4 and max(s.classes for s in SUITE) == 12
    assert any(s.imbalance > 0 for s in SUITE) and any(s.videos == 200 for s in SUITE)
    assert any(s.videos == 40 and s.seconds == 8 for s in SUITE)
    assert any(s.visuals == "photos" and s.sounds == "textures" for s in SUITE)
    assert any(0.2 <= s.missing_captions <= 0.5 for s in SUITE if s.rule == "pair")
    assert all(s.missing_captions <= 0.1 for s in SUITE if s.rule == "factor")


@pytest.mark.parametrize("change, word", [
    ({"classes": 5}, "5"), ({"rule": "factor", "classes": 4}, "4"), ({"channels": 6}, "6"),
    ({"rule": "factor", "classes": 8, "missing_captions": 0.3}, "0.3"), ({"test_videos": 2}, "2"),
    ({"spans": "sixths"}, "sixths"), ({"width": 175}, "175"), ({"imbalance": 1.0}, "1.0"),
])
def test_a_bad_set_is_refused_naming_the_value(change, word):
    fields = {**PHOTOS.__dict__, **change}
    with pytest.raises(ConfigError, match=word):
        SuiteSet(**fields)


def test_files_decode_at_the_sets_size_rate_and_channels(made):
    s, data = made
    files = sorted({r["path"] for r in _spans(data)})
    assert len(files) == s.videos + s.test_videos
    for name in files:
        path = data.out_dir / name
        with av.open(str(path)) as c:
            video, audio = c.streams.video[0], c.streams.audio[0]
            assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
            assert (video.width, video.height) == (s.width, s.height)
            assert float(video.average_rate) == pytest.approx(s.fps)
            assert (audio.rate, audio.channels) == (s.sample_rate, s.channels)
            embedded = bool(c.streams.subtitles)
        frames, samples, _ = _decode(path)
        assert len(frames) == round(s.seconds * s.fps)
        assert samples.shape[0] == s.channels and samples.shape[1] >= s.seconds * s.sample_rate
        assert path.suffix == ".mkv" or not embedded  # an .mkv embeds its captions, an .mp4 has a sidecar
        assert path.suffix == ".mp4" or sidecar_for(path) is None


def test_manifests_cover_each_file_with_the_sets_labels_and_every_class_in_train_and_test(made):
    s, data = made
    info = json.loads((data.out_dir / "info.json").read_text())
    assert info["labels"] == list(data.labels) and len(set(data.labels)) == s.classes
    assert info["rule"] == s.rule and info["rule_text"]
    per_file = suite.SPANS[s.spans]
    for manifest in (data.train_manifest, data.test_manifest):
        rows = _rows(manifest)
        assert list(rows[0]) == ["path", "start", "end", "label"]
        assert set(r["label"] for r in rows) == set(data.labels)  # every class, in train and in test alike
        for path, group in itertools.groupby(rows, key=lambda r: r["path"]):
            group = list(group)
            assert (manifest.parent / path).is_file() and len(group) == per_file
            assert float(group[0]["start"]) == 0 and float(group[-1]["end"]) == s.seconds
            assert all(a["end"] == b["start"] and a["label"] != b["label"] for a, b in itertools.pairwise(group))


@pytest.mark.parametrize("s", SUITE, ids=lambda s: s.name)
def test_each_suite_set_plans_every_class_in_train_and_test_at_its_imbalance(s):
    train, test = suite.plan(s)
    for spans, videos in ((train, s.videos), (test, s.test_videos)):
        assert len({sp.path for sp in spans}) == videos and len(spans) == videos * suite.SPANS[s.spans]
        counts = Counter(sp.label for sp in spans)
        assert set(counts) == set(s.labels)
        if s.imbalance == 0:
            assert max(counts.values()) - min(counts.values()) <= 1
        elif spans is train:
            assert min(counts.values()) / max(counts.values()) == pytest.approx(1 - s.imbalance, abs=0.15)
        missing = sum(not sp.caption for sp in spans) / len(spans)
        assert abs(missing - s.missing_captions) * len(spans) <= 0.5  # the nearest whole number of spans
        for a, b in itertools.pairwise(spans):
            assert a.path != b.path or a.label != b.label


def test_the_rule_holds_in_the_ground_truth(made):
    s, data = made
    spans = _spans(data)
    for pair in itertools.combinations(("video", "audio", "text"), 2):
        fixed = len({tuple(r[f] for f in pair) for r in spans}) == len({(tuple(r[f] for f in pair), r["label"])
                                                                        for r in spans})
        assert fixed == (s.rule == "pair")  # under the factor rule no two factors fix the label


def test_captions_are_missing_at_the_sets_rate_and_hold_their_groups_words(made):
    s, data = made
    spans, missing = _spans(data), 0
    for row in spans:
        path = data.out_dir / row["path"]
        with av.open(str(path)) as c:
            captions = embedded_captions(c)
        if captions is None:
            sidecar = sidecar_for(path)
            captions = load_captions(sidecar) if sidecar else None
        text = captions.text_between(float(row["start"]), float(row["end"])) if captions else ""
        missing += not text
        if text:
            words = set(tokenize.words(text))
            assert words & set(suite.WORDS[row["text"]])
            assert not words & {w for g, ws in suite.WORDS.items() if g != row["text"] for w in ws}
    assert missing / len(spans) == pytest.approx(s.missing_captions, abs=0.05)


@pytest.mark.parametrize("s", SUITE, ids=lambda s: s.name)
def test_held_out_captions_are_new_combinations_of_training_words(s):
    train, test = ([tuple(tokenize.words(sp.caption)) for sp in part if sp.caption] for part in suite.plan(s))
    train = set(train)
    seen = {w for caption in train for w in caption}
    assert sum(caption in train for caption in test) <= 0.05 * len(test)
    assert sum(set(caption) <= seen for caption in test) >= 0.9 * len(test)


def _colour_histogram(img: np.ndarray) -> np.ndarray:
    q = img.astype(np.int64) // 32
    counts = np.bincount(((q[..., 0] * 8 + q[..., 1]) * 8 + q[..., 2]).ravel(), minlength=512)
    return counts / counts.sum()


def _orientation(img: np.ndarray) -> tuple[float, float]:
    """How much the gradients point one way (stripes) and along two perpendicular axes (checks)."""
    gy, gx = np.gradient(img.astype(np.float64).mean(axis=-1))
    m, theta = np.hypot(gx, gy), np.arctan2(gy, gx)
    return abs((m * np.exp(2j * theta)).sum()) / m.sum(), abs((m * np.exp(4j * theta)).sum()) / m.sum()


def test_the_factors_differ_between_classes_in_the_decoded_media(made):
    s, data = made
    photos = {g: [_colour_histogram(photo(p)) for p in ps] for g, ps in PHOTO_GROUPS.items()}
    hits, seen, video, audio, decoded = 0, 0, {}, {}, {}
    for row in _spans(data):
        if row["path"] not in decoded:
            decoded[row["path"]] = _decode(data.out_dir / row["path"])
        images, wave = _span_of(row, *decoded[row["path"]])
        spectrum = np.abs(np.fft.rfft(wave)) ** 2
        hz = np.fft.rfftfreq(wave.size, 1 / s.sample_rate)
        centroid = float((spectrum * hz).sum() / spectrum.sum())
        peak = float(hz[np.argmax(np.where(hz >= 50, spectrum, 0))])
        kurtosis = float(np.mean(wave**4) / np.mean(wave**2) ** 2)
        audio.setdefault(row["audio"], []).append((centroid, peak, kurtosis))
        if s.visuals == "photos":  # each frame's colours are nearest those of a photo of its own group
            for img in images:
                h = _colour_histogram(img)
                hits += max(photos, key=lambda g: max(np.minimum(h, p).sum() for p in photos[g])) == row["video"]
                seen += 1
        else:
            video.setdefault(row["video"], []).extend(_orientation(img) for img in images)
    if s.visuals == "photos":
        assert hits / seen > 0.85
    else:
        one_way, two_axes = ({k: np.mean([o[i] for o in v]) for k, v in video.items()} for i in (0, 1))
        assert one_way["stripes"] > 3 * max(one_way["dots"], one_way["checks"])
        assert two_axes["checks"] > 3 * two_axes["dots"]
    centroids, peaks = ({k: [a[i] for a in v] for k, v in audio.items()} for i in (0, 1))
    if s.sounds == "textures":
        assert max(centroids["rumble"]) < 600 < 1800 < min(centroids["hiss"])
        assert min(a[2] for a in audio["clicks"]) > 4 * max(a[2] for v in ("rumble", "hiss") for a in audio[v])
    else:  # the loudest frequency of each span is in its band
        assert 150 <= min(peaks["low"]) <= max(peaks["low"]) <= 300 < 600 <= min(peaks["mid"]) <= max(peaks["mid"])


def test_the_command_writes_a_named_set(tmp_path, monkeypatch, capsys):
    tiny = SuiteSet(**{**PHOTOS.__dict__, "name": "tiny", "videos": 3, "test_videos": 3, "seconds": 4.0})
    monkeypatch.setattr(suite, "SUITE", (tiny,))
    assert suite.main([str(tmp_path), "--set", "tiny", "--seed", "5"]) == 0
    assert "tiny: 9 classes" in capsys.readouterr().out
    info = json.loads((tmp_path / "tiny" / "info.json").read_text())
    assert info["seed"] == 5 and info["name"] == "tiny"
    assert len({r["path"] for r in _rows(tmp_path / "tiny" / "test.csv")}) == 3
