"""The int8 file's log-mel DFT: an integer matrix product of the frames.

The fp32 model computes the STFT as one ``MatMul`` of the frames [B, frames, n_fft] with the windowed DFT
rows [n_fft, 2 * n_freq] (:class:`avfuse.models.audio.LogMel`). In the int8 file the kernel is quantized to
8 bits per output column (levels -127..127) and the product becomes ``MatMulInteger`` of uint8 frames and a
**uint8** kernel (the levels + 128, zero point 128), in one of two ways (``bits``):

- ``8`` (the default): each frame scaled to its own peak and quantized to 8 bits, one product, scaled
  back per frame. Per frame, not per tensor as dynamic quantization does: a quiet frame keeps its 8 bits.
- ``16``: the frames split into two 8-bit parts at fixed scales, ``hi = round(x * 127)`` and ``lo`` the
  remainder at 1/254 of that step (the waveform to about 1.6e-5, 16-bit audio's own resolution; the
  contract's waveform lies in [-1, 1], so there is nothing to calibrate), two products, summed.

What each gives, on the demo model at one thread (``avfuse bench model``, int8 against fp32 at batch 1 / 8, on
an AVX2 CPU): 8 bits 1.29-1.32x / 1.25-1.26x; 16 bits 1.04-1.05x / 0.97x (with the u8s8 product, exact only
with VNNI: 1.35-1.36x / 1.34x and 1.23-1.28x / 1.26-1.28x). What each changes, as the mean absolute change of
the log-mel against fp32 on quiet audio (tones at -35 dBFS over a -70 dBFS floor, tests/export/test_int8_dft.py):
the int8 kernel alone 0.14 (the weight-only int8 kernel of earlier files did as much); with 16-bit frames
the same; with 8-bit frames 0.26, the added error sitting in the near-silent bands. One 8-bit part per
tensor, as static or dynamic QDQ would give, moved the real test clip's log-mel by 0.5.

Why uint8 x uint8 and not onnxruntime's faster uint8 x int8: on x86-64 without VNNI (AVX2, AVX-512 without
VNNI: many AMD EPYC, older Xeons, cloud VMs) onnxruntime's u8s8 kernels multiply with ``vpmaddubsw``, which
sums each pair of adjacent byte products into a *saturating* int16. A frame byte of 255 against kernel
levels of 127 gives pairs up to 2 * 255 * 127 = 64,770 > 32,767: measured there, the log-mel moved by
1.1-3.0 where the tests allow 0.02-0.35, i.e. the int8 file heard something else on those CPUs. Its u8u8
kernels widen both operands to 16 bits first (``vpmaddwd``: int32 sums, exact), as do the VNNI and ARM64
dot-product kernels, so the product is the exact integer on every CPU onnxruntime runs on. Halving the
kernel to 7 bits (``reduce_range``, what the CNNs use, :mod:`avfuse.export.quantize`) would also fit int16 but doubles
the kernel's own rounding, the larger of the two errors here. What u8u8 costs: measured on an AVX2 CPU, a
400 x 402 product took 1.5x the u8s8 time, still 0.8x the fp32 ``MatMul``'s. Frames in 7 bits instead
(u8s8 at full speed, also exact) doubled the 8-bit mode's error (0.48 against 0.26 below) and tripled the
16-bit mode's departure from the kernel's own rounding (0.037 against under 0.02).
:mod:`avfuse.export.int8_check` proves for every integer product of a file that no such pair can saturate.

Only standard ONNX operators are used, though the int8 file as a whole is for onnxruntime (OpenVINO's CPU
plugin wants constant GRU weights and ``onnx.reference`` lacks DequantizeLinear-17; TensorRT's parser has
no ``MatMulInteger``: the fp32 and fp16 files are the portable ones); onnxruntime fuses each
``MatMulInteger -> Cast -> Mul`` into its ``MatMulIntegerToFloat`` kernel (the scale products are kept
below a ``DequantizeLinear``, which it never constant-folds, so its fusion pattern survives). The power,
mel and log stay fp32.

The rounding of the kernel (and of 8-bit frames) leaks a little of each frame's energy into every band. Bands
that fp32 finds empty, above the cut-off of band-limited audio (8 kHz audio resampled to 16 kHz, AAC) or
between pure tones, sit at the log floor (about -13.8) there and well above it here: :func:`log_mel_change`
measures it, and ``avfuse export`` leaves the frontend's arithmetic fp32 where it passes
``MAX_LOG_MEL_CHANGE`` (``avfuse.export.export_cmd.quantize_frontend_checked``), with the DFT kernel built by
:func:`generated_kernel` when the session loads rather than stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from avfuse.export.graph import constant, drop_unused

log = logging.getLogger(__name__)

HI_SCALE = 1.0 / 127  # waveform in [-1, 1] -> hi in [-127, 127] (+128 zero point)
LO_SCALE = HI_SCALE / 254  # the remainder, within half a hi step -> [-127, 127]
ZERO_POINT = 128  # of the uint8 frames and of the uint8 kernel (levels -127..127 stored as 1..255)
KERNEL_LEVELS = 127
# mean |change| of the log-mel against fp32 on the calibration segments beyond which export keeps the frontend
# fp32: band-limited audio's empty bands, filled by the rounding's leak, moved the suite's 8 kHz set by 1.13
# (17% of its log-mel at the floor); its other six sets moved by 0.02-0.08, quiet tones by 0.26 (the tests')
MAX_LOG_MEL_CHANGE = 0.5


def dft_matmul(proto: onnx.ModelProto, scope: str) -> onnx.NodeProto | None:
    """The frontend's DFT product under ``scope``: ``MatMul(frames, kernel)`` with a constant kernel
    [n_fft, 2 * (n_fft // 2 + 1)] (the windowed cosine and sine rows)."""
    for node in proto.graph.node:
        if node.op_type == "MatMul" and node.name.startswith(scope):
            w = constant(proto, node.input[1])
            if w is not None and w.ndim == 2 and w.shape[0] >= 16 and w.shape[1] == 2 * (w.shape[0] // 2 + 1):
                return node
    return None


def integer_dft(proto: onnx.ModelProto, scope: str, *, bits: int = 8) -> bool:
    """Replace the DFT ``MatMul`` under ``scope`` by the integer product (``bits`` 8: per-frame 8-bit frames;
    16: two 8-bit parts), in place. False (and the graph unchanged) when there is none."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    matmul = dft_matmul(proto, scope)
    if matmul is None:
        log.info("int8: no DFT product under %s; the frontend stays as it is", scope)
        return False
    w = constant(proto, matmul.input[1])  # [n_fft, channels]
    w_scale = np.abs(w).max(axis=0) / 127.0
    w_scale[w_scale == 0] = 1.0
    unit = float(w_scale.max()) / 2**30  # the per-channel scales as int32 steps of ``unit`` (exact to 1e-9)
    p = f"{scope}int8_dft/"
    scales = {"per_step": 1 / 127, "tiny": 1e-10} if bits == 8 else {"hi_scale": HI_SCALE, "lo_scale": LO_SCALE}
    consts = {k: np.array(v, np.float32) for k, v in scales.items()}
    consts.update(zero_point=np.array(ZERO_POINT, np.uint8), unit=np.array(unit, np.float32),
                  kernel=(np.clip(np.round(w / w_scale), -KERNEL_LEVELS, KERNEL_LEVELS) + ZERO_POINT).astype(np.uint8),
                  kernel_steps=np.round(w_scale / unit).astype(np.int32))
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if bits == 8 and opset >= 18:
        consts["last_axis"] = np.array([-1], np.int64)  # ReduceMax takes its axes as an input from opset 18
    proto.graph.initializer.extend(numpy_helper.from_array(v, p + k) for k, v in consts.items())
    if bits == 8:
        nodes = _per_frame(p, matmul.input[0], matmul.output[0], opset)
    else:
        nodes = _two_parts(p, matmul.input[0], matmul.output[0])
    at = list(proto.graph.node).index(matmul)
    proto.graph.node.remove(matmul)
    for offset, new in enumerate(nodes):
        proto.graph.node.insert(at + offset, new)
    drop_unused(proto, matmul.input[1])
    log.info("int8: %s (%d x %d DFT) now an integer product of %d-bit frames", matmul.name, *w.shape, bits)
    return True


def generated_kernel(proto: onnx.ModelProto, scope: str) -> bool:
    """Replace the DFT ``MatMul``'s constant kernel under ``scope`` by the nodes that build it when the session
    loads (onnxruntime folds them): the window times a table of cos and -sin of 2 pi m / n_fft, gathered at
    ``k n mod n_fft``. The file then holds 3 n_fft numbers instead of 2 n_fft (n_fft / 2 + 1), and the kernel
    is fp32's to its last bit or two. False (nothing changed) when the kernel is not that DFT."""
    matmul = dft_matmul(proto, scope)
    if matmul is None:
        return False
    w = constant(proto, matmul.input[1]).astype(np.float64)  # [n_fft, 2 * n_freq]
    n_fft, n_freq = w.shape[0], w.shape[1] // 2
    window = w[:, 0]  # cos(0) = 1
    m = 2 * np.pi * np.arange(n_fft) / n_fft
    index = np.outer(np.arange(n_fft), np.arange(n_freq)) % n_fft
    rebuilt = np.concatenate([window[:, None] * np.cos(m)[index], -window[:, None] * np.sin(m)[index]], axis=1)
    if np.abs(rebuilt - w).max() > 1e-6 * np.abs(w).max():
        return False
    p = f"{scope}dft_kernel/"
    consts = {"window": window.reshape(-1, 1).astype(np.float32), "cos": np.cos(m).astype(np.float32),
              "neg_sin": (-np.sin(m)).astype(np.float32), "n_fft": np.array(n_fft, np.int64),
              "zero": np.array(0, np.int64), "one": np.array(1, np.int64), "n_freq": np.array(n_freq, np.int64),
              "column": np.array([-1, 1], np.int64), "row": np.array([1, -1], np.int64)}
    proto.graph.initializer.extend(numpy_helper.from_array(v, p + k) for k, v in consts.items())

    def node(op: str, out: str, inputs: list[str], **attrs) -> onnx.NodeProto:
        return helper.make_node(op, [p + i for i in inputs], [p + out], name=p + out, **attrs)

    nodes = [node("Range", "n", ["zero", "n_fft", "one"]), node("Range", "k", ["zero", "n_freq", "one"]),
             node("Reshape", "n_column", ["n", "column"]), node("Reshape", "k_row", ["k", "row"]),
             node("Mul", "nk", ["n_column", "k_row"]), node("Mod", "index", ["nk", "n_fft"]),
             node("Gather", "cos_nk", ["cos", "index"]), node("Gather", "sin_nk", ["neg_sin", "index"]),
             node("Concat", "table", ["cos_nk", "sin_nk"], axis=1), node("Mul", "kernel", ["window", "table"])]
    at = list(proto.graph.node).index(matmul)
    for offset, new in enumerate(nodes):
        proto.graph.node.insert(at + offset, new)
    old = matmul.input[1]
    matmul.input[1] = p + "kernel"
    drop_unused(proto, old)
    log.info("int8: %s keeps fp32 arithmetic; its %d x %d DFT kernel is built when the session loads", matmul.name,
             n_fft, 2 * n_freq)
    return True


def log_mel_change(fp32: Path, other: Path, scope: str, feeds: Iterable[dict[str, np.ndarray]]) -> float | None:
    """Mean absolute difference of the frontend's log-mel (the ``Log`` under ``scope``) between two files of
    one model on ``feeds``; None when the frontend has no such node."""
    import onnxruntime as ort

    def log_output(path: Path) -> tuple[ort.InferenceSession, str] | None:
        proto = onnx.load(str(path))
        name = next((n.output[0] for n in proto.graph.node if n.op_type == "Log" and n.name.startswith(scope)), None)
        if name is None:
            return None
        if name not in {o.name for o in proto.graph.output}:
            proto.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]), name

    a, b = log_output(fp32), log_output(other)
    if a is None or b is None:
        return None
    changes = [np.abs(a[0].run([a[1]], feed)[0] - b[0].run([b[1]], feed)[0]).mean() for feed in feeds]
    return float(np.mean(changes)) if changes else None


def _maker(p: str, frames: str):
    def node(op: str, out: str, inputs: list[str], **attrs) -> onnx.NodeProto:
        return helper.make_node(op, [i if i == frames else p + i for i in inputs], [p + out], name=p + out, **attrs)
    return node


def _scaled_product(node, part: str, a_scale: str) -> list[onnx.NodeProto]:
    """``MatMulInteger -> Cast -> Mul(., Mul(a_scale, kernel_scale))``: onnxruntime's MatMulIntegerToFloat
    pattern. The kernel scale comes from a ``DequantizeLinear``, which onnxruntime never constant-folds, so
    the scale product stays a node and the pattern survives its constant folding."""
    return [node("MatMulInteger", f"{part}_product", [part, "kernel", "zero_point", "zero_point"]),
            node("Cast", f"{part}_float", [f"{part}_product"], to=onnx.TensorProto.FLOAT),
            node("Mul", f"{part}_scale_product", [a_scale, "kernel_scale"]),
            node("Mul", f"{part}_spec", [f"{part}_float", f"{part}_scale_product"])]


def _per_frame(p: str, frames: str, out: str, opset: int) -> list[onnx.NodeProto]:
    node = _maker(p, frames)
    peak = (node("ReduceMax", "peak", ["magnitude", "last_axis"], keepdims=1) if opset >= 18  # axes an input
            else node("ReduceMax", "peak", ["magnitude"], axes=[-1], keepdims=1))  # [B, frames, 1]
    # frames / peak in [-1, 1], quantized at 1/127; not at 1 (peak/127 steps): onnxruntime drops a Mul by 1,
    # and with it the pattern of its MatMulIntegerToFloat fusion
    nodes = [node("Abs", "magnitude", [frames]), peak,
             node("Max", "level", ["peak", "tiny"]),  # a silent frame: any level gives zeros
             node("Div", "in_level", [frames, "level"]),
             node("QuantizeLinear", "q", ["in_level", "per_step", "zero_point"]),
             node("DequantizeLinear", "kernel_scale", ["kernel_steps", "unit"])]
    nodes += _scaled_product(node, "q", "per_step")
    nodes.append(helper.make_node("Mul", [p + "q_spec", p + "level"], [out], name=p + "spec"))
    return nodes


def _two_parts(p: str, frames: str, out: str) -> list[onnx.NodeProto]:
    node = _maker(p, frames)
    nodes = [node("QuantizeLinear", "hi", [frames, "hi_scale", "zero_point"]),
             node("DequantizeLinear", "hi_value", ["hi", "hi_scale", "zero_point"]),
             node("Sub", "rest", [frames, "hi_value"]),
             node("QuantizeLinear", "lo", ["rest", "lo_scale", "zero_point"]),
             node("DequantizeLinear", "kernel_scale", ["kernel_steps", "unit"])]
    nodes += _scaled_product(node, "hi", "hi_scale") + _scaled_product(node, "lo", "lo_scale")
    nodes.append(helper.make_node("Add", [p + "hi_spec", p + "lo_spec"], [out], name=p + "spec"))
    return nodes
