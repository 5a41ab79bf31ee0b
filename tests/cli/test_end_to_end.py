"""The whole loop a user runs: synth -> train -> export -> ``avfuse run`` on a folder of generated
videos. The ONNX file alone, in onnxruntime, must give every segment the label PyTorch gives it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avfuse.models.checkpoint import load_checkpoint
from avfuse.stream.cli.main import main
from avfuse.stream.media.config import configs_from_metadata
from avfuse.stream.media.segmenter import iter_segments

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    data, run, model = root / "data", root / "run", root / "model.onnx"
    assert main(["synth", str(data), "--videos", "8", "--test-videos", "3", "--seconds", "4",
                 "--size", "64x64", "--seed", "3"]) == 0
    assert main(["train", "--manifest", str(data / "manifest.csv"), "-o", str(run), "--epochs", "3",
                 "--size", "32x32", "--threads", "1", "--seed", "0"]) == 0
    assert main(["export", str(run / "model.pt"), "-o", str(model), "--no-portability"]) == 0
    return run / "model.pt", model, data / "test"


def pytorch_labels(checkpoint: Path, folder: Path) -> dict[tuple[str, int], str]:
    net, ckpt = load_checkpoint(checkpoint)
    net.eval()
    decode, segment = configs_from_metadata(ckpt.decode)
    labels = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".mp4", ".mkv")):
        segs = list(iter_segments(path, decode=decode, segment=segment))
        with torch.no_grad():
            probs, _, _ = net(torch.from_numpy(np.stack([s.frames for s in segs])),
                              torch.from_numpy(np.stack([s.audio for s in segs])),
                              torch.from_numpy(ckpt.tokenizer.encode_batch([s.text for s in segs])),
                              torch.from_numpy(np.stack([s.present.as_array() for s in segs])))
        for s, k in zip(segs, probs.argmax(1).tolist(), strict=True):
            labels[(path.name, s.index)] = ckpt.config.labels[k]
    return labels


def test_exported_model_labels_a_folder_as_pytorch_does(trained, tmp_path):
    checkpoint, model, folder = trained
    out = tmp_path / "labels"
    assert main(["run", str(model), str(folder), "-o", str(out), "--device", "cpu"]) == 0
    records = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines()]
    got = {(Path(r["source"]).name, r["index"]): r["label"] for r in records if r["type"] == "segment"}
    expected = pytorch_labels(checkpoint, folder)
    assert len(expected) >= 6 and len({Path(k[0]) for k in expected}) == 3
    assert got == expected
