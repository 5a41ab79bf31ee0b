"""Small, real avfuse ONNX models built with onnx.helper, for runtime tests.

The colour model obeys the contract (inputs frames/audio/tokens/present, outputs probs/gates/embedding,
avfuse.* metadata) and its answer depends on the input in a known way:
  probs = softmax(SHARPNESS * mean RGB of all frames / 255) over the labels ("red", "green", "blue"),
  gates = present / sum(present),
  embedding = [mean R, mean G, mean B (0..1), mean audio, mean token id].
So a red video is labelled "red" with a score near 1, and tests can assert labels exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from avfuse.stream.infer.tokenize import Tokenizer
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata

LABELS = ("red", "green", "blue")
SHARPNESS = 20.0
COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


def colour_model(path: str | Path, *, fps: float = 2.0, size: int = 32, window_s: float = 1.0,
                 hop_s: float | None = None, sample_rate: int = 8000, labels: tuple[str, ...] = LABELS,
                 opset: int = 17, metadata: dict[str, str] | None = None, dynamic_probs: bool = False) -> Path:
    """Write the colour model to ``path`` and return it. ``labels`` must have 3 entries (one per channel).
    ``metadata``: raw metadata_props strings that replace the model's own (to test hostile metadata);
    ``dynamic_probs``: declare the probs output [B, C] with a symbolic C instead of 3."""
    if len(labels) != 3:
        raise ValueError("the colour model has exactly one label per RGB channel")
    decode = DecodeConfig(fps=fps, height=size, width=size, sample_rate=sample_rate)
    segment = SegmentConfig(window_s=window_s, hop_s=hop_s)
    meta = decode_metadata(decode, segment)
    tok = Tokenizer.build(["a red b green c blue"], max_len=8)

    inputs = [
        helper.make_tensor_value_info("frames", TensorProto.UINT8, ["B", meta["frames"], size, size, 3]),
        helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", meta["samples"]]),
        helper.make_tensor_value_info("tokens", TensorProto.INT64, ["B", tok.max_len]),
        helper.make_tensor_value_info("present", TensorProto.FLOAT, ["B", 3]),
    ]
    outputs = [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["B", "C" if dynamic_probs else 3]),
        helper.make_tensor_value_info("gates", TensorProto.FLOAT, ["B", 3]),
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["B", 5]),
    ]
    consts = [
        helper.make_tensor("scale", TensorProto.FLOAT, [], [SHARPNESS / 255.0]),
        helper.make_tensor("inv255", TensorProto.FLOAT, [], [1.0 / 255.0]),
        helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-6]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("Cast", ["frames"], ["ff"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ff"], ["rgb"], axes=[1, 2, 3], keepdims=0),  # [B, 3]
        helper.make_node("Mul", ["rgb", "scale"], ["logits"]),
        *([helper.make_node("Shape", ["logits"], ["lshape"]),  # a shape known only when it runs
           helper.make_node("Reshape", ["logits", "lshape"], ["logits_d"])] if dynamic_probs else []),
        helper.make_node("Softmax", ["logits_d" if dynamic_probs else "logits"], ["probs"], axis=-1),
        helper.make_node("ReduceSum", ["present", "axis1"], ["psum"], keepdims=1),
        helper.make_node("Add", ["psum", "eps"], ["psum_e"]),
        helper.make_node("Div", ["present", "psum_e"], ["gates"]),
        helper.make_node("Mul", ["rgb", "inv255"], ["rgb01"]),
        helper.make_node("ReduceMean", ["audio"], ["amean"], axes=[1], keepdims=1),
        helper.make_node("Cast", ["tokens"], ["tf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["tf"], ["tmean"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["rgb01", "amean", "tmean"], ["embedding"], axis=1),
    ]
    graph = helper.make_graph(nodes, "avfuse_colour", inputs, outputs, initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    props = {
        "avfuse.labels": json.dumps(list(labels)),
        "avfuse.decode": json.dumps(meta),
        "avfuse.tokenizer": tok.to_json(),
        "avfuse.model": json.dumps({"encoders": {"video": "mean-colour", "audio": "mean", "text": "mean-token-id"},
                                    "fusion": "none", "dims": {"embedding": 5}}),
        "avfuse.version": json.dumps("test"),
        "avfuse.metrics": json.dumps({}),
    }
    helper.set_model_props(model, props | (metadata or {}))
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def expected_probs(rgb: tuple[float, float, float]) -> np.ndarray:
    """What the colour model answers for frames of one solid colour."""
    x = np.asarray(rgb, np.float64) * SHARPNESS / 255.0
    e = np.exp(x - x.max())
    return (e / e.sum()).astype(np.float32)


def colour_video(path: str | Path, colours: list[str] | tuple[str, ...], *, seconds_each: float = 1.0,
                 fps: int = 10, size: int = 32, audio: bool = True, gop: int | None = None) -> Path:
    """Encode (PyAV, H.264 + AAC in MP4) a video showing each named colour of COLOURS in turn, solid, for
    ``seconds_each`` seconds: the colour model labels its segments with exactly these names. ``gop``: a
    keyframe every this many frames (x264's default otherwise)."""
    import av

    path = Path(path)
    per = round(fps * seconds_each)
    with av.open(str(path), "w") as c:
        gop_opts = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"} if gop else {}
        v = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "18", **gop_opts})
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=16000, layout="mono") if audio else None
        img = np.empty((size, size, 3), np.uint8)
        for i, name in enumerate(n for n in colours for _ in range(per)):
            img[...] = COLOURS[name]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(v.encode(frame))
        c.mux(v.encode())
        if a is not None:
            total = round(16000 * seconds_each * len(colours))
            t = np.arange(total) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for n, start in enumerate(range(0, total, 1024)):
                chunk = wave[start:start + 1024][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = 16000
                frame.pts = n * 1024
                c.mux(a.encode(frame))
            c.mux(a.encode())
    return path
