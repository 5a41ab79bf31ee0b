"""Hostile model metadata: every avfuse.* value is checked (type, range, agreement with the graph) when the
model is loaded, and ``inspect`` and ``run`` each give one error line naming the key and the bad value."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main
from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata

GOOD = decode_metadata(DecodeConfig(fps=2.0, height=32, width=32, sample_rate=8000), SegmentConfig(window_s=1.0))
HUGE = decode_metadata(DecodeConfig(fps=120, height=4096, width=4096), SegmentConfig(window_s=600))


def _decode(**changes) -> dict[str, str]:
    return {"avfuse.decode": json.dumps(GOOD | changes)}


# metadata_props that replace the colour model's own -> what the one error line must say
CASES = {
    "frames as a string": (_decode(frames="2"), "avfuse.decode frames must be an integer, got '2'"),
    "height as a string": (_decode(height="32"), "avfuse.decode height must be an integer, got '32'"),
    "fps as a bool": (_decode(fps=True), "avfuse.decode fps must be a number, got True"),
    "negative frames": (_decode(frames=-5), "avfuse.decode frames must be round(fps x window_s) = 2, got -5"),
    "1e9 frames": (_decode(frames=1e9), "avfuse.decode frames must be an integer, got 1000000000.0"),
    "a billion frames": (_decode(frames=10**9), "frames must be round(fps x window_s) = 2, got 1000000000"),
    "an astronomic fps": (_decode(fps=10**400), "avfuse.decode fps must be a number, got 1000000"),
    "negative fps": (_decode(fps=-5), "avfuse.decode fps must be in (0, 120], got -5"),
    "huge height": (_decode(height=10**9), "avfuse.decode frame size must be 8..4096 on each side, got 32x1000000000"),
    "huge window": (_decode(window_s=1e9), "avfuse.decode window_s must be 0.1..600 seconds, got 1000000000.0"),
    "wrong samples": (_decode(samples=-1), "avfuse.decode samples must be sample_rate x window_s = 8000, got -1"),
    "every size at its limit": ({"avfuse.decode": json.dumps(HUGE)},
                                "avfuse.decode asks for 3456037 MiB per segment (72000 frames of 4096x4096, "
                                "9600000 samples); at most 1024 MiB"),
    "decode as a list": ({"avfuse.decode": "[2, 32]"}, "avfuse.decode must be a JSON object, got [2, 32]"),
    "decode without frames": ({"avfuse.decode": json.dumps({k: v for k, v in GOOD.items() if k != "frames"})},
                              "avfuse.decode lacks frames"),
    "fewer labels than probs": ({"avfuse.labels": '["red", "green"]'},
                                "probs has shape ['B', 3], but avfuse.labels gives [batch, 2]"),
    "more labels than probs": ({"avfuse.labels": '["red", "green", "blue", "grey"]'},
                               "probs has shape ['B', 3], but avfuse.labels gives [batch, 4]"),
    "labels as a string": ({"avfuse.labels": '"red"'}, "avfuse.labels must be a non-empty JSON list of distinct"),
    "numeric labels": ({"avfuse.labels": "[1, 2, 3]"}, "avfuse.labels must be a non-empty JSON list of distinct, "
                                                       "non-empty strings, got [1, 2, 3]"),
    "repeated labels": ({"avfuse.labels": '["red", "red", "blue"]'}, "got ['red', 'red', 'blue']"),
    "max_len as a string": ({"avfuse.tokenizer": json.dumps({"type": "words", "max_len": "8",
                                                             "vocab": ["<pad>", "<unk>"]})},
                            "avfuse.tokenizer: tokenizer max_len must be an integer 1..4096, got '8'"),
    "huge max_len": ({"avfuse.tokenizer": json.dumps({"type": "words", "max_len": 10**9,
                                                      "vocab": ["<pad>", "<unk>"]})},
                     "tokenizer max_len must be an integer 1..4096, got 1000000000"),
    "model as a list": ({"avfuse.model": "[]"}, "avfuse.model must be a JSON object, got []"),
    "encoders as a string": ({"avfuse.model": '{"encoders": "mean-colour"}'},
                             "avfuse.model encoders must be a JSON object of modality: encoder description "
                             "(strings), got 'mean-colour'"),
    "modalities as a string": ({"avfuse.model": '{"modalities": "video"}'},
                               "avfuse.model modalities must be a JSON list of ['video', 'audio', 'text'], "
                               "got 'video'"),
    "num_classes disagrees": ({"avfuse.model": '{"num_classes": 5}'},
                              "avfuse.model num_classes must be the number of avfuse.labels (3), got 5"),
    "metrics as a list": ({"avfuse.metrics": "[0.9]"}, "avfuse.metrics must be a JSON object, got [0.9]"),
    "version as a number": ({"avfuse.version": "3"}, "avfuse.version must be a string, got 3"),
    "coverage as a string": (_decode(min_coverage="all"), "avfuse.decode min_coverage must be a number, got 'all'"),
    "deeply nested JSON": ({"avfuse.metrics": "[" * 100000 + "]" * 100000},
                           "metadata avfuse.metrics is not valid JSON"),
    "an int of 5000 digits": ({"avfuse.metrics": "1" * 5000}, "metadata avfuse.metrics is not valid JSON"),
}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return colour_video(tmp_path_factory.mktemp("media") / "rgb.mp4", ["red", "green"], audio=False)


def _one_error_line(err: str, path, message: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and message in lines[0]
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_inspect_and_run_give_one_error_line(tmp_path, capsys, video, case):
    metadata, message = CASES[case]
    path = colour_model(tmp_path / "hostile.onnx", metadata=metadata)
    assert main(["inspect", str(path)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    line = _one_error_line(out.err, path, message)
    assert line.startswith("avfuse inspect: error: ")
    assert main(["run", str(path), str(video), "-o", str(tmp_path / "out"), "--no-cache"]) == 1
    _one_error_line(capsys.readouterr().err, path, message)
    assert not (tmp_path / "out" / "rgb.mp4.jsonl").exists()


def test_the_good_model_passes_every_check(tmp_path, capsys, video):
    path = colour_model(tmp_path / "good.onnx")
    assert main(["inspect", str(path)]) == 0
    assert "video encoder: mean-colour" in capsys.readouterr().out
    assert main(["run", str(path), str(video), "-o", str(tmp_path / "out"), "--no-cache"]) == 0
    records = [json.loads(r) for r in (tmp_path / "out" / "rgb.mp4.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records if r["type"] == "segment"] == ["red", "green"]


def test_fewer_labels_than_a_dynamic_probs_dimension_fails_at_load(tmp_path, capsys, video):
    """Without a static probs dimension the mismatch shows at warm-up, still before any segment."""
    path = colour_model(tmp_path / "dynamic.onnx", metadata={"avfuse.labels": '["red", "green"]'},
                        dynamic_probs=True)
    message = "probs has shape [1, 3], but avfuse.labels gives [batch, 2]"
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Engine(path, EngineConfig(cache_dir=None))
    assert main(["run", str(path), str(video), "-o", str(tmp_path / "out"), "--no-cache"]) == 1
    _one_error_line(capsys.readouterr().err, path, message)


@pytest.mark.parametrize("case", ["1e9 frames", "encoders as a string"])
def test_the_avfuse_command_exits_non_zero_with_one_line(tmp_path, video, case):
    metadata, message = CASES[case]
    path = colour_model(tmp_path / "hostile.onnx", metadata=metadata)
    for argv in (["inspect", str(path)], ["run", str(path), str(video), "-o", str(tmp_path / "out"), "--no-cache"]):
        r = subprocess.run([sys.executable, "-m", "avfuse", *argv], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and r.stdout == ""
        assert "Traceback" not in r.stderr
        _one_error_line(r.stderr, path, message)
