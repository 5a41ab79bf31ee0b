"""The int8 file's DFT: an integer product of the frames, in 8 bits per frame or in 16 bits."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from avfuse.export.int8_dft import dft_matmul, integer_dft
from avfuse.models.audio import LogMel

SCOPE = "/frontend/"


class _Frontend(torch.nn.Module):
    def __init__(self, hop: int) -> None:
        super().__init__()
        self.frontend = LogMel(hop_length=hop, n_mels=32)

    def forward(self, audio):
        return self.frontend(audio)


def _export(hop: int, samples: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's deprecation notice; the fixed audio length read as a constant
        warnings.simplefilter("ignore")
        torch.onnx.export(_Frontend(hop).eval(), (torch.zeros(1, samples),), buf, input_names=["audio"],
                          output_names=["logmel"], dynamic_axes={"audio": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def _run(proto: onnx.ModelProto, audio: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {"audio": audio})[0]


def _quiet_music(n: int, samples: int) -> np.ndarray:
    """Tones around -35 dBFS over a -70 dBFS noise floor: like the real test clip, far below full scale."""
    rng = np.random.default_rng(5)
    t = np.arange(samples) / 16000
    rows = [sum(rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * rng.uniform(80, 6000) * t) for _ in range(6))
            + 3e-4 * rng.standard_normal(samples) for _ in range(n)]
    return np.stack(rows).astype(np.float32)


def _variants(hop: int, samples: int, bits: int) -> tuple[onnx.ModelProto, onnx.ModelProto, onnx.ModelProto]:
    """The fp32 frontend; the same with its DFT kernel rounded to int8 per output column (float arithmetic);
    and rewritten to the integer product."""
    fp32 = _export(hop, samples)
    kernel_only, rewritten = onnx.ModelProto(), onnx.ModelProto()
    kernel_only.CopyFrom(fp32)
    name = dft_matmul(fp32, SCOPE).input[1]
    graph = kernel_only.graph
    holder = next(iter([i for i in graph.initializer if i.name == name]
                       + [n.attribute[0].t for n in graph.node if n.op_type == "Constant" and n.output[0] == name]))
    w = numpy_helper.to_array(holder)
    scale = np.abs(w).max(axis=0) / 127
    scale[scale == 0] = 1
    holder.CopyFrom(numpy_helper.from_array((np.round(w / scale) * scale).astype(np.float32), holder.name))
    rewritten.CopyFrom(fp32)
    assert integer_dft(rewritten, SCOPE, bits=bits)
    return fp32, kernel_only, rewritten


@pytest.mark.parametrize("hop,samples", [(160, 16000), (320, 32000), (128, 12345)])
def test_16_bit_frames_keep_the_log_mel_of_quiet_audio(hop, samples):
    fp32, kernel_only_model, rewritten = _variants(hop, samples, 16)
    onnx.checker.check_model(rewritten, full_check=True)
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops.count("MatMulInteger") == 2 and dft_matmul(rewritten, SCOPE) is None
    kernel = dft_matmul(fp32, SCOPE).input[1]  # the fp32 kernel is gone, whether an initializer or a Constant
    assert kernel not in {i.name for i in rewritten.graph.initializer} | {o for n in rewritten.graph.node
                                                                          for o in n.output}
    audio = _quiet_music(3, samples)
    ref, kernel_only, got = _run(fp32, audio), _run(kernel_only_model, audio), _run(rewritten, audio)
    assert got.shape == ref.shape
    # the 16-bit frames add next to nothing to the int8 kernel's own rounding ...
    assert np.abs(got - kernel_only).mean() < 0.02 and np.abs(got - kernel_only).max() < 0.3
    assert np.abs(got - ref).mean() < 0.2
    # ... while one 8-bit part alone (what QDQ would do to the waveform) moves this log-mel by over 1
    coarse = np.round(audio * 127) / 127
    assert np.abs(_run(fp32, coarse) - ref).mean() > 1.0


@pytest.mark.parametrize("hop,samples", [(160, 16000), (320, 32000)])
def test_8_bit_frames_scaled_per_frame(hop, samples):
    fp32, kernel_only_model, rewritten = _variants(hop, samples, 8)
    onnx.checker.check_model(rewritten, full_check=True)
    assert [n.op_type for n in rewritten.graph.node].count("MatMulInteger") == 1
    audio = _quiet_music(3, samples)
    ref, kernel_only, got = _run(fp32, audio), _run(kernel_only_model, audio), _run(rewritten, audio)
    assert np.abs(kernel_only - ref).mean() < np.abs(got - ref).mean() < 0.35  # the documented cost
    # a loud first half: one 8-bit scale for the whole tensor (dynamic quantization's) leaves the quiet half
    # a few levels; scaled per frame, the quiet frames keep their 8 bits
    audio[:, : samples // 2] += 0.5 * np.sin(np.arange(samples // 2) * 0.3)
    ref, got = _run(fp32, audio), _run(rewritten, audio)
    quiet = slice(ref.shape[2] // 2 + 3, None)
    step = np.abs(audio).max() / 127
    per_tensor = _run(fp32, np.round(audio / step) * step)
    assert np.abs(per_tensor - ref)[..., quiet].mean() > 3 * np.abs(got - ref)[..., quiet].mean()


@pytest.mark.parametrize("bits,near", [(16, 0.01), (8, 0.03)])
def test_loud_and_silent_audio_and_batches(bits, near):
    fp32, kernel_only_model, rewritten = _variants(160, 16000, bits)
    t = np.arange(16000) / 16000
    audio = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t), np.clip(3 * np.sin(2 * np.pi * 50 * t), -1, 1),
                      np.ones_like(t)]).astype(np.float32)
    ref, kernel_only, got = _run(fp32, audio), _run(kernel_only_model, audio), _run(rewritten, audio)
    np.testing.assert_array_equal(got[1], ref[1])  # silence stays exactly at the log floor
    loud = ref > ref.max(axis=1, keepdims=True) - 7  # bands within 30 dB of the frame's loudest
    assert np.abs(got - kernel_only)[loud].max() < near
    assert np.allclose(_run(rewritten, audio[:1]), got[:1], atol=1e-5)  # batch rows are independent


@pytest.mark.parametrize("bits,products", [(8, 1), (16, 2)])
def test_onnxruntime_fuses_each_product_into_its_integer_to_float_kernel(bits, products, tmp_path):
    """MatMulInteger -> Cast -> Mul is onnxruntime's MatMulIntegerToFloat pattern; folding a scale product
    away (or a Mul by 1) breaks it and the product then runs as three ops."""
    _, _, rewritten = _variants(160, 16000, bits)
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(rewritten.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    assert ops.count("MatMulIntegerToFloat") == products and "MatMulInteger" not in ops


def test_nothing_to_rewrite_leaves_the_graph_alone():
    proto = _export(160, 16000)
    before = proto.SerializeToString()
    assert not integer_dft(proto, "/no/such/scope/")
    assert proto.SerializeToString() == before
    with pytest.raises(ValueError, match="bits"):
        integer_dft(proto, SCOPE, bits=4)


@pytest.mark.parametrize("bits,parts", [(8, ("q",)), (16, ("hi", "lo"))])
def test_each_integer_product_is_the_exact_integer_on_this_cpu(bits, parts):
    """onnxruntime's integer product against int64 numpy on full-scale input, where the frames' bytes reach 1
    and 255: a kernel that sums byte pairs into a saturating int16 (u8s8 without VNNI) fails here."""
    _, _, rewritten = _variants(160, 16000, bits)
    p = f"{SCOPE}int8_dft/"
    inits = {i.name: numpy_helper.to_array(i) for i in rewritten.graph.initializer}
    kernel, zero = inits[p + "kernel"].astype(np.int64), int(inits[p + "zero_point"])
    assert inits[p + "kernel"].dtype == np.uint8  # u8u8: widened to 16 bits by every x86 and ARM kernel
    probe = onnx.ModelProto()
    probe.CopyFrom(rewritten)
    for part in parts:
        probe.graph.output.extend([onnx.helper.make_empty_tensor_value_info(p + part),
                                   onnx.helper.make_empty_tensor_value_info(p + part + "_product")])
    t = np.arange(16000) / 16000
    audio = np.stack([np.sign(np.sin(2 * np.pi * 440 * t)), np.sign(np.sin(2 * np.pi * 3000 * t)) * 0.999,
                      np.clip(5 * np.sin(2 * np.pi * 97 * t), -1, 1)]).astype(np.float32)
    out = _run_all(probe, audio)
    for part in parts:
        q, product = out[p + part], out[p + part + "_product"]
        assert q.dtype == np.uint8 and product.dtype == np.int32
        exact = (q.astype(np.int64) - zero) @ (kernel - zero)
        assert (q == 255).any() or part == "lo"
        np.testing.assert_array_equal(product, exact)


def _run_all(proto: onnx.ModelProto, audio: np.ndarray) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"audio": audio}), strict=True))
