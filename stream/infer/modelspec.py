"""Read an avfuse ONNX model's self-description: labels, decode config, tokenizer, model info.

Uses onnxruntime only (the edge install has no ``onnx`` package). The metadata keys and the
inputs/outputs are the contract in ARCHITECTURE.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import onnxruntime as ort

from avfuse.stream.errors import ConfigError, ModelError
from avfuse.stream.infer.contract import (
    DECODE,
    INPUTS,
    KEY_PREFIX,
    LABELS,
    METRICS,
    MODEL,
    OUTPUTS,
    REQUIRED_KEYS,
    TOKENIZER,
    VERSION,
)
from avfuse.stream.infer.tokenize import Tokenizer
from avfuse.stream.media.config import (
    DecodeConfig,
    SegmentConfig,
    configs_from_metadata,
    frames_per_window,
    samples_per_window,
)
from avfuse.stream.media.segment import MODALITIES

MAX_SEGMENT_BYTES = 1 << 30  # one segment's model inputs; a batch of them is allocated at warm-up


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
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an int over Python's digit limit, deep nesting
        raise ModelError(f"{path}: metadata {key} is not valid JSON ({e})") from e


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(path: Path, key: str, value: object, allowed: str) -> ModelError:
    """The one error for a metadata value: the key, the bad value and what is allowed."""
    return ModelError(f"{path}: {key} must be {allowed}, got {_show(value)}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, float) or (_is_int(value) and abs(value) < 2**63)  # a float() that cannot overflow


def _is_str(value: object) -> TypeGuard[str]:
    return isinstance(value, str)


def _is_strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


_Check = tuple[Callable[[object], bool], str]  # a value's test, and what it must be (for the error)

# avfuse.decode: what each key must be, checked before any value is used; its ranges are DecodeConfig's
# and SegmentConfig's (and frames / samples must be what the segmenter cuts from them).
_DECODE_KEYS: dict[str, _Check] = {
    "fps": (_is_number, "a number"), "height": (_is_int, "an integer"),
    "width": (_is_int, "an integer"), "sample_rate": (_is_int, "an integer"),
    "window_s": (_is_number, "a number"), "hop_s": (_is_number, "a number"),
    "frames": (_is_int, "an integer")}
_DECODE_OPTIONAL: dict[str, _Check] = {
    "samples": (_is_int, "an integer"), "resize": (_is_str, "a string"),
    "min_coverage": (_is_number, "a number")}
# avfuse.model describes the network (shown by inspect); the keys avfuse writes have these types, others are free.
_MODEL_KEYS: dict[str, _Check] = {
    "encoders": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                 "a JSON object of modality: encoder description (strings)"),
    "modalities": (lambda v: _is_strings(v) and set(v) <= set(MODALITIES), f"a JSON list of {list(MODALITIES)}"),
    "fusion": (_is_str, "a string"), "precision": (_is_str, "a string"),
    "dim": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "parameters": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "num_classes": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "opset": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "config": (lambda v: isinstance(v, dict), "a JSON object"),
    "dims": (lambda v: isinstance(v, dict), "a JSON object"),
}


def _labels(value: object, path: Path) -> tuple[str, ...]:
    if not _is_strings(value) or not value or not all(value) or len(set(value)) != len(value):
        raise _bad(path, LABELS, value, "a non-empty JSON list of distinct, non-empty strings")
    return tuple(value)


def _configs(dec: object, path: Path) -> tuple[DecodeConfig, SegmentConfig, int, int]:
    """avfuse.decode checked key by key, then the configs it rebuilds, T and S: nothing is sized from it
    before this returns."""
    if not isinstance(dec, dict):
        raise _bad(path, DECODE, dec, "a JSON object")
    missing = [key for key in _DECODE_KEYS if key not in dec]
    if missing:
        raise ModelError(f"{path}: avfuse.decode lacks {', '.join(missing)} (it needs {', '.join(_DECODE_KEYS)})")
    for key, (ok, allowed) in (_DECODE_KEYS | _DECODE_OPTIONAL).items():
        if key in dec and not ok(dec[key]):
            raise _bad(path, f"avfuse.decode {key}", dec[key], allowed)
    try:
        decode, segment = configs_from_metadata(dec)
    except ConfigError as e:  # the range error of DecodeConfig / SegmentConfig, wrapped there as the cause
        raise ModelError(f"{path}: avfuse.decode {e.__cause__ or e}") from e
    frames, samples = frames_per_window(decode, segment), samples_per_window(decode, segment)
    if dec["frames"] != frames:
        raise _bad(path, "avfuse.decode frames", dec["frames"], f"round(fps x window_s) = {frames}")
    if dec.get("samples", samples) != samples:
        raise _bad(path, "avfuse.decode samples", dec["samples"], f"sample_rate x window_s = {samples}")
    size = frames * decode.height * decode.width * 3 + samples * 4  # uint8 RGB frames, float32 audio
    if size > MAX_SEGMENT_BYTES:
        raise ModelError(f"{path}: avfuse.decode asks for {size / 2**20:.0f} MiB per segment ({frames} frames of "
                         f"{decode.width}x{decode.height}, {samples} samples); at most {MAX_SEGMENT_BYTES >> 20} MiB")
    return decode, segment, frames, samples


def _model(value: object, labels: tuple[str, ...], path: Path) -> dict:
    if not isinstance(value, dict):
        raise _bad(path, MODEL, value, "a JSON object")
    for key, (ok, allowed) in _MODEL_KEYS.items():
        if key in value and not ok(value[key]):
            raise _bad(path, f"avfuse.model {key}", value[key], allowed)
    if value.get("num_classes", len(labels)) != len(labels):
        raise _bad(path, "avfuse.model num_classes", value["num_classes"],
                   f"the number of avfuse.labels ({len(labels)})")
    return value


def _tokenizer(text: str, path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_json(text)
    except ModelError as e:
        raise ModelError(f"{path}: avfuse.tokenizer: {e}") from e


def spec_from_metadata(meta: dict[str, str], path: Path) -> ModelSpec:
    """Build a ModelSpec from the raw ``metadata_props`` strings of a model file. Every value is checked
    (type, range, agreement with the others) before anything is sized from it: one ModelError otherwise."""
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{path}: not an avfuse model (metadata lacks {', '.join(missing)}); "
                         "export it with 'avfuse export'")
    decoded = {k: _json(meta, k, path) for k in meta if k.startswith(KEY_PREFIX)}
    labels = _labels(decoded[LABELS], path)
    decode, segment, frames, samples = _configs(decoded[DECODE], path)
    metrics, version = decoded.get(METRICS, {}), decoded.get(VERSION, "")
    if not isinstance(metrics, dict):
        raise _bad(path, METRICS, metrics, "a JSON object")
    if not isinstance(version, str):
        raise _bad(path, VERSION, version, "a string")
    return ModelSpec(
        path=path, labels=labels, decode=decode, segment=segment, frames=frames, samples=samples,
        tokenizer=_tokenizer(meta[TOKENIZER], path),
        model=_model(decoded.get(MODEL, {}), labels, path), metrics=metrics, version=version,
        metadata=decoded,
    )


def _static(dim: object) -> int | None:
    return dim if _is_int(dim) else None  # onnxruntime gives a symbolic dimension as a string or None


def check_shapes(session: ort.InferenceSession, spec: ModelSpec) -> None:
    """Each static dimension of the model's inputs and its probs output must be what the metadata says
    (the batch axis aside): fewer labels than probs columns is a load error, not an IndexError later."""
    want = {"frames": (spec.frames, spec.decode.height, spec.decode.width, 3), "audio": (spec.samples,),
            "tokens": (spec.tokenizer.max_len,), "present": (len(MODALITIES),), "probs": (spec.num_classes,)}
    source = {"frames": "avfuse.decode", "audio": "avfuse.decode", "tokens": "avfuse.tokenizer max_len",
              "present": "the three modalities", "probs": "avfuse.labels"}
    for io in (*session.get_inputs(), *session.get_outputs()):
        if io.name not in want:
            continue
        shape = list(io.shape)
        if len(shape) != 1 + len(want[io.name]) or any(
                _static(d) is not None and d != w for d, w in zip(shape[1:], want[io.name], strict=True)):
            raise ModelError(f"{spec.path}: {io.name} has shape {shape}, but {source[io.name]} gives "
                             f"[batch, {', '.join(map(str, want[io.name]))}]")


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
        raise ModelError(f"{path}: model file not found")
    session = metadata_session(path)
    check_io(session, path)
    spec = spec_from_metadata(dict(session.get_modelmeta().custom_metadata_map), path)
    check_shapes(session, spec)
    return spec


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read once per version of the file: the same path, inode, mtime and
    size give the digest already computed, so a run that names its model in several places hashes it once."""
    st = os.stat(path)
    return _sha256(os.fspath(path), st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, _inode: int, _mtime_ns: int, _size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
