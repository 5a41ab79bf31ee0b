"""Read an avfuse ONNX model's self-description: labels, decode config, tokenizer, model info.

Uses onnxruntime only (the edge install has no ``onnx`` package). The metadata keys and the
inputs/outputs are the contract in DESIGN.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from stream.config import DecodeConfig, SegmentConfig, configs_from_metadata
from stream.errors import ModelError, SourceError
from stream.tokenize import Tokenizer

INPUTS = ("frames", "audio", "tokens", "present")
OUTPUTS = ("probs", "gates", "embedding")
REQUIRED_KEYS = ("avfuse.labels", "avfuse.decode", "avfuse.tokenizer")
KEY_PREFIX = "avfuse."


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    path: Path
    labels: tuple[str, ...]
    decode: DecodeConfig
    segment: SegmentConfig
    frames: int  # T
    samples: int  # S
    tokenizer: Tokenizer
    model: dict  # avfuse.model: encoders, fusion, dims
    metrics: dict
    version: str
    metadata: dict  # every avfuse.* key, JSON-decoded

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _json(meta: dict[str, str], key: str, path: Path):
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: metadata {key} is not valid JSON ({e})") from e


def spec_from_metadata(meta: dict[str, str], path: Path) -> ModelSpec:
    """Build a ModelSpec from the raw ``metadata_props`` strings of a model file."""
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{path}: not an avfuse model (metadata lacks {', '.join(missing)}); "
                         "export it with 'avfuse export'")
    labels = _json(meta, "avfuse.labels", path)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelError(f"{path}: avfuse.labels must be a non-empty JSON list of strings")
    dec = _json(meta, "avfuse.decode", path)
    decode, segment = configs_from_metadata(dec)
    try:
        frames, samples = int(dec["frames"]), int(dec.get("samples", decode.sample_rate * segment.window_s))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: avfuse.decode lacks a valid 'frames' count") from e
    decoded = {k: _json(meta, k, path) for k in meta if k.startswith(KEY_PREFIX)}
    return ModelSpec(
        path=path, labels=tuple(labels), decode=decode, segment=segment, frames=frames, samples=samples,
        tokenizer=Tokenizer.from_json(meta["avfuse.tokenizer"]), model=decoded.get("avfuse.model", {}),
        metrics=decoded.get("avfuse.metrics", {}), version=str(decoded.get("avfuse.version", "")),
        metadata=decoded,
    )


def check_io(session: ort.InferenceSession, path: Path) -> None:
    """The session's inputs and outputs must be the contract's names."""
    ins = {i.name for i in session.get_inputs()}
    outs = {o.name for o in session.get_outputs()}
    if set(INPUTS) - ins or set(OUTPUTS) - outs:
        raise ModelError(f"{path}: inputs {sorted(ins)} / outputs {sorted(outs)} do not match the avfuse "
                         f"contract: inputs {list(INPUTS)}, outputs {list(OUTPUTS)}")


def metadata_session(path: Path) -> ort.InferenceSession:
    """A CPU session with graph optimisation off: enough to read the metadata and the inputs/outputs,
    without the optimisation passes the serving session runs anyway."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelError(f"{path}: onnxruntime cannot load this file ({type(e).__name__}: {e})") from e


def read_spec(path: str | Path) -> ModelSpec:
    """Open ``path`` with onnxruntime (CPU) just to read its metadata and check its inputs/outputs."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: model file not found")
    session = metadata_session(path)
    check_io(session, path)
    return spec_from_metadata(dict(session.get_modelmeta().custom_metadata_map), path)
