"""Small ONNX graph helpers shared by the int8 steps: constants behind a name, who reads a value, and
dropping a constant nobody reads any more."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def constant(proto: onnx.ModelProto, name: str) -> np.ndarray | None:
    """The array behind ``name`` if it is an initializer or a Constant node's output, else None."""
    for init in proto.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            return None if value is None else numpy_helper.to_array(value)
    return None


def consumers(proto: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """{value name: the nodes that read it}."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def drop_unused(proto: onnx.ModelProto, name: str) -> None:
    """Remove the initializer or Constant node ``name`` if no node reads it any more."""
    if any(name in n.input for n in proto.graph.node):
        return
    keep = [i for i in proto.graph.initializer if i.name != name]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    for node in list(proto.graph.node):
        if node.op_type == "Constant" and node.output[0] == name:
            proto.graph.node.remove(node)
