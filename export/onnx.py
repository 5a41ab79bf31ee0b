"""PyTorch -> one self-describing ONNX file (the contract in ARCHITECTURE.md).

Exporter choice: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) with
``dynamic_axes`` built from the contract's input and output names. The dynamo exporter was tried
(torch 2.14, onnxscript 0.7): it does export this model, but took 34 s against 0.3 s for a small
config on this machine (it runs torch.export, decompositions and onnxscript rewrites), it names nodes
``node_Conv_374`` and keeps the module path only in per-node metadata, while the int8 step selects
nodes by module path (``/audio/frontend/...``, ``/video/backbone/...``), which the TorchScript exporter
puts in the node names; and on an early stand-in model it wrote a file onnxruntime refused (a value
named ``embedding`` by ``aten::embedding`` collided with the graph output ``embedding``). The GRU's
numerics are checked after every export anyway (export/verify.py), because exporters have shipped
silent GRU bugs.

Files are written to a temporary name in the destination folder and renamed when complete (and
verified), so a failed export never leaves a file that looks like a model.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

import avfuse
from avfuse.stream.errors import ModelError, OutputError
from avfuse.stream.infer import contract
from avfuse.stream.infer.contract import INPUTS, OUTPUTS
from avfuse.stream.infer.tokenize import Tokenizer

log = logging.getLogger(__name__)

MIN_OPSET = 17
DEFAULT_OPSET = 17
BATCH_AXIS = "batch"


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What goes into the metadata besides the weights: everything the runtime needs."""

    labels: tuple[str, ...]
    decode: dict  # avfuse.stream.media.config.decode_metadata output
    tokenizer: Tokenizer
    model: dict  # avfuse.model: encoders, fusion, dims, modalities, ...
    metrics: dict
    version: str = avfuse.__version__

    def metadata(self, *, precision: str = "fp32", opset: int = DEFAULT_OPSET) -> dict[str, str]:
        """The ``metadata_props`` of the exported file: every value a JSON string."""
        model = {**self.model, "precision": precision, "opset": opset, "exporter": "torch.onnx (torchscript)",
                 "torch": torch.__version__}
        values = {contract.LABELS: list(self.labels), contract.DECODE: self.decode, contract.MODEL: model,
                  contract.VERSION: self.version, contract.METRICS: self.metrics}
        meta = {k: json.dumps(v) for k, v in values.items()}
        meta[contract.TOKENIZER] = self.tokenizer.to_json()
        return meta


def model_info(model: nn.Module, *, decode: dict, tokenizer: Tokenizer | str, metrics: dict,
               trained_with: str = "") -> ModelInfo:
    """ModelInfo for an AvfuseNet (models/net.py) and the checkpoint fields saved beside it."""
    config = model.config
    tok = Tokenizer.from_json(tokenizer) if isinstance(tokenizer, str) else tokenizer
    if len(tok) != config.vocab_size or tok.max_len != config.max_tokens:
        raise ModelError(f"tokenizer (vocab {len(tok)}, max_len {tok.max_len}) does not match the model "
                         f"(vocab_size {config.vocab_size}, max_tokens {config.max_tokens})")
    for key, want in (("frames", config.frames), ("height", config.height), ("width", config.width),
                      ("sample_rate", config.sample_rate), ("samples", config.samples)):
        if int(decode.get(key, -1)) != want:
            raise ModelError(f"checkpoint decode config {key}={decode.get(key)!r} does not match the model's "
                             f"{key}={want}")
    description = {**model.describe(), "config": config.to_dict()}
    if trained_with:
        description["trained_with"] = trained_with
    return ModelInfo(labels=tuple(config.labels), decode=dict(decode), tokenizer=tok, model=description,
                     metrics=dict(metrics))


def example_inputs(config, batch: int, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the contract's dtypes and the model's shapes (tracing needs only shapes)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, config.frames, config.height, config.width, 3), generator=g,
                           dtype=torch.uint8)
    audio = torch.rand(batch, config.samples, generator=g) * 2 - 1
    tokens = torch.randint(0, config.vocab_size, (batch, config.max_tokens), generator=g)
    present = torch.ones(batch, 3)
    return frames, audio, tokens, present


def export_bytes(model: nn.Module, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Trace ``model`` (eval mode) to ONNX with a dynamic batch axis on every input and output."""
    if opset < MIN_OPSET:
        raise ModelError(f"opset {opset} is too old: avfuse models need opset >= {MIN_OPSET}")
    model = model.eval()
    buf = io.BytesIO()
    dynamic = {name: {0: BATCH_AXIS} for name in (*INPUTS, *OUTPUTS)}
    with warnings.catch_warnings():
        # The legacy exporter's deprecation notice, and its generic note about GRUs traced at batch > 1:
        # our GRU takes no initial state, and verify.py checks batch 1 and 5 against PyTorch.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*GRU.*", category=UserWarning)
        # nn.GRU's own shape checks, and LogMel reading the fixed audio length as a constant
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            torch.onnx.export(model, example_inputs(model.config, 2), buf, input_names=list(INPUTS),
                              output_names=list(OUTPUTS), dynamic_axes=dynamic, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        except RuntimeError as e:  # torch.onnx.OnnxExporterError (unsupported op) and tracing failures
            raise ModelError(f"torch.onnx.export cannot export this model at opset {opset}: {e}") from e
    proto = onnx.load_from_string(buf.getvalue())
    restore_unused_inputs(proto, model.config)
    return proto


def restore_unused_inputs(proto: onnx.ModelProto, config) -> None:
    """Every avfuse model has the same four inputs. The exporter drops inputs the graph never reads (the
    ``audio`` of a video+text model, say): put them back, unused, in the contract's order."""
    shapes = {"frames": (onnx.TensorProto.UINT8, [config.frames, config.height, config.width, 3]),
              "audio": (onnx.TensorProto.FLOAT, [config.samples]),
              "tokens": (onnx.TensorProto.INT64, [config.max_tokens]),
              "present": (onnx.TensorProto.FLOAT, [3])}
    have = {i.name: i for i in proto.graph.input}
    ordered = []
    for name in INPUTS:
        if name in have:
            ordered.append(have[name])
        else:
            dtype, dims = shapes[name]
            ordered.append(onnx.helper.make_tensor_value_info(name, dtype, [BATCH_AXIS, *dims]))
            log.info("input %r is not used by this model (modalities %s); kept for the contract", name,
                     list(config.modalities))
    others = [i for i in proto.graph.input if i.name not in INPUTS]
    del proto.graph.input[:]
    proto.graph.input.extend([*ordered, *others])


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    """Replace any avfuse.* metadata with ``metadata`` (other keys are kept)."""
    kept = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(contract.KEY_PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*kept, *sorted(metadata.items())]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "avfuse"
    proto.producer_version = avfuse.__version__
    return proto


def set_precision(proto: onnx.ModelProto, precision: str, extra: dict | None = None) -> None:
    """Record a variant's precision (and figures such as its held-out accuracy) in ``avfuse.model``."""
    for entry in proto.metadata_props:
        if entry.key == contract.MODEL:
            model = json.loads(entry.value)
            model["precision"] = precision
            model.update(extra or {})
            entry.value = json.dumps(model)
            return
    raise ModelError("the model has no avfuse.model metadata to update")


def check_output_path(path: Path) -> Path:
    """The destination's folder must exist; the file is created there (never in another folder)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: output folder {path.parent} does not exist")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name such as {path / 'model.onnx'}")
    return path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds, else delete it."""
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save(proto: onnx.ModelProto, path: Path) -> None:
    """One file, weights inside (no external data); models over protobuf's 2 GB limit are refused."""
    if proto.ByteSize() >= 2**31 - 1:
        raise ModelError(f"{path}: model is over 2 GB and cannot be one self-contained ONNX file")
    onnx.save_model(proto, str(path))


def export_model(model: nn.Module, info: ModelInfo, path: Path, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export ``model`` with its metadata to a ModelProto (not yet written); see export_cmd for the whole flow."""
    proto = export_bytes(model, opset=opset)
    set_metadata(proto, info.metadata(precision="fp32", opset=opset))
    log.info("exported %s: %d nodes, %d initializers", path.name, len(proto.graph.node),
             len(proto.graph.initializer))
    return proto
