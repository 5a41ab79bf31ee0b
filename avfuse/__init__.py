"""avfuse: label video segments with a fused video, audio and caption model in one ONNX file.

The installed distribution has this one top-level package: :mod:`avfuse.stream` (the runtime, no torch),
:mod:`avfuse.models` (training, needs the train extra) and :mod:`avfuse.export` (ONNX export). The names a
Python user needs are here, imported when first used so ``import avfuse`` stays light::

    from avfuse import Engine, Pipeline, iter_segments
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place: pyproject.toml reads it from here

_PUBLIC = {
    "iter_segments": "avfuse.stream.media.segmenter",
    "Segment": "avfuse.stream.media.segment",
    "SegmentConfig": "avfuse.stream.media.config",
    "DecodeConfig": "avfuse.stream.media.config",
    "ModelSpec": "avfuse.stream.infer.modelspec",
    "read_spec": "avfuse.stream.infer.modelspec",
    "Engine": "avfuse.stream.infer.engine",
    "Pipeline": "avfuse.stream.run.pipeline",
    "PipelineConfig": "avfuse.stream.run.pipeline",
    **{name: "avfuse.stream.errors" for name in (
        "AvfuseError", "ConfigError", "SourceError", "MediaError", "CodecError", "CaptionError", "ModelError",
        "DataError", "DependencyError", "OutputError", "SinkError")},
}

__all__ = [  # noqa: RUF022 (grouped as in _PUBLIC)
    "__version__", "iter_segments", "Segment", "SegmentConfig", "DecodeConfig", "ModelSpec", "read_spec", "Engine",
    "Pipeline", "PipelineConfig", "AvfuseError", "ConfigError", "SourceError", "MediaError", "CodecError",
    "CaptionError", "ModelError", "DataError", "DependencyError", "OutputError", "SinkError",
]

if TYPE_CHECKING:
    from avfuse.stream.errors import (
        AvfuseError,
        CaptionError,
        CodecError,
        ConfigError,
        DataError,
        DependencyError,
        MediaError,
        ModelError,
        OutputError,
        SourceError,
    )
    from avfuse.stream.infer.engine import Engine
    from avfuse.stream.infer.modelspec import ModelSpec, read_spec
    from avfuse.stream.media.config import DecodeConfig, SegmentConfig
    from avfuse.stream.media.segment import Segment
    from avfuse.stream.media.segmenter import iter_segments
    from avfuse.stream.run.pipeline import Pipeline, PipelineConfig


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'avfuse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
