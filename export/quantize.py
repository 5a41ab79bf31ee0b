"""int8 variant: onnxruntime static quantization in QDQ format, calibrated on training segments.

What runs in int8: the convolutions of the image CNN and the audio CNN (but their stems, below) with the
activation, pooling and squeeze-excite ops between them (weights int8 per channel in 7 bits so that no CPU's
kernel saturates, activations uint8 per tensor, MinMax calibration), and the log-mel frontend's DFT as an
integer matrix product (uint8 x uint8, exact on every CPU) of the frames, each scaled to its peak in 8 bits
(or held to 16 bits in two 8-bit parts; :mod:`avfuse.export.int8_dft`). :mod:`avfuse.export.int8_check` proves that no
integer product of the file can saturate on any CPU.

What stays fp32 arithmetic, and why:
- every GRU (text encoder, sequential fusion): recurrent state would accumulate activation quantization
  error step by step, and ``GRU`` is not in the quantized op types;
- the projection and fusion layers (``Gemm``, ``MatMul``): at these sizes (a few hundred inputs, one
  segment per call) onnxruntime's int8 ``QGemm`` with its quantize and dequantize steps took longer than
  the fp32 ``Gemm`` (35 against 11 us for the audio projection at batch 1);
- the log-mel frontend's power, mel ``MatMul`` and log: the power spectrum spans ~1e-6..1e5, which 8-bit
  per-tensor activations cannot hold, so quiet bands would collapse to the log floor;
- each CNN's stem convolution (over the 3 RGB channels; over the one log-mel channel) with the activation
  and pool after it: onnxruntime's int8 convolution over so few input channels is several times slower
  than its fp32 one (the audio stem: 870 against 115 us at batch 8), and quantizing after the pool
  touches a quarter of the values. onnxruntime would move the QuantizeLinear above a max-pool and run
  the pool in uint8 without its blocked layout (12x slower), so the stem's ``Relu -> MaxPool`` is
  reordered to ``MaxPool -> Relu`` (the same values) before quantizing, see :func:`pool_before_relu`;
- the image encoder's fixed texture filters (``/video/texture/``, one grey channel in, see
  ``avfuse.models.image.TextureBank``): a convolution over one channel, like the stems, and energies whose
  logarithm spans what 8 bits cannot;
- a whole CNN with activations onnxruntime has no int8 kernel for (MobileNetV3's hard-swish), see
  :func:`fp32_cnns`: its kernels are stored int8 instead.

The large constants of the fp32 parts (GRU input weights ``W``, projection and fusion weights, the mel
matrix, the token embeddings, the kernels of such a CNN) are stored int8 with a scale per row (per filter
for a convolution) and rebuilt to fp32 when the session loads (weight-only, :func:`store_weight_only`):
the file is about 3x smaller while the arithmetic keeps full precision; the GRUs' recurrent weights ``R``
stay fp32.

``quant_pre_process`` (symbolic shape inference and ORT's basic graph optimisations) runs first, as
onnxruntime recommends. The node names from the TorchScript exporter are module paths, which is how
the frontend and the CNNs are recognised.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from avfuse.export.graph import constant, consumers, drop_unused
from avfuse.export.int8_dft import generated_kernel, integer_dft
from avfuse.export.verify import Inputs
from avfuse.stream.errors import ModelError

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv",)  # inside CNN_SCOPES
IMAGE_SCOPE = "/video/backbone/"  # the per-frame image CNN
CNN_SCOPES = (IMAGE_SCOPE, "/audio/cnn/")  # ... and the log-mel CNN
CNN_ACTIVATION_OPS = ("Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Mul", "Add", "MaxPool", "AveragePool",
                      "GlobalAveragePool")
NO_INT8_KERNEL = ("HardSwish", "HardSigmoid")  # activations onnxruntime runs only in fp32
STEM_CHANNELS = 4  # a Conv of either CNN over this many input channels or fewer stays fp32
FP32_SCOPES = ("/audio/frontend/",)  # node-name prefixes whose activations stay fp32
EXACT_AUDIO_BITS = 32  # quantize_int8's audio_bits for a log-mel frontend left wholly fp32
# Constants stored weight-only (compactly, rebuilt to fp32 in the graph): node-name prefix -> op -> inputs.
WEIGHT_ONLY = {"/audio/frontend/": {"Conv": (1,), "MatMul": (0, 1)},  # DFT kernel, mel matrix
               "/text/": {"Gather": (0,)}}  # the token embedding table (grows with the vocabulary)
# int8 also stores weight-only each GRU's input weights W (its recurrent weights R stay fp32) and the weights of
# the projection and fusion layers (Gemm, MatMul).
INT8_WEIGHT_ONLY = {**WEIGHT_ONLY, "": {"GRU": (1,), "Gemm": (1,), "MatMul": (1,)}}


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over Inputs, one row per call."""

    def __init__(self, inputs: Inputs) -> None:
        self._rows = iter(range(len(inputs)))
        self._inputs = inputs

    def get_next(self) -> dict[str, np.ndarray] | None:
        i = next(self._rows, None)
        return None if i is None else self._inputs.feed(slice(i, i + 1))

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def _stem_convs(proto: onnx.ModelProto) -> list[str]:
    """Each CNN's convolutions over at most STEM_CHANNELS input channels (the image CNN's first layer, over
    RGB; the audio CNN's, over the one log-mel channel)."""
    dims = {i.name: list(i.dims) for i in proto.graph.initializer}
    stems = []
    for n in proto.graph.node:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if n.op_type == "Conv" and n.name.startswith(CNN_SCOPES) and len(dims.get(n.input[1], [])) > 1 \
                and dims[n.input[1]][1] <= STEM_CHANNELS and group == 1:
            stems.append(n.name)
    return stems


def _stem_tails(proto: onnx.ModelProto, stems: list[str]) -> list[str]:
    """The activation and pooling ops that follow each stem convolution, up to the next convolution: kept in
    fp32 with it, so that onnxruntime runs them fused in its blocked fp32 layout instead of quantizing the
    stem's full-resolution output before them."""
    readers, by_name = consumers(proto), {n.name: n for n in proto.graph.node}
    tails = []
    for name in stems:
        node = by_name[name]
        while len(nxt := readers.get(node.output[0], [])) == 1 and nxt[0].op_type in CNN_ACTIVATION_OPS:
            node = nxt[0]
            tails.append(node.name)
    return tails


def _shape_as(proto: onnx.ModelProto, name: str, like: str) -> None:
    """Give value ``name`` the recorded type and shape of ``like`` (dropping its own if ``like`` has none)."""
    infos = {v.name: v for v in proto.graph.value_info}
    if name in infos:
        proto.graph.value_info.remove(infos[name])
    if like in infos:
        proto.graph.value_info.append(onnx.helper.make_value_info(name, infos[like].type))


def pool_before_relu(proto: onnx.ModelProto) -> int:
    """Swap each stem's ``Relu -> MaxPool`` to ``MaxPool -> Relu`` (the same values: ReLU is monotonic), in
    place; returns how many were swapped.

    The first int8 layer needs its input quantized right after the stem's pool. onnxruntime moves a
    QuantizeLinear that follows a MaxPool above it (QDQ propagation), which would run the pool on the
    stem's full-resolution output in uint8 and unblocked (measured 12x slower than the fp32 pool). A Relu
    between the pool and the QuantizeLinear stops that; onnxruntime later folds the Relu into the
    QuantizeLinear, so the pool runs in fp32 and only its 4x smaller output is quantized."""
    readers, by_name = consumers(proto), {n.name: n for n in proto.graph.node}
    swapped = 0
    for name in _stem_convs(proto):
        relu = readers.get(by_name[name].output[0], [])
        if len(relu) != 1 or relu[0].op_type != "Relu":
            continue
        pool = readers.get(relu[0].output[0], [])
        if len(pool) != 1 or pool[0].op_type != "MaxPool" or len(pool[0].output) != 1:
            continue
        relu, pool = relu[0], pool[0]
        conv_out, relu_out, pool_out = relu.input[0], relu.output[0], pool.output[0]
        pool.input[0], pool.output[0] = conv_out, relu_out
        relu.input[0], relu.output[0] = relu_out, pool_out
        _shape_as(proto, relu_out, pool_out)  # relu_out now holds the pooled values
        nodes = list(proto.graph.node)  # keep the node list topologically sorted: the pool now runs first
        i, j = nodes.index(relu), nodes.index(pool)
        nodes[i], nodes[j] = nodes[j], nodes[i]
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
        swapped += 1
    return swapped


def excluded_nodes(proto: onnx.ModelProto) -> list[str]:
    """Nodes left in fp32: the log-mel frontend and each CNN's stem convolution with its activation and pool."""
    frontend = [n.name for n in proto.graph.node if n.name.startswith(FP32_SCOPES)]
    stems = _stem_convs(proto)
    return sorted(set(frontend) | set(stems) | set(_stem_tails(proto, stems)))


def _stored(w: np.ndarray, base: str, storage: str) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto], int]:
    """Initializers holding ``w`` compactly and the nodes that rebuild the fp32 kernel from them.

    int8 is rebuilt with ``Cast`` and ``Mul`` (by a scale per row of the last axis), not
    ``DequantizeLinear``: onnxruntime never constant-folds a ``DequantizeLinear`` (it keeps them for
    its QDQ fusions), so that kernel would be rebuilt on every call and the consuming Conv/MatMul/GRU
    would lose its pre-packed weights; ``Cast`` and ``Mul`` of constants are folded when the session loads.
    """
    rebuilt = base + "_fp32"
    if storage == "fp16":
        half = w.astype(np.float16)
        node = helper.make_node("Cast", [base], [rebuilt], name=base + "/Cast", to=onnx.TensorProto.FLOAT)
        return [numpy_helper.from_array(half, base)], [node], half.nbytes
    axes = tuple(range(1, w.ndim)) if w.ndim == 4 else -1  # a 2-D convolution's kernel: one scale per filter
    scale = (np.abs(w).max(axis=axes, keepdims=True) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    nodes = [helper.make_node("Cast", [base], [base + "_cast"], name=base + "/Cast", to=onnx.TensorProto.FLOAT),
             helper.make_node("Mul", [base + "_cast", base + "_scale"], [rebuilt], name=base + "/Scale")]
    return [numpy_helper.from_array(q, base), numpy_helper.from_array(scale, base + "_scale")], nodes, \
        q.nbytes + scale.nbytes


def _weight_only_input(proto: onnx.ModelProto, node: onnx.NodeProto, rules: dict, min_size: int
                       ) -> tuple[int, np.ndarray] | None:
    """(input index, array) of the first fp32 constant of ``node`` to store compactly."""
    indices = next((ops[node.op_type] for prefix, ops in rules.items()
                    if node.name.startswith(prefix) and node.op_type in ops), ())
    for index in indices:
        found = constant(proto, node.input[index]) if index < len(node.input) else None
        if found is not None and found.dtype == np.float32 and found.size >= min_size:
            return index, found
    return None


def store_weight_only(proto: onnx.ModelProto, *, storage: str = "int8", rules: dict = WEIGHT_ONLY,
                      min_size: int = 256, exclude: tuple[str, ...] = ()) -> int:
    """Store the fp32 parts' large constants (by default the DFT kernel, mel matrix and token embeddings)
    compactly: ``int8`` with a scale per row of the last axis or ``fp16``; ``rules`` maps a node-name
    prefix to {op type: input indices}; nodes whose names start with an ``exclude`` prefix keep theirs.

    The operation itself still runs in fp32 on fp32 activations (onnxruntime folds the rebuild when the
    session loads): only the stored kernel loses precision. Returns the bytes saved.
    """
    if storage not in ("int8", "fp16"):
        raise ValueError(f"storage must be int8 or fp16, got {storage!r}")
    saved = 0
    for node in list(proto.graph.node):
        found = None if exclude and node.name.startswith(exclude) else _weight_only_input(proto, node, rules, min_size)
        if found is None:
            continue
        index, w = found
        base = f"{node.name}/weight_{storage}"
        tensors, rebuild, nbytes = _stored(w, base, storage)
        proto.graph.initializer.extend(tensors)
        old = node.input[index]
        node.input[index] = rebuild[-1].output[0]
        at = list(proto.graph.node).index(node)
        for offset, new in enumerate(rebuild):
            proto.graph.node.insert(at + offset, new)
        drop_unused(proto, old)  # the fp32 original, unless another node still reads it
        saved += w.nbytes - nbytes
        log.info("%s: %s kernel %s stored as %s (weight-only), %d kB saved", storage, node.name, w.shape, storage,
                 (w.nbytes - nbytes) // 1024)
    return saved


def fp32_cnns(proto: onnx.ModelProto) -> tuple[str, ...]:
    """The CNN scopes with activations onnxruntime has no int8 kernel for (MobileNetV3's hard-swish and
    hard-sigmoid): there each one would run in fp32 between a DequantizeLinear and a QuantizeLinear, and the
    int8 MobileNetV3-small ran at 0.8x its fp32 speed. Such a CNN keeps fp32 arithmetic (int8 storage)."""
    return tuple(s for s in CNN_SCOPES if any(n.name.startswith(s) and n.op_type in NO_INT8_KERNEL
                                              for n in proto.graph.node))


def nodes_to_quantize(proto: onnx.ModelProto) -> list[str]:
    """The CNNs' convolutions but their stems, and their activation ops (so int8 tensors flow from one
    convolution to the next instead of being dequantized around every ReLU, pool or SE multiply)."""
    exclude = set(excluded_nodes(proto))
    scopes = tuple(s for s in CNN_SCOPES if s not in fp32_cnns(proto))
    return [n.name for n in proto.graph.node if n.name not in exclude and scopes and n.name.startswith(scopes)
            and n.op_type in (*QUANTIZED_OPS, *CNN_ACTIVATION_OPS)]


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Inputs, *, per_channel: bool = True,
                  audio_bits: int = 8) -> None:
    """Write the int8 QDQ model for ``fp32_path`` to ``out_path`` (the caller renames it into place);
    ``audio_bits`` (8 or 16) is how the log-mel DFT quantizes its frames, see :mod:`avfuse.export.int8_dft`;
    32 leaves the whole log-mel frontend fp32, its constants too: the exact log-mel, for audio whose empty
    bands the integer DFT's rounding would fill (see ``avfuse.export.export_cmd``)."""
    write_int8(quantize_qdq(fp32_path, calibration, per_channel=per_channel), out_path, audio_bits=audio_bits)


def quantize_qdq(fp32_path: Path, calibration: Inputs, *, per_channel: bool = True) -> onnx.ModelProto:
    """The calibrated QDQ model of ``fp32_path``, before its frontend and constants are settled (``write_int8``)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    if len(calibration) == 0:
        raise ModelError("int8 calibration needs at least one segment")
    with tempfile.TemporaryDirectory(prefix="avfuse-int8-") as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "qdq.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        proto = onnx.load(str(pre))
        if pool_before_relu(proto):
            onnx.save_model(proto, str(pre))
        if not any(n.name.startswith(FP32_SCOPES) for n in proto.graph.node) and \
                any("audio" in n.input for n in proto.graph.node):
            log.warning("int8: no node under %s although the model reads audio: the log-mel frontend was "
                        "renamed? it will be quantized like the rest", "/".join(FP32_SCOPES))
        selected = nodes_to_quantize(proto)
        log.info("int8: calibrating on %d segments; quantizing %d of %d nodes", len(calibration), len(selected),
                 len(proto.graph.node))
        # uint8 activations with int8 weights (U8S8) is what onnxruntime's x86 kernels are fastest at; with
        # int8 activations its depthwise convolutions fell back to fp32 (measured 3x slower on MobileNet).
        # reduce_range: the weights in 7 bits (-64..64), so that a pair of byte products, 2 * 255 * 64 = 32,640,
        # fits the int16 that u8s8 kernels without VNNI sum pairs into (export/int8_check.py). With 8-bit weights
        # QLinearConv on an AVX2 CPU was off by up to 28 output steps; with 7 bits it is exact on every CPU, and
        # per-channel scales keep the extra rounding small (one bit less per filter).
        quantize_static(str(pre), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=sorted({*QUANTIZED_OPS, *CNN_ACTIVATION_OPS}), per_channel=per_channel,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_quantize=selected, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return onnx.load(str(out))


def write_int8(qdq: onnx.ModelProto, out_path: Path, *, audio_bits: int = 8) -> None:
    """Settle a copy of ``qdq``'s log-mel frontend (``audio_bits``, as ``quantize_int8``) and store its large
    constants compactly; write it to ``out_path``."""
    proto = onnx.ModelProto()
    proto.CopyFrom(qdq)
    kept_fp32 = fp32_cnns(proto)
    if kept_fp32:
        log.info("int8: %s keep fp32 arithmetic (activations without int8 kernels); their weights are stored int8",
                 ", ".join(kept_fp32))
    if audio_bits != EXACT_AUDIO_BITS:
        integer_dft(proto, FP32_SCOPES[0], bits=audio_bits)
    elif not generated_kernel(proto, FP32_SCOPES[0]):  # fp32 arithmetic, and its own DFT kernel, or else one in
        store_weight_only(proto, storage="fp16", rules={s: WEIGHT_ONLY[s] for s in FP32_SCOPES})  # fp16
    store_weight_only(proto, rules={**{s: {"Conv": (1,)} for s in kept_fp32}, **INT8_WEIGHT_ONLY},
                      exclude=FP32_SCOPES if audio_bits == EXACT_AUDIO_BITS else ())
    onnx.save_model(proto, str(out_path))
