"""avfuse export: one self-describing ONNX file, verified against PyTorch, plus int8 and fp16 variants.

A small random-init model (32x32 frames, 1 s windows, dim 32) is trained by nobody: it is saved as a
real checkpoint and exported once per session, with the real clip and a generated file (captions
included) as verification media.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from media import AudioSpec, VideoSpec, write_media

import avfuse
from avfuse.export import verify as V
from avfuse.export.export_cmd import ExportConfig, export, variant_path
from avfuse.export.onnx import atomic_path
from avfuse.models.checkpoint import load_checkpoint, save_checkpoint
from avfuse.models.net import ModelConfig, build_model
from avfuse.stream.cli.main import main
from avfuse.stream.errors import ModelError
from avfuse.stream.infer.cpu import cpu_info
from avfuse.stream.infer.modelspec import INPUTS, OUTPUTS, read_spec
from avfuse.stream.infer.tokenize import Tokenizer
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata

LABELS = ("calm", "busy", "alert")
CAPTIONS = ["a calm quiet lake", "busy street with cars", "alert siren and alarm", "calm morning"]
DECODE = decode_metadata(DecodeConfig(fps=4, height=32, width=32), SegmentConfig(window_s=1.0))


def make_checkpoint(path: Path, *, seed: int = 0, poison: bool = False) -> Path:
    tok = Tokenizer.build(CAPTIONS, max_len=8)
    config = ModelConfig(labels=LABELS, frames=DECODE["frames"], height=32, width=32, sample_rate=16000,
                         samples=DECODE["samples"], vocab_size=len(tok), max_tokens=tok.max_len, dim=32, n_mels=32)
    torch.manual_seed(seed)
    model = build_model(config).eval()
    if poison:  # a diverged training run: the head's weights are NaN
        with torch.no_grad():
            last = [m for m in model.fusion.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.fill_(float("nan"))
    return save_checkpoint(path, model, config=config, decode=DECODE, tokenizer=tok,
                           metrics={"accuracy": 0.5, "macro_f1": 0.4}, train_args={"epochs": 0})


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    """3 s of generated video + audio + embedded captions, and a manifest labelling it."""
    root = tmp_path_factory.mktemp("media")
    clip = write_media(root / "gen.mkv", video=VideoSpec(frames=12, fps=4, width=64, height=48),
                       audio=AudioSpec(duration=3.0, freq=660.0),
                       captions=[(0.0, 1.0, "busy street"), (1.0, 2.0, "calm lake"), (2.0, 3.0, "alert siren")])
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "start", "end", "label"])
        w.writerows([["gen.mkv", 0, 1, "busy"], ["gen.mkv", 1, 2, "calm"], ["gen.mkv", 2, 3, "alert"]])
    return clip


@pytest.fixture(scope="session")
def exported(tmp_path_factory, media, bunny):
    root = tmp_path_factory.mktemp("export")
    ckpt = make_checkpoint(root / "run" / "model.pt")
    out = root / "out" / "model.onnx"
    out.parent.mkdir()
    result = export(ExportConfig(checkpoint=ckpt, output=out, int8=True, fp16=True,
                                 calib=media.parent / "manifest.csv", held_out=media.parent / "manifest.csv",
                                 verify_sources=(media, bunny)))
    return ckpt, out, result


@pytest.fixture(scope="session")
def rows(exported, media, bunny):
    ckpt, _out, _ = exported
    tok = load_checkpoint(ckpt)[1].tokenizer
    return V.verification_rows(V.decode_sources([media, bunny], decode=DECODE, tokenizer=tok), tok, rows=5)


@pytest.mark.slow
def test_contract_names_dtypes_and_dynamic_batch(exported, rows):
    _, out, _ = exported
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in session.get_inputs()}
    assert list(ins) == list(INPUTS) and [o.name for o in session.get_outputs()] == list(OUTPUTS)
    assert [ins[n].type for n in INPUTS] == ["tensor(uint8)", "tensor(float)", "tensor(int64)", "tensor(float)"]
    assert ins["frames"].shape[1:] == [DECODE["frames"], 32, 32, 3] and isinstance(ins["frames"].shape[0], str)
    for batch in (1, 5):
        probs, gates, emb = session.run(list(OUTPUTS), rows.feed(slice(0, batch)))
        assert probs.shape == (batch, len(LABELS)) and gates.shape == (batch, 3) and emb.shape == (batch, 32)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    proto = onnx.load(str(out))
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] >= 17
    assert not list(out.parent.glob(".*tmp")), "temporary files left behind"


@pytest.mark.slow
def test_metadata_round_trip(exported):
    ckpt_path, out, _ = exported
    _, ckpt = load_checkpoint(ckpt_path)
    spec = read_spec(out)
    assert spec.labels == LABELS
    assert spec.metadata["avfuse.decode"] == DECODE
    assert (spec.frames, spec.samples) == (DECODE["frames"], DECODE["samples"])
    assert spec.tokenizer.vocab == ckpt.tokenizer.vocab and spec.tokenizer.max_len == 8
    assert spec.metrics == {"accuracy": 0.5, "macro_f1": 0.4}
    assert spec.model["fusion"] == "gated" and spec.model["precision"] == "fp32" and spec.model["dim"] == 32
    assert set(spec.model["encoders"]) == {"video", "audio", "text"}
    assert spec.version


@pytest.mark.slow
def test_onnxruntime_matches_pytorch_on_decoded_segments(exported, rows):
    ckpt, out, result = exported
    model, _ = load_checkpoint(ckpt)
    assert rows.present[:, 2].min() == 0 and rows.present[:, 2].max() == 1  # rows with and without captions
    ref = V.run_torch(model, rows, batch=5)
    for batch in (1, 5):
        got = V.run_onnxruntime(out, rows, batch=batch)
        assert np.abs(got["probs"] - ref["probs"]).max() <= 1e-4
        assert (got["probs"].argmax(1) == ref["probs"].argmax(1)).all()
    lines = "\n".join(result.by_precision("fp32").lines)
    for what in ("onnxruntime CPU batch 1", "onnxruntime CPU batch 5", "openvino CPU", "onnx.reference"):
        assert what in lines
    assert "FAILED" not in lines


@pytest.mark.slow
def test_verification_catches_a_gru_exported_with_the_wrong_linear_before_reset(exported, rows, tmp_path):
    ckpt, out, _ = exported
    model, _ = load_checkpoint(ckpt)
    proto = onnx.load(str(out))
    gru = next(n for n in proto.graph.node if n.op_type == "GRU")
    attr = next((a for a in gru.attribute if a.name == "linear_before_reset"), None)
    if attr is None:
        attr = gru.attribute.add()
        attr.name, attr.type = "linear_before_reset", onnx.AttributeProto.INT
    attr.i = 1 - attr.i
    broken = tmp_path / "broken.onnx"
    onnx.save_model(proto, str(broken))
    with pytest.raises(ModelError, match="disagrees with PyTorch"):
        V.verify_fp32(model, broken, rows, portability=False)


@pytest.mark.slow
def test_int8_variant_is_smaller_and_within_its_tolerance(exported, rows):
    ckpt, out, result = exported
    int8 = variant_path(out, "int8")
    assert int8.is_file() and result.by_precision("int8").path == int8
    ratio = out.stat().st_size / int8.stat().st_size
    assert ratio >= 3.0, f"int8 only {ratio:.2f}x smaller (goal: 3x)"
    proto = onnx.load(str(int8))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "GRU"} <= ops  # quantized, with the GRU kept float
    gru = next(n for n in proto.graph.node if n.op_type == "GRU")
    assert not any(p.op_type == "DequantizeLinear" for p in proto.graph.node if set(p.output) & set(gru.input))
    model, _ = load_checkpoint(ckpt)
    ref = V.run_torch(model, rows, batch=5)
    got = V.run_onnxruntime(int8, rows, batch=5)
    check = V.compare("int8", ref, got, V.INT8)
    assert check.ok, check.line()
    spec = read_spec(int8)
    assert spec.model["precision"] == "int8" and spec.labels == LABELS
    assert "held_out_accuracy" in spec.model
    checks = spec.model["int8"]  # which CPUs the file is exact on, and how it agreed with fp32 here
    assert checks["saturation_free"] and checks["worst_u8s8_pair_sum"] <= checks["int16_max"] == 32767
    assert "x86-64 without VNNI (AVX2, AVX-512)" in checks["exact_on"]
    assert checks["checked_on"] == cpu_info().describe() and checks["top1_agreement_with_fp32"] >= 0.99
    line = next(line for line in result.by_precision("int8").lines if "exact on" in line)
    assert "without VNNI" in line and cpu_info().describe() in line


def test_int8_that_disagrees_with_fp32_is_refused_loudly(exported, rows, tmp_path):
    """--verify's agreement gate: a file whose top-1 differs from fp32's on more than 1% of the segments is
    an error (another model's weights stand in for a broken int8 file)."""
    from avfuse.export.export_cmd import _int8_checks
    from avfuse.export.onnx import export_model, model_info, save

    _ckpt, out, _ = exported
    other, saved = load_checkpoint(make_checkpoint(tmp_path / "other.pt", seed=7))
    wrong = tmp_path / "wrong.onnx"
    save(export_model(other, model_info(other, decode=DECODE, tokenizer=saved.tokenizer, metrics={}), wrong), wrong)
    with pytest.raises(ModelError, match=r"same top-1 as fp32 on \d+/10 segments .* goal >= 99%"):
        _int8_checks(out, wrong, [rows], fail=True)
    assert _int8_checks(out, wrong, [rows], fail=False)["top1_agreement_with_fp32"] < 0.99  # --no-verify: a warning


@pytest.mark.slow
def test_fp16_variant_keeps_the_contract_and_agrees(exported, rows):
    ckpt, out, _ = exported
    fp16 = variant_path(out, "fp16")
    session = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(uint8)", "tensor(float)", "tensor(int64)",
                                                     "tensor(float)"]
    assert {o.type for o in session.get_outputs()} == {"tensor(float)"}
    proto = onnx.load(str(fp16))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    assert fp16.stat().st_size < 0.75 * out.stat().st_size
    model, _ = load_checkpoint(ckpt)
    check = V.compare("fp16", V.run_torch(model, rows, batch=5), V.run_onnxruntime(session, rows, batch=1), V.FP16)
    assert check.ok, check.line()
    assert read_spec(fp16).model["precision"] == "fp16"


def test_cli_summary_prints_sizes_and_ratios(exported, capsys):
    from avfuse.export.export_cmd import summary

    _, out, result = exported
    text = "\n".join(summary(result))
    for precision in ("int8", "fp16"):
        line = next(line for line in text.splitlines() if line.startswith(precision))
        ratio = float(re.search(r"([0-9.]+)x smaller than fp32", line).group(1))
        assert ratio == pytest.approx(out.stat().st_size / variant_path(out, precision).stat().st_size, abs=0.01)
        accuracy = float(re.search(r"held-out accuracy ([0-9.]+)", line).group(1))
        assert accuracy == pytest.approx(result.by_precision(precision).held_out_accuracy, abs=1e-4)
        assert "points" in line and "same top-1 as fp32 on" in line


# --- bad input: one clear line, nothing half-written -------------------------------------------------

def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(["export", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_checkpoint(tmp_path, capsys):
    code, err = _cli(capsys, str(tmp_path / "nope.pt"), "-o", str(tmp_path / "m.onnx"), "--no-verify")
    assert code == 1 and err.count("\n") == 0 and "nope.pt" in err and "not found" in err
    assert not list(tmp_path.iterdir())


def test_truncated_checkpoint(tmp_path, capsys):
    good = make_checkpoint(tmp_path / "run" / "model.pt")
    bad = tmp_path / "cut.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code, err = _cli(capsys, str(bad), "-o", str(tmp_path / "m.onnx"), "--no-verify")
    assert code == 1 and "cut.pt" in err and "truncated" in err and err.count("\n") == 0
    assert not (tmp_path / "m.onnx").exists()


def test_checkpoint_from_another_version(tmp_path, capsys):
    good = make_checkpoint(tmp_path / "run" / "model.pt")
    blob = torch.load(good, weights_only=True)
    blob["format_version"] = 99
    torch.save(blob, tmp_path / "future.pt")
    code, err = _cli(capsys, str(tmp_path / "future.pt"), "-o", str(tmp_path / "m.onnx"), "--no-verify")
    assert code == 1 and "future.pt" in err and "version 99" in err
    assert not (tmp_path / "m.onnx").exists()


def test_output_in_a_missing_folder(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "run" / "model.pt")
    code, err = _cli(capsys, str(ckpt), "-o", str(tmp_path / "no" / "such" / "m.onnx"), "--no-verify")
    assert code == 1 and "does not exist" in err and str(tmp_path / "no" / "such") in err
    assert not (tmp_path / "no").exists()


def test_failed_verification_leaves_no_model(tmp_path, media, capsys):
    ckpt = make_checkpoint(tmp_path / "run" / "model.pt", poison=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, err = _cli(capsys, str(ckpt), "-o", str(out_dir / "m.onnx"), "--verify-source", str(media),
                     "--no-portability")
    assert code == 1 and "disagrees with PyTorch" in err
    assert list(out_dir.iterdir()) == []


def test_atomic_path_removes_the_temporary_file_on_error(tmp_path):
    target = tmp_path / "m.onnx"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a model")
        raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []


def test_calib_without_int8_is_refused(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "run" / "model.pt")
    code, err = _cli(capsys, str(ckpt), "-o", str(tmp_path / "m.onnx"), "--calib", str(ckpt))
    assert code == 1 and "--int8" in err


def test_export_metadata_is_json_that_describes_the_model(exported):
    ckpt, out, _ = exported
    proto = onnx.load(str(out))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props if p.key.startswith("avfuse.")}
    _, saved = load_checkpoint(ckpt)
    assert meta["avfuse.labels"] == list(LABELS) == list(saved.config.labels)
    assert {k: meta["avfuse.decode"][k] for k in DECODE} == DECODE
    assert meta["avfuse.model"]["fusion"] == saved.config.fusion
    assert meta["avfuse.version"] == avfuse.__version__
    assert isinstance(meta["avfuse.tokenizer"], dict) and isinstance(meta["avfuse.metrics"], dict)


def test_bench_model_module_imports_without_torch():
    code = ("import sys\nclass B:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, B())\nimport avfuse.export.bench_model\nprint('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


@pytest.mark.slow
def test_bench_model_prints_both_ratios(exported, capsys):
    ckpt, out, _ = exported
    code = main(["bench", "model", str(out), "--checkpoint", str(ckpt), "--rounds", "3", "--threads", "1"])
    text = capsys.readouterr().out
    assert code == 0
    for runtime in ("pytorch eager", "onnxruntime fp32", "onnxruntime int8"):
        assert text.count(runtime) >= 2  # batch 1 and 8
    assert "onnxruntime fp32 vs PyTorch eager, batch 1:" in text and "onnxruntime int8 vs fp32, batch 8:" in text


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_avfuse_run_needs_nothing_but_the_exported_file(exported, media, tmp_path, precision):
    _, out, _ = exported
    model = out if precision == "fp32" else variant_path(out, "int8")
    lonely = tmp_path / "model" / model.name  # copied away from the checkpoint, like onto an edge device
    lonely.parent.mkdir()
    lonely.write_bytes(model.read_bytes())
    assert main(["run", str(lonely), str(media), "-o", str(tmp_path / "labels"), "--device", "cpu"]) == 0
    records = [json.loads(line) for f in (tmp_path / "labels").rglob("*.jsonl") for line in f.read_text().splitlines()]
    segments = [r for r in records if r["type"] == "segment"]
    assert len(segments) == 3 and {r["label"] for r in segments} <= set(LABELS)
    assert [r["start"] for r in segments] == [0.0, 1.0, 2.0]


def test_bench_model_refuses_a_missing_int8_file(tmp_path, capsys):
    code = main(["bench", "model", str(tmp_path / "m.onnx"), "--int8", str(tmp_path / "none.int8.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "none.int8.onnx" in err and "not found" in err and err.count("\n") == 0


def test_inspect_says_which_cpus_the_int8_file_was_checked_for(exported, capsys):
    _, out, _ = exported
    assert main(["inspect", str(variant_path(out, "int8"))]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("int8 "))
    assert "x86-64 without VNNI (AVX2, AVX-512)" in line and "ARM64" in line and cpu_info().describe() in line
