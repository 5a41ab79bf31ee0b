"""int8 details: what is quantized, what stays fp32, and the weight-only frontend kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from avfuse.export import verify as V
from avfuse.export.export_cmd import quantize_frontend_checked
from avfuse.export.int8_check import INT16_MAX, integer_products, saturation_report
from avfuse.export.int8_dft import MAX_LOG_MEL_CHANGE, dft_matmul, log_mel_change
from avfuse.export.onnx import export_model, model_info, save
from avfuse.export.quantize import EXACT_AUDIO_BITS, FP32_SCOPES, quantize_int8, store_weight_only
from avfuse.models.net import ModelConfig, build_model
from avfuse.stream.infer.tokenize import Tokenizer
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata

DECODE = decode_metadata(DecodeConfig(fps=2, height=32, width=32), SegmentConfig(window_s=1.0))


def _quantized(root: Path, **config) -> tuple[Path, Path, V.Inputs]:
    tok = Tokenizer.build(["loud alarm now", "quiet calm lake"], max_len=6)
    config = ModelConfig(labels=("a", "b"), frames=DECODE["frames"], height=32, width=32, sample_rate=16000,
                         samples=DECODE["samples"], vocab_size=len(tok), max_tokens=6, dim=32, n_mels=32, **config)
    torch.manual_seed(3)
    model = build_model(config).eval()
    fp32 = root / "m.onnx"
    save(export_model(model, model_info(model, decode=DECODE, tokenizer=tok, metrics={}), fp32), fp32)
    rng = np.random.default_rng(0)
    n = 6
    t = np.linspace(0, 1, DECODE["samples"], dtype=np.float32)
    audio = np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in rng.uniform(200, 3000, n)]).astype(np.float32)
    rows = V.Inputs(frames=rng.integers(0, 256, (n, DECODE["frames"], 32, 32, 3), dtype=np.uint8), audio=audio,
                    tokens=tok.encode_batch(["loud alarm", "", "calm lake now", "", "quiet", "alarm alarm"]),
                    present=np.ones((n, 3), np.float32))
    int8 = root / "m.int8.onnx"
    quantize_int8(fp32, int8, rows)
    return fp32, int8, rows


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path, V.Inputs]:
    return _quantized(tmp_path_factory.mktemp("quant"), fusion="sequential")


def test_a_cnn_with_hard_swish_keeps_fp32_arithmetic_and_int8_weights(tmp_path):
    """MobileNetV3's hard-swish has no int8 kernel in onnxruntime: its CNN stays fp32 arithmetic (int8 was
    0.8x of fp32), its kernels stored int8 with one scale per filter; the audio CNN is still int8."""
    fp32, int8, rows = _quantized(tmp_path, image_backbone="mobilenet_v3_small")
    proto = onnx.load(str(int8))
    prod = _producers(proto)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    video = [n for n in convs if n.name.startswith("/video/backbone/")]
    assert len(video) > 30 and not any(n.input[0] in prod and prod[n.input[0]].op_type == "DequantizeLinear"
                                       for n in video)
    stored = [_rebuilt_from_int8(prod, inits, n.input[1]) for n in video]
    assert all(s is not None or inits[n.input[1]].size < 256 for s, n in zip(stored, video, strict=True))
    assert sum(s is not None for s in stored) > 20  # kernels under 256 numbers are not worth a rebuild
    assert all(q.dtype == np.int8 and scale.shape == (q.shape[0], 1, 1, 1) for q, scale in filter(None, stored))
    assert any(n.name.startswith("/audio/cnn/") and prod[n.input[0]].op_type == "DequantizeLinear" for n in convs)
    assert fp32.stat().st_size / int8.stat().st_size >= 3.0
    check = V.compare("int8", V.run_onnxruntime(fp32, rows, batch=3), V.run_onnxruntime(int8, rows, batch=3), V.INT8)
    assert check.ok, check.line()


def _producers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in proto.graph.node for o in n.output}


def _rebuilt_from_int8(prod: dict[str, onnx.NodeProto], inits: dict[str, np.ndarray], name: str
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """(int8 table, scale) if ``name`` is a weight-only constant rebuilt as Cast(int8) * scale, else None."""
    mul = prod.get(name)
    if mul is None or mul.op_type != "Mul":
        return None
    cast = prod.get(mul.input[0])
    if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits:
        return None
    return inits[cast.input[0]], inits[mul.input[1]]


def test_cnn_layers_are_quantized_and_grus_and_frontend_activations_are_not(models):
    _, int8, _ = models
    proto = onnx.load(str(int8))
    prod = _producers(proto)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    def fed_by_dq(node, index):
        p = prod.get(node.input[index])
        return p is not None and p.op_type == "DequantizeLinear"
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    original = onnx.load(str(models[0]))
    kernels = {i.name: list(i.dims) for i in original.graph.initializer}
    stems = {n.name for n in original.graph.node if n.op_type == "Conv" and n.name.startswith(("/video/", "/audio/cnn"))
             and kernels.get(n.input[1], [0, 99])[1] <= 3}  # each CNN's first layer: over RGB, over the log-mel
    texture = {n.name for n in convs if n.name.startswith("/video/texture/")}  # the fixed Gabor bank: fp32
    assert len(texture) == 1 and texture <= stems
    assert len(stems - texture) == 2 and stems <= {n.name for n in convs}
    assert all(fed_by_dq(n, 0) and fed_by_dq(n, 1) for n in convs if n.name not in stems)  # activation, weight
    assert not any(fed_by_dq(n, 0) or fed_by_dq(n, 1) for n in convs if n.name in stems)
    assert len(convs) == sum(n.op_type == "Conv" for n in original.graph.node)
    # the audio stem's pool runs before its ReLU (the same values), so the pool stays fp32
    audio_pool = next(n for n in proto.graph.node if n.op_type == "MaxPool" and n.name.startswith("/audio/cnn"))
    assert prod[audio_pool.input[0]].name in stems
    gemms = [n for n in proto.graph.node if n.op_type in ("Gemm", "MatMul") and not n.name.startswith(FP32_SCOPES)]
    assert gemms and not any(fed_by_dq(n, 0) for n in gemms)  # fp32 arithmetic, int8 storage
    assert all(_rebuilt_from_int8(prod, inits, n.input[1]) is not None or inits[n.input[1]].size < 256
               for n in gemms)  # weights under 256 numbers are not worth a rebuild
    grus = [n for n in proto.graph.node if n.op_type == "GRU"]
    assert len(grus) == 2  # text encoder and sequential fusion
    for gru in grus:
        assert not any(fed_by_dq(gru, i) for i in range(6) if i < len(gru.input))  # fp32 arithmetic
        q, scale = _rebuilt_from_int8(prod, inits, gru.input[1])  # W stored int8, one scale per row
        assert q.dtype == np.int8 and scale.shape == (*q.shape[:-1], 1)
        assert inits[gru.input[2]].dtype == np.float32  # R (recurrent weights) stays fp32
    frontend = [n for n in proto.graph.node if n.name.startswith(FP32_SCOPES) and n.op_type in ("Conv", "MatMul")]
    assert [n.op_type for n in frontend] == ["MatMul"]  # the mel matrix; the DFT is an integer product
    for node in frontend:  # the spectrum stays fp32: only the stored constant is int8
        assert not any(i in prod and prod[i].op_type == "DequantizeLinear" for i in node.input)
        assert sum(_rebuilt_from_int8(prod, inits, i) is not None for i in node.input) == 1
    assert [n.op_type for n in proto.graph.node if n.name.startswith(FP32_SCOPES)].count("MatMulInteger") == 1


def test_weight_only_constants_are_folded_when_the_session_loads(models, tmp_path):
    """onnxruntime never folds a DequantizeLinear: the int8 kernels must be rebuilt by ops it folds, or every
    call would rebuild the DFT kernel and the convolution would lose its pre-packed weights."""
    _, int8, _ = models
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(int8), opts, providers=["CPUExecutionProvider"])
    optimised = onnx.load(opts.optimized_model_filepath)
    assert not [n.name for n in optimised.graph.node if "/weight_int8" in n.name]
    prod = _producers(optimised)
    mel = next(n for n in optimised.graph.node if n.op_type == "MatMul" and n.name.startswith(FP32_SCOPES))
    assert mel.input[1] not in prod  # a constant initializer again


def test_frontend_kernel_is_int8_weight_only_and_faithful(models):
    fp32, _, _ = models
    original = onnx.load(str(fp32))
    kernel = dft_matmul(original, FP32_SCOPES[0])
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in original.graph.node
              if n.op_type == "Constant"}
    consts.update({i.name: numpy_helper.to_array(i) for i in original.graph.initializer})
    w = consts[kernel.input[1]]
    saved = store_weight_only(original)
    assert saved > 0.7 * w.nbytes
    inits = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer}
    q, scale = inits[f"{kernel.name}/weight_int8"], inits[f"{kernel.name}/weight_int8_scale"]
    assert q.dtype == np.int8 and scale.shape == (w.shape[0], 1)
    rebuilt = q.astype(np.float32) * scale
    assert np.abs(rebuilt - w).max() <= scale.max() / 2 + 1e-7


def test_int8_file_runs_and_tracks_fp32(models):
    fp32, int8, rows = models
    ref = V.run_onnxruntime(fp32, rows, batch=3)
    got = V.run_onnxruntime(int8, rows, batch=3)
    check = V.compare("int8", ref, got, V.INT8)
    assert check.ok, check.line()
    assert fp32.stat().st_size / int8.stat().st_size >= 3.0  # the goal


def test_token_embeddings_are_stored_int8_per_token(models):
    fp32, int8, _ = models
    proto = onnx.load(str(int8))
    prod = _producers(proto)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    gathers = [n for n in proto.graph.node if n.op_type == "Gather" and n.name.startswith("/text/")
               and _rebuilt_from_int8(prod, inits, n.input[0]) is not None]
    assert len(gathers) == 1
    table, scale = _rebuilt_from_int8(prod, inits, gathers[0].input[0])
    assert table.dtype == np.int8 and scale.shape == (table.shape[0], 1)  # one scale per token
    original = onnx.load(str(fp32))
    weights = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer}
    fp_table = next(w for w in weights.values() if w.shape == table.shape and w.dtype == np.float32)
    np.testing.assert_allclose(table * scale, fp_table, atol=float(scale.max()) / 2 + 1e-7)


def test_no_integer_product_can_saturate_on_a_cpu_without_vnni(models, tmp_path):
    """Checked from the stored weights, so it holds whatever CPU runs the test: every u8s8 product's worst pair of
    byte products fits the int16 that AVX2 / AVX-512 kernels without VNNI sum pairs into, and the DFT is u8u8."""
    _, int8, _ = models
    proto = onnx.load(str(int8))
    products = integer_products(proto)
    convs = [p for p in products if p.op == "Conv"]
    assert convs and all(p.kind == "u8s8" for p in convs)  # the CNNs' convolutions, but their stems
    assert [p.kind for p in products if p.op == "MatMulInteger"] == ["u8u8"]  # the log-mel DFT
    assert max(p.worst_pair for p in convs) <= INT16_MAX
    for node in proto.graph.node:  # the stored levels themselves: 7-bit kernels
        if node.op_type == "Conv" and node.input[1] in _producers(proto):
            dq = _producers(proto)[node.input[1]]
            if dq.op_type == "DequantizeLinear":
                levels = numpy_helper.to_array(next(i for i in proto.graph.initializer if i.name == dq.input[0]))
                assert np.abs(levels.astype(int)).max() <= 64
    report = saturation_report(proto)
    assert report["saturation_free"] and report["u8u8"] == 1 and report["u8s8"] == len(convs)


def test_the_check_flags_8_bit_kernels_that_would_saturate(models, tmp_path):
    """The same model quantized as onnxruntime does by default (8-bit weights) is caught, on any CPU."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from avfuse.export.quantize import _Reader, nodes_to_quantize

    fp32, _, rows = models
    full = tmp_path / "full-range.onnx"
    quantize_static(str(fp32), str(full), _Reader(rows), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_quantize=nodes_to_quantize(onnx.load(str(fp32))),
                    extra_options={"WeightSymmetric": True})
    report = saturation_report(onnx.load(str(full)))
    assert not report["saturation_free"] and report["worst_u8s8_pair_sum"] > INT16_MAX
    assert report["saturating_nodes"] and report["exact_on"] == ["x86-64 with VNNI", "ARM64"]


def _with_audio(rows: V.Inputs, *, below_hz: float | None, seed: int) -> V.Inputs:
    """``rows`` with other audio: white noise at -10 dBFS peak, cut above ``below_hz`` (as 8 kHz audio resampled to
    16 kHz is: nothing above its 4 kHz) or, with None, left broadband."""
    rng = np.random.default_rng(seed)
    n, samples = rows.audio.shape
    spectrum = np.fft.rfft(rng.standard_normal((n, samples)), axis=1)
    if below_hz is not None:
        spectrum[:, np.fft.rfftfreq(samples, 1 / 16000) > below_hz] = 0
    wave = np.fft.irfft(spectrum, samples, axis=1)
    audio = (0.3 * wave / np.abs(wave).max(axis=1, keepdims=True)).astype(np.float32)
    return V.Inputs(frames=rows.frames, audio=audio, tokens=rows.tokens, present=rows.present)


def _integer_frontend(path: Path) -> bool:
    return any(n.op_type == "MatMulInteger" and n.name.startswith(FP32_SCOPES) for n in onnx.load(str(path)).graph.node)


def test_audio_with_empty_bands_keeps_the_frontend_fp32_and_its_log_mel_exact(models, tmp_path):
    fp32, _, rows = models
    band = _with_audio(rows, below_hz=4000, seed=1)
    integer = tmp_path / "integer.int8.onnx"
    quantize_int8(fp32, integer, band)
    leaked = log_mel_change(fp32, integer, FP32_SCOPES[0], [band.feed()])
    assert leaked is not None and leaked > MAX_LOG_MEL_CHANGE  # the integer DFT's rounding fills the empty bands
    checked = tmp_path / "checked.int8.onnx"
    assert quantize_frontend_checked(fp32, checked, band, 8) == EXACT_AUDIO_BITS
    assert not _integer_frontend(checked) and _integer_frontend(integer)
    assert log_mel_change(fp32, checked, FP32_SCOPES[0], [band.feed()]) == pytest.approx(0.0, abs=1e-5)
    # the fp32 DFT kernel is not stored but built when the session loads: the file stays as small as the other
    assert any(n.name.endswith("dft_kernel/kernel") for n in onnx.load(str(checked)).graph.node)
    assert checked.stat().st_size <= integer.stat().st_size
    assert V.compare("int8", V.run_onnxruntime(fp32, band, batch=3), V.run_onnxruntime(checked, band, batch=3),
                     V.INT8).ok


def test_broadband_audio_keeps_the_integer_dft(models, tmp_path):
    fp32, _, rows = models
    noise = _with_audio(rows, below_hz=None, seed=2)
    checked = tmp_path / "checked.int8.onnx"
    assert quantize_frontend_checked(fp32, checked, noise, 8) == 8 and _integer_frontend(checked)
    assert log_mel_change(fp32, checked, FP32_SCOPES[0], [noise.feed()]) < 0.1
