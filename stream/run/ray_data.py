"""Labelled segments as a ``ray.data.Dataset``, for a user who wants a table instead of a run's files::

    from avfuse.stream.run.ray_data import read_segments
    read_segments(["videos/a.mp4", "videos/b.mp4"], "model.onnx").write_parquet("labels/")

One row per segment, with the fields of the JSONL ``segment`` record (ARCHITECTURE.md, "Records", ``model``
included),
in file order and within a file in segment order; ``top`` is a list of ``{"label", "score"}`` (a
table column holds one type) and ``wallclock`` is null (files only). A file that cannot be decoded
is one row of type ``error`` with its ``error`` and ``detail`` and empty segment fields, as the run
writes one ``error`` record. Files are cut into ranges (:mod:`avfuse.stream.media.range_decode`) and labelled by
the same actors as ``avfuse run --engine ray``; smoothing and events, which need a file's segments
in order, are left to the reader.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import ray
import ray.data

from avfuse.stream.errors import AvfuseError
from avfuse.stream.infer.engine import EngineConfig
from avfuse.stream.infer.postprocess import PostprocessConfig, error_record, segment_record
from avfuse.stream.media.segment import MODALITIES
from avfuse.stream.run.model_swap import model_version
from avfuse.stream.run.ray_engine import RayConfig, RayLabels, Scheduler
from avfuse.stream.run.sources import expand

_EMPTY = {"index": -1, "start": 0.0, "end": 0.0, "label": "", "score": 0.0, "top": [],
          "gates": dict.fromkeys(MODALITIES, 0.0), "present": dict.fromkeys(MODALITIES, False),
          "wallclock": None, "model": "", "error": "", "detail": ""}


def _row(record: dict) -> dict:
    row = {**_EMPTY, **record}
    row["top"] = [{"label": label, "score": p} for label, p in row["top"]]
    return row


def read_segments(paths: Iterable[str | Path], model: str | Path, *, address: str | None = None, workers: int = 0,
                  engine: EngineConfig | None = None, top_k: int = PostprocessConfig().top_k) -> ray.data.Dataset:
    """The labelled segments of ``paths`` (files, folders or globs, as ``avfuse run`` takes them) as a
    Dataset. ``address``/``workers`` as ``--address``/``--workers``; a Ray already initialised is used.
    The rows are gathered here (no frames: a few hundred bytes a segment) and handed to Ray Data."""
    sources = [s for s in expand([str(p) for p in paths]) if s.path is not None]
    labels = RayLabels(model, engine or EngineConfig(), RayConfig(address=address, workers=workers))
    scheduler = Scheduler(labels, decode=labels.spec.decode, segment=labels.spec.segment)
    scheduler.add([s for s in sources if s.error is None])
    never = threading.Event()
    rows: list[dict] = []
    version = model_version(Path(model))
    try:
        for source in sources:
            try:
                if source.error is not None:
                    raise AvfuseError(f"{source.shown}: {source.error}")
                for seg in scheduler.segments(source, never):
                    rows.append(_row(segment_record(seg, seg.probs, seg.gates, labels.spec.labels, top_k,
                                                    model=version)))
            except AvfuseError as e:  # one bad file is its error row; the others go on
                rows.append(_row(error_record(source.shown, e)))
    finally:
        scheduler.cancel()
        labels.close(shutdown=False)  # the Dataset lives on in this Ray session
    return ray.data.from_items(rows)
