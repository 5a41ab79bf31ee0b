"""int8 variant: onnxruntime static quantization in QDQ format, calibrated on training segments.

What is quantized: the ``Conv``, ``MatMul`` and ``Gemm`` nodes of the image CNN, the audio CNN and the
projection / fusion layers, and the activation, pooling and squeeze-excite ops inside the two CNNs
(weights int8 per channel, activations uint8 per tensor, MinMax calibration).

What stays fp32, and why:
- every GRU's arithmetic (text encoder, sequential fusion): recurrent state would accumulate activation
  quantization error step by step, and ``GRU`` is not in the quantized op types. Only its input weights
  ``W`` are stored int8 weight-only (below); the recurrent weights ``R`` stay fp32;
- the log-mel frontend's activations (``/audio/frontend/...``, a DFT ``Conv`` and the mel ``MatMul``):
  its power spectrum spans ~1e-6..1e5, which 8-bit per-tensor activations cannot hold, so quiet
  bands would collapse to the log floor. Its fixed DFT kernel and mel matrix are instead stored as
  int8 with a per-row scale, rebuilt to fp32 in front of the fp32 operation (weight-only; see
  :func:`store_weight_only`): the file gets smaller, the activations keep full precision;
- the image CNN's stem convolution (over the 3 normalised RGB channels): onnxruntime's int8
  convolution over so few channels is slower than its fp32 one, and quantizing full-resolution frames
  costs another pass, while its weights are a few hundred numbers (all of the image CNN in int8 ran at
  0.7x the fp32 model's speed). The audio CNN's stem (1 channel) is quantized: its input is a small
  log-mel image, and left in fp32 its ReLU/max-pool would run on uint8 anyway (onnxruntime moves the
  QuantizeLinear above the pool) in a slow NCHW uint8 max-pool instead of the fused NHWC one.

``quant_pre_process`` (symbolic shape inference and ORT's basic graph optimisations) runs first, as
onnxruntime recommends. The node names from the TorchScript exporter are module paths, which is how
the frontend is recognised.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from export.verify import Inputs
from stream.errors import ModelError

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
IMAGE_SCOPE = "/video/backbone/"  # the per-frame image CNN
CNN_SCOPES = (IMAGE_SCOPE, "/audio/cnn/")  # ... and the log-mel CNN
CNN_ACTIVATION_OPS = ("Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Mul", "Add", "MaxPool", "AveragePool",
                      "GlobalAveragePool")
STEM_CHANNELS = 4  # a Conv of the image CNN over this many input channels or fewer stays fp32
FP32_SCOPES = ("/audio/frontend/",)  # node-name prefixes whose activations stay fp32
# Constants stored weight-only (compactly, rebuilt to fp32 in the graph): node-name prefix -> op -> inputs.
WEIGHT_ONLY = {"/audio/frontend/": {"Conv": (1,), "MatMul": (0, 1)},  # DFT kernel, mel matrix
               "/text/": {"Gather": (0,)}}  # the token embedding table (grows with the vocabulary)
# int8 also stores each GRU's input weights W (input 1) weight-only; its recurrent weights R stay fp32.
INT8_WEIGHT_ONLY = {**WEIGHT_ONLY, "": {"GRU": (1,)}}


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
    """The image CNN's convolutions over at most STEM_CHANNELS input channels (its first layer, over RGB)."""
    dims = {i.name: list(i.dims) for i in proto.graph.initializer}
    stems = []
    for n in proto.graph.node:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if n.op_type == "Conv" and n.name.startswith(IMAGE_SCOPE) and len(dims.get(n.input[1], [])) > 1 \
                and dims[n.input[1]][1] <= STEM_CHANNELS and group == 1:
            stems.append(n.name)
    return stems


def excluded_nodes(proto: onnx.ModelProto) -> list[str]:
    """Nodes left in fp32: the log-mel frontend and the image CNN's stem convolution."""
    frontend = [n.name for n in proto.graph.node if n.name.startswith(FP32_SCOPES)]
    return sorted(set(frontend) | set(_stem_convs(proto)))


def _const_tensor(proto: onnx.ModelProto, name: str) -> tuple[str, np.ndarray] | None:
    """The fp32 array behind ``name`` if it is an initializer or a Constant node's output."""
    for init in proto.graph.initializer:
        if init.name == name:
            return "initializer", numpy_helper.to_array(init)
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return "constant", numpy_helper.to_array(attr.t)
    return None


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
    scale = (np.abs(w).max(axis=-1, keepdims=True) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    nodes = [helper.make_node("Cast", [base], [base + "_cast"], name=base + "/Cast", to=onnx.TensorProto.FLOAT),
             helper.make_node("Mul", [base + "_cast", base + "_scale"], [rebuilt], name=base + "/Scale")]
    return [numpy_helper.from_array(q, base), numpy_helper.from_array(scale, base + "_scale")], nodes, \
        q.nbytes + scale.nbytes


def _weight_only_input(proto: onnx.ModelProto, node: onnx.NodeProto, rules: dict, min_size: int
                       ) -> tuple[int, str, np.ndarray] | None:
    """(input index, "initializer" | "constant", array) of the first fp32 constant of ``node`` to store compactly."""
    indices = next((ops[node.op_type] for prefix, ops in rules.items()
                    if node.name.startswith(prefix) and node.op_type in ops), ())
    for index in indices:
        found = _const_tensor(proto, node.input[index]) if index < len(node.input) else None
        if found is not None and found[1].dtype == np.float32 and found[1].size >= min_size:
            return index, *found
    return None


def store_weight_only(proto: onnx.ModelProto, *, storage: str = "int8", rules: dict = WEIGHT_ONLY,
                      min_size: int = 256) -> int:
    """Store the fp32 parts' large constants (by default the DFT kernel, mel matrix and token embeddings)
    compactly: ``int8`` with a scale per row of the last axis or ``fp16``; ``rules`` maps a node-name
    prefix to {op type: input indices}.

    The operation itself still runs in fp32 on fp32 activations (onnxruntime folds the rebuild when the
    session loads): only the stored kernel loses precision. Returns the bytes saved.
    """
    if storage not in ("int8", "fp16"):
        raise ValueError(f"storage must be int8 or fp16, got {storage!r}")
    saved = 0
    producers = {o: n for n in proto.graph.node for o in n.output}
    for node in list(proto.graph.node):
        found = _weight_only_input(proto, node, rules, min_size)
        if found is None:
            continue
        index, kind, w = found
        base = f"{node.name}/weight_{storage}"
        tensors, rebuild, nbytes = _stored(w, base, storage)
        proto.graph.initializer.extend(tensors)
        old = node.input[index]
        node.input[index] = rebuild[-1].output[0]
        at = list(proto.graph.node).index(node)
        for offset, new in enumerate(rebuild):
            proto.graph.node.insert(at + offset, new)
        if not any(old in n.input for n in proto.graph.node):  # drop the fp32 original
            if kind == "initializer":
                keep = [i for i in proto.graph.initializer if i.name != old]
                del proto.graph.initializer[:]
                proto.graph.initializer.extend(keep)
            else:
                proto.graph.node.remove(producers[old])
        saved += w.nbytes - nbytes
        log.info("%s: %s kernel %s stored as %s (weight-only), %d kB saved", storage, node.name, w.shape, storage,
                 (w.nbytes - nbytes) // 1024)
    return saved


def nodes_to_quantize(proto: onnx.ModelProto) -> list[str]:
    """Conv/MatMul/Gemm anywhere but the fp32 parts, and the CNNs' activation ops (so int8 tensors flow from
    one convolution to the next instead of being dequantized around every ReLU, pool or SE multiply)."""
    exclude = set(excluded_nodes(proto))
    return [n.name for n in proto.graph.node if n.name not in exclude and (
        n.op_type in QUANTIZED_OPS or (n.op_type in CNN_ACTIVATION_OPS and n.name.startswith(CNN_SCOPES)))]


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Inputs, *, per_channel: bool = True) -> None:
    """Write the int8 QDQ model for ``fp32_path`` to ``out_path`` (the caller renames it into place)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    if len(calibration) == 0:
        raise ModelError("int8 calibration needs at least one segment")
    with tempfile.TemporaryDirectory(prefix="avfuse-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        proto = onnx.load(str(pre))
        if not any(n.name.startswith(FP32_SCOPES) for n in proto.graph.node) and \
                any("audio" in n.input for n in proto.graph.node):
            log.warning("int8: no node under %s although the model reads audio: the log-mel frontend was "
                        "renamed? it will be quantized like the rest", "/".join(FP32_SCOPES))
        selected = nodes_to_quantize(proto)
        log.info("int8: calibrating on %d segments; quantizing %d of %d nodes", len(calibration), len(selected),
                 len(proto.graph.node))
        # uint8 activations with int8 weights (U8S8) is what onnxruntime's x86 kernels are fastest at; with
        # int8 activations its depthwise convolutions fell back to fp32 (measured 3x slower on MobileNet).
        quantize_static(str(pre), str(out_path), _Reader(calibration), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=sorted({*QUANTIZED_OPS, *CNN_ACTIVATION_OPS}), per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=selected,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    proto = onnx.load(str(out_path))
    store_weight_only(proto, rules=INT8_WEIGHT_ONLY)
    onnx.save_model(proto, str(out_path))
