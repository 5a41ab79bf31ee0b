"""The ONNX file's contract, defined once for the exporter (:mod:`avfuse.export.onnx`) and the runtime
(:mod:`avfuse.stream.infer.modelspec`): input and output names, and the ``metadata_props`` keys
(ARCHITECTURE.md, "The model contract")."""

from __future__ import annotations

INPUTS = ("frames", "audio", "tokens", "present")
OUTPUTS = ("probs", "gates", "embedding")

KEY_PREFIX = "avfuse."
LABELS = "avfuse.labels"  # JSON list of class names, in output order
DECODE = "avfuse.decode"  # JSON object: fps, frames, height, width, resize, sample_rate, samples, window_s, ...
TOKENIZER = "avfuse.tokenizer"  # the tokenizer's own JSON
MODEL = "avfuse.model"  # JSON object: encoders, fusion, dims, precision, opset, int8 checks
VERSION = "avfuse.version"  # JSON string: the avfuse version that exported the file
METRICS = "avfuse.metrics"  # JSON object: the training run's held-out figures
REQUIRED_KEYS = (LABELS, DECODE, TOKENIZER)
KEYS = (LABELS, DECODE, TOKENIZER, MODEL, VERSION, METRICS)
