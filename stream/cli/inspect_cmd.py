"""``avfuse inspect model.onnx``: what a model file expects, what it returns and where it can run.

Needs neither torch nor the ``onnx`` package (the edge install has onnxruntime only): the metadata comes
from :mod:`avfuse.stream.infer.modelspec`, inputs and outputs from an onnxruntime session, and the opset from a few
lines of protobuf wire-format reading of the file's top-level fields.
"""

from __future__ import annotations

import argparse
import json
import logging
import mmap
from pathlib import Path

import onnxruntime as ort

from avfuse.stream.errors import ModelError
from avfuse.stream.infer.cpu import cpu_info
from avfuse.stream.infer.edge_report import describe as edge_describe
from avfuse.stream.infer.edge_report import edge_lines
from avfuse.stream.infer.modelspec import ModelSpec, metadata_session, read_spec

log = logging.getLogger(__name__)

_OPSET_FIELD = 8  # ModelProto.opset_import (repeated OperatorSetIdProto {1: domain, 2: version})
_NOT_COMPUTE = {"AzureExecutionProvider"}  # routes to a remote endpoint; runs nothing itself


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="an avfuse .onnx file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _varint(buf, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(buf, start: int = 0, end: int | None = None):
    """Yield (field number, wire type, value) of one protobuf message; LEN values as (offset, length)."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        value: int | tuple[int, int] | None
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = (pos, length), pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("field runs past the end of the file")
        yield number, wire, value


def read_opsets(path: Path) -> dict[str, int]:
    """The operator sets a model imports, e.g. ``{"ai.onnx": 17}``, read straight from the file."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        opsets: dict[str, int] = {}
        for number, wire, value in _fields(buf):
            if number != _OPSET_FIELD or wire != 2:
                continue
            offset, length = value
            domain, version = "", 0
            for sub, sub_wire, sub_value in _fields(buf, offset, offset + length):
                if sub == 1 and sub_wire == 2:
                    domain = bytes(buf[sub_value[0]: sub_value[0] + sub_value[1]]).decode()
                elif sub == 2 and sub_wire == 0:
                    version = sub_value
            opsets[domain or "ai.onnx"] = version
        return opsets


def runnable_providers(path: Path) -> dict[str, str]:
    """Each execution provider onnxruntime offers here, and whether a session on it accepts this model."""
    result: dict[str, str] = {}
    for provider in ort.get_available_providers():
        if provider in _NOT_COMPUTE:
            continue
        if provider == "TensorrtExecutionProvider":
            result[provider] = "available (engine is built at the first run)"
            continue
        try:
            session = ort.InferenceSession(str(path), providers=[provider])
        except Exception as e:  # onnxruntime's own exception types; the reason is what matters here
            log.debug("%s cannot load %s: %s", provider, path, e)
            result[provider] = f"cannot run it ({type(e).__name__})"
            continue
        result[provider] = "yes" if provider in session.get_providers() else "falls back to CPU"
    return result


def _io(path: Path) -> tuple[list[dict], list[dict], dict]:
    session = metadata_session(path)

    def rows(items):
        return [{"name": i.name, "type": i.type, "shape": list(i.shape)} for i in items]
    meta = session.get_modelmeta()
    producer = {"producer": meta.producer_name, "graph": meta.graph_name, "version": meta.version}
    return rows(session.get_inputs()), rows(session.get_outputs()), producer


def describe(path: Path) -> dict:
    """Everything ``inspect`` shows, as plain JSON-able data."""
    spec: ModelSpec = read_spec(path)
    inputs, outputs, producer = _io(path)
    try:
        opsets = read_opsets(path)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read the operator set imports ({e})") from e
    return {
        "path": str(path), "size_bytes": path.stat().st_size, "opsets": opsets, "producer": producer,
        "version": spec.version, "inputs": inputs, "outputs": outputs, "labels": list(spec.labels),
        "decode": spec.metadata["avfuse.decode"],
        "tokenizer": {"vocab": len(spec.tokenizer), "max_len": spec.tokenizer.max_len},
        "model": spec.model, "metrics": spec.metrics, "providers": runnable_providers(path),
        "edge": edge_describe(path),
    }


def _shape(shape: list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _flatten(metrics: dict, prefix: str = "", depth: int = 2) -> dict:
    """Scalar metrics with dotted keys (``val.accuracy``), nested dicts up to ``depth`` levels."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, bool | int | float | str):
            flat[prefix + key] = value
        elif isinstance(value, dict) and depth > 1:
            flat.update(_flatten(value, f"{prefix}{key}.", depth - 1))
    return flat


def int8_line(checks: object) -> str:
    """Which CPUs an int8 file's integer arithmetic was checked for, and its agreement with fp32 at export."""
    if not isinstance(checks, dict) or not isinstance(checks.get("exact_on"), list):
        risk = " (this CPU has no VNNI: its answers may differ)" if cpu_info().u8s8_saturates else ""
        return f"not checked for x86-64 CPUs without VNNI{risk}; re-export with this avfuse"
    line = "integer products exact on: " + ", ".join(str(c) for c in checks["exact_on"])
    agreement = checks.get("top1_agreement_with_fp32")
    if isinstance(agreement, int | float):
        line += (f"; same top-1 as fp32 on {100 * agreement:.1f}% of {checks.get('agreement_segments', '?')} "
                 f"segments on {checks.get('checked_on', '?')}")
    return line


def format_table(info: dict) -> str:
    rows: list[tuple[str, str]] = [
        ("model", f"{info['path']} ({_size(info['size_bytes'])})"),
        ("opset", ", ".join(f"{d} {v}" for d, v in info["opsets"].items()) or "unknown"),
        ("producer", f"{info['producer']['producer']} ; avfuse {info['version'] or '?'}"),
    ]
    for kind in ("inputs", "outputs"):
        for i, io in enumerate(info[kind]):
            rows.append((kind if i == 0 else "", f"{io['name']:<10} {io['type']:<16} {_shape(io['shape'])}"))
    rows.append(("labels", f"({len(info['labels'])}) " + ", ".join(info["labels"])))
    rows.append(("decode", " ".join(f"{k}={v}" for k, v in info["decode"].items())))
    rows.append(("tokenizer", f"words, vocab {info['tokenizer']['vocab']}, max_len {info['tokenizer']['max_len']}"))
    model = info["model"]
    if model:
        keys = ("fusion", "dim", "precision", "parameters", "opset")
        line = " ".join(f"{k}={model[k]}" for k in keys if k in model)
        if "modalities" in model:
            line += " modalities=" + ",".join(model["modalities"])
        rows.append(("network", line or json.dumps(model)[:200]))
        for modality, encoder in model.get("encoders", {}).items():
            rows.append(("", f"{modality} encoder: {encoder}"))
        if model.get("precision") == "int8":
            rows.append(("int8", int8_line(model.get("int8"))))
    for i, line in enumerate(edge_lines(info.get("edge"))):  # make edge's MODEL.edge.json: ARM64 and others
        rows.append(("edge" if i == 0 else "", line))
    if info["metrics"]:
        flat = _flatten(info["metrics"])
        rows.append(("metrics", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in flat.items()) or json.dumps(info["metrics"])[:200]))
    for i, (provider, verdict) in enumerate(info["providers"].items()):
        rows.append(("providers" if i == 0 else "", f"{provider}: {verdict}"))
    return "\n".join(f"{k:<10} {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    info = describe(args.model)
    print(json.dumps(info, indent=2) if args.json else format_table(info))
    return 0
