"""fp16 variant for GPUs: weights and activations in float16, the contract's inputs and outputs unchanged.

Uses onnxruntime's float16 converter (``onnxruntime.transformers.float16``, the same code as
onnxconverter-common's, shipped with onnxruntime: no extra package) with ``keep_io_types=True``, so
``frames`` stays uint8, ``audio``/``present`` float32 and the outputs float32.

Kept in fp32:
- the log-mel frontend (``/audio/frontend/...``): the power spectrum of a full-scale waveform reaches
  (n_fft/2)^2 = 4e4 per bin and more once mel bands sum bins, beyond fp16's 65504, and its log floor
  (1e-6) is below fp16's normal range. Only its fixed DFT kernel is stored in fp16 and cast back to
  fp32 in the graph, which halves the file's largest tensor without fp16 arithmetic;
- ``GRU`` nodes: onnxruntime's CPU provider has no fp16 GRU kernel, and recurrent state gains little
  from fp16 on GPUs;
- ``BatchNormalization`` on the log-mel input, which sits right after the fp32 frontend.
"""

from __future__ import annotations

import logging

import onnx

from avfuse.export.quantize import FP32_SCOPES, store_weight_only

log = logging.getLogger(__name__)

FP32_OPS = ("GRU",)


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of ``proto`` (metadata carried over)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)  # the converter edits its argument
    store_weight_only(copy, storage="fp16")  # the frontend's DFT kernel: fp16 storage, fp32 arithmetic
    blocked = [n.name for n in proto.graph.node if n.name.startswith((*FP32_SCOPES, "/audio/norm/"))]
    log.info("fp16: %d frontend nodes and all %s nodes stay fp32", len(blocked), "/".join(FP32_OPS))
    half = convert_float_to_float16(copy, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS],
                                    node_block_list=blocked)
    del half.metadata_props[:]
    half.metadata_props.extend(proto.metadata_props)
    packed = pack_fp16_tensors(half.graph)
    log.info("fp16: %d kB saved by storing float16 tensors as raw bytes", packed // 1024)
    topological_sort(half.graph)
    return half


def pack_fp16_tensors(graph: onnx.GraphProto) -> int:
    """The converter leaves float16 values in ``int32_data`` (a varint per value, up to 4 bytes each):
    store them as raw bytes (2 each). Returns the bytes saved."""
    from onnx import numpy_helper

    tensors = list(graph.initializer) + [a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute
                                         if a.name == "value"]
    saved = 0
    for t in tensors:
        if t.data_type == onnx.TensorProto.FLOAT16 and len(t.int32_data):
            before = t.ByteSize()
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
            saved += before - t.ByteSize()
    return saved


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so each node comes after the producers of its inputs (the converter appends
    its input casts at the end, which onnxruntime accepts but the ONNX checker does not)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            raise ValueError(f"graph has a cycle or a missing input at node {rest[0].name!r}")
        for n in done:
            ready.update(n.output)
        ordered += done
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
