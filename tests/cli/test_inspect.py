"""avfuse inspect: inputs, outputs, labels, decode config, opset, size and usable providers, with neither
torch nor the onnx package needed at inspection time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from avfuse.export.onnx import export_model, model_info, save
from avfuse.models.net import ModelConfig, build_model
from avfuse.stream.cli.inspect_cmd import read_opsets
from avfuse.stream.cli.main import main
from avfuse.stream.infer.tokenize import Tokenizer
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata

DECODE = decode_metadata(DecodeConfig(fps=2, height=24, width=40), SegmentConfig(window_s=2.0, hop_s=1.0))
LABELS = ("dog", "cat", "bird", "fish")

BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'torchvision', 'torchaudio', 'onnx', 'onnxscript'}:
            raise ImportError('blocked for this test: ' + name)
        return None
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    tok = Tokenizer.build(["a dog barks", "a cat sleeps"], max_len=6)
    config = ModelConfig(labels=LABELS, frames=DECODE["frames"], height=24, width=40, sample_rate=16000,
                         samples=DECODE["samples"], vocab_size=len(tok), max_tokens=6, dim=16, n_mels=16,
                         fusion="concat", modalities=("video", "text"))
    torch.manual_seed(1)
    model = build_model(config).eval()
    info = model_info(model, decode=DECODE, tokenizer=tok, metrics={"accuracy": 0.875, "val": {"macro_f1": 0.5}})
    path = tmp_path_factory.mktemp("inspect") / "pets.onnx"
    save(export_model(model, info, path, opset=18), path)
    return path


def _inspect(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["inspect", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_shows_contract_labels_decode_opset_and_providers(model_file, capsys):
    code, out, _ = _inspect(capsys, str(model_file))
    assert code == 0
    assert "frames" in out and "tensor(uint8)" in out and f"[batch, {DECODE['frames']}, 24, 40, 3]" in out
    for name in ("audio", "tokens", "present", "probs", "gates", "embedding"):
        assert name in out
    assert "(4) dog, cat, bird, fish" in out
    assert "fps=2 frames=4 height=24 width=40" in out and "hop_s=1.0" in out
    assert "ai.onnx 18" in out
    assert "CPUExecutionProvider: yes" in out
    assert "accuracy=0.875" in out and "val.macro_f1=0.5" in out
    assert "fusion=concat" in out and "modalities=video,text" in out


def test_json_output_matches_the_file(model_file, capsys):
    code, out, _ = _inspect(capsys, str(model_file), "--json")
    info = json.loads(out)
    assert code == 0 and info["size_bytes"] == model_file.stat().st_size
    proto = onnx.load(str(model_file))
    assert info["opsets"] == {(o.domain or "ai.onnx"): o.version for o in proto.opset_import}
    assert info["labels"] == list(LABELS) and info["decode"] == DECODE
    assert [i["name"] for i in info["inputs"]] == ["frames", "audio", "tokens", "present"]
    assert info["model"]["modalities"] == ["video", "text"] and info["tokenizer"]["max_len"] == 6
    assert set(info["providers"]) <= set(__import__("onnxruntime").get_available_providers())


def test_opset_reader_agrees_with_onnx_on_a_model_with_several_domains(tmp_path):
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    assert read_opsets(path) == {"ai.onnx": 21, "com.microsoft": 1}


def test_inspect_runs_without_torch_and_without_onnx(model_file):
    code = BLOCK + f"from avfuse.stream.cli.main import main\nrc = main(['inspect', {str(model_file)!r}])\n"
    code += "assert 'torch' not in sys.modules and 'onnx' not in sys.modules\nsys.exit(rc)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(4) dog, cat, bird, fish" in r.stdout


def _plain_model(path: Path, *, contract_names: bool) -> Path:
    """A valid ONNX file without avfuse metadata (with the contract's names, or a generic x -> y)."""
    if contract_names:
        shapes = {"frames": (TensorProto.UINT8, [None, 2, 8, 8, 3]), "audio": (TensorProto.FLOAT, [None, 16]),
                  "tokens": (TensorProto.INT64, [None, 4]), "present": (TensorProto.FLOAT, [None, 3])}
        inputs = [helper.make_tensor_value_info(n, t, s) for n, (t, s) in shapes.items()]
        outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 3]) for n in ("probs", "gates",
                                                                                           "embedding")]
        nodes = [helper.make_node("Identity", ["present"], [n]) for n in ("probs", "gates", "embedding")]
    else:
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
        nodes = [helper.make_node("Identity", ["x"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "plain", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(path))
    return path


def test_model_without_avfuse_metadata_is_one_clear_error(tmp_path, capsys):
    path = _plain_model(tmp_path / "plain.onnx", contract_names=True)
    code, out, err = _inspect(capsys, str(path))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "plain.onnx" in err and "not an avfuse model" in err


def test_foreign_model_names_the_contract(tmp_path, capsys):
    path = _plain_model(tmp_path / "foreign.onnx", contract_names=False)
    code, _, err = _inspect(capsys, str(path))
    assert code == 1 and "foreign.onnx" in err and "do not match the avfuse contract" in err


def test_missing_and_garbage_files(tmp_path, capsys):
    code, _, err = _inspect(capsys, str(tmp_path / "none.onnx"))
    assert code == 1 and "none.onnx" in err and "not found" in err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    code, _, err = _inspect(capsys, str(junk))
    assert code == 1 and "junk.onnx" in err and "cannot load" in err


def test_run_refuses_a_model_without_avfuse_metadata(tmp_path, capsys, bunny):
    path = _plain_model(tmp_path / "plain.onnx", contract_names=True)
    code = main(["run", str(path), str(bunny), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0 and "not an avfuse model" in err and "plain.onnx" in err
