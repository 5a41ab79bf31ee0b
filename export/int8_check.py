"""Prove that an int8 file's integer products give the exact integer on every CPU onnxruntime runs on.

onnxruntime's x86-64 kernels for uint8 x int8 (u8s8) products on CPUs without VNNI (AVX2, AVX-512 without
VNNI) multiply with ``vpmaddubsw``: each pair of adjacent byte products ``a[k] * b[k] + a[k+1] * b[k+1]``
is summed into a *saturating* int16 before it is widened. With VNNI (``vpdpbusd``) and on ARM64 (``sdot``,
``udot``) the sums are int32 and exact, so the same file gives other answers on other CPUs whenever a pair
can pass 32,767. Products of uint8 x uint8 (u8u8) widen both operands to 16 bits first (``vpmaddwd``) and
are exact everywhere.

The check needs no particular CPU: for each u8s8 product it bounds the worst pair from the stored weights
alone (the uint8 activation anywhere in 0..255, its raw byte, as the kernel sees it before zero-point
correction), so a machine with VNNI cannot hide a file that would saturate on one without.

Integer products in an avfuse int8 file: ``MatMulInteger`` (the log-mel DFT, :mod:`avfuse.export.int8_dft`) and
the QDQ convolutions that onnxruntime turns into ``QLinearConv`` (the CNNs, :mod:`avfuse.export.quantize`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from avfuse.export.graph import constant

INT16_MAX = 32767
UINT8_MAX = 255
# What a saturation-free file was shown to be exact on (by the bound above, not by running there).
EXACT_ON = ("x86-64 with VNNI", "x86-64 without VNNI (AVX2, AVX-512)", "ARM64")
_QDQ_PRODUCT_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True, kw_only=True)
class IntegerProduct:
    """One integer product of a file: ``kind`` u8s8 or u8u8 (or s8s8), and for u8s8 the largest int16 pair
    sum any uint8 input can give (``worst_pair``; 0 where the kernel widens first)."""

    node: str
    op: str
    kind: str
    worst_pair: int

    @property
    def saturates(self) -> bool:
        return self.worst_pair > INT16_MAX


def _kind(a: int, b: int) -> str:
    name = {onnx.TensorProto.UINT8: "u8", onnx.TensorProto.INT8: "s8"}
    return f"{name.get(a, '?')}{name.get(b, '?')}"


def worst_pair_sum(weights: np.ndarray, axis: int) -> int:
    """The largest |a1 * w1 + a2 * w2| over uint8 a1, a2 and any two weights of one output channel
    (``axis`` indexes the channels; every other axis is reduced)."""
    w = np.moveaxis(np.abs(weights.astype(np.int64)), axis, 0).reshape(weights.shape[axis], -1)
    if w.shape[1] < 2:
        return int(UINT8_MAX * w.max(initial=0))
    top2 = -np.sort(-w, axis=1)[:, :2]
    return int(UINT8_MAX * top2.sum(axis=1).max(initial=0))


def _types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value whose type is known (inputs, value_info, initializers, QuantizeLinear
    outputs, which take their zero point's type)."""
    types = {v.name: v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.value_info)}
    types.update({i.name: i.data_type for i in proto.graph.initializer})
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in types:
            types[node.output[0]] = types[node.input[2]]
    return types


def integer_products(proto: onnx.ModelProto) -> list[IntegerProduct]:
    """Every integer product in ``proto`` with its kind and worst u8s8 pair sum."""
    types = _types(proto)
    dequantized = {n.output[0]: n for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    found = []
    for node in proto.graph.node:
        if node.op_type == "MatMulInteger":
            a, b = types.get(node.input[0], 0), types.get(node.input[1], 0)
            w = constant(proto, node.input[1])
            found.append(_product(node, _kind(a, b), w, axis=-1))
        elif node.op_type in _QDQ_PRODUCT_OPS and len(node.input) > 1 and all(i in dequantized for i in node.input[:2]):
            x, w_node = dequantized[node.input[0]], dequantized[node.input[1]]
            w = constant(proto, w_node.input[0])
            if w is None:
                continue
            kind = _kind(types.get(x.input[0], 0), types.get(w_node.input[0], 0))
            axis = 0 if node.op_type == "Conv" else -1  # a Conv's output channels; a MatMul's output columns
            found.append(_product(node, kind, w, axis=axis))
    return found


def _product(node: onnx.NodeProto, kind: str, w: np.ndarray | None, *, axis: int) -> IntegerProduct:
    if kind != "u8s8":
        return IntegerProduct(node=node.name, op=node.op_type, kind=kind, worst_pair=0)
    if w is None:  # a u8s8 product of two activations: nothing bounds it
        return IntegerProduct(node=node.name, op=node.op_type, kind=kind, worst_pair=2 * UINT8_MAX * 128)
    return IntegerProduct(node=node.name, op=node.op_type, kind=kind, worst_pair=worst_pair_sum(w, axis % w.ndim))


def saturation_report(proto: onnx.ModelProto) -> dict:
    """The figures written into an int8 file's metadata (``avfuse.model["int8"]``) and shown by inspect."""
    products = integer_products(proto)
    u8s8 = [p for p in products if p.kind == "u8s8"]
    worst = max((p.worst_pair for p in u8s8), default=0)
    exposed = [p.node for p in products if p.saturates]
    return {"integer_products": len(products), "u8s8": len(u8s8), "u8u8": sum(p.kind == "u8u8" for p in products),
            "worst_u8s8_pair_sum": worst, "int16_max": INT16_MAX, "saturation_free": not exposed,
            "exact_on": list(EXACT_ON) if not exposed else ["x86-64 with VNNI", "ARM64"],
            "saturating_nodes": exposed[:10]}
