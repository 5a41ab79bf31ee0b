"""Failures inside the pipeline: a source whose decoder breaks midway or whose segments do not fit the
model is recorded and the others go on; a sink that fails ends the run with its error, without hanging."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from onnx_models import COLOURS, colour_model, colour_video

from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.segment import Present, Segment
from avfuse.stream.run.pipeline import Pipeline, PipelineConfig
from avfuse.stream.run.sinks.base import Sink
from avfuse.stream.run.sources import Source


class ListSink(Sink):
    name = "list"

    def __init__(self, fail_after: int | None = None) -> None:
        self.records: list[dict] = []
        self.closed: list[tuple[str, bool]] = []
        self.fail_after = fail_after

    def write(self, key, record):
        if self.fail_after is not None and len(self.records) >= self.fail_after:
            raise OSError(28, "No space left on device")
        self.records.append(record)

    def close_source(self, key, *, finished):
        self.closed.append((key, finished))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(colour_model(tmp_path_factory.mktemp("m") / "colour.onnx"), EngineConfig(device="cpu", threads=1))


def _segments(engine: Engine, source: str, n: int, *, size: int | None = None, colour="red"):
    spec = engine.spec
    h = size or spec.decode.height
    frames = np.full((spec.frames, h, spec.decode.width, 3), COLOURS[colour], np.uint8)
    for i in range(n):
        yield Segment(source=source, index=i, start=float(i), end=i + 1.0, frames=frames,
                      audio=np.zeros(spec.samples, np.float32), text="",
                      present=Present(video=True, audio=False, text=False))


def _opener(engine: Engine):
    def opener(source: Source, stop: threading.Event):
        if source.name == "breaks.mp4":
            yield from _segments(engine, source.name, 3, colour="green")
            raise RuntimeError("decoder thread crashed")
        if source.name == "wrong-size.mp4":
            yield from _segments(engine, source.name, 3, size=8)
            return
        yield from _segments(engine, source.name, 4)
    return opener


def test_broken_sources_are_recorded_and_the_others_finish(engine):
    sink = ListSink()
    pipe = Pipeline(engine, [sink], config=PipelineConfig(batch=2), opener=_opener(engine))
    names = ["breaks.mp4", "wrong-size.mp4", "good.mp4"]
    stats = pipe.run([Source(name=n) for n in names])
    by_source = {n: [r for r in sink.records if r["source"] == n] for n in names}
    assert [r["label"] for r in by_source["breaks.mp4"] if r["type"] == "segment"] == ["green"] * 3
    assert by_source["breaks.mp4"][-1] == {"type": "error", "source": "breaks.mp4", "error": "RuntimeError",
                                           "detail": "decoder thread crashed"}
    assert by_source["wrong-size.mp4"][-1]["error"] == "MediaError"
    assert "do not match the model" in by_source["wrong-size.mp4"][-1]["detail"]
    assert [r["label"] for r in by_source["good.mp4"] if r["type"] == "segment"] == ["red"] * 4
    assert stats.sources_ok == 1 and [s for s, _ in stats.sources_failed] == names[:2]
    assert all(finished for _, finished in sink.closed)


def test_a_real_file_truncated_midway_keeps_its_segments_then_records_the_error(engine, tmp_path):
    from media import AudioSpec, VideoSpec, truncate, write_media

    full = write_media(tmp_path / "full.mkv", video=VideoSpec(frames=40), audio=AudioSpec(duration=10, codec="flac"))
    cut = truncate(full, tmp_path / "cut.mkv")
    good = colour_video(tmp_path / "good.mp4", ["blue", "green"])
    sink = ListSink()
    stats = Pipeline(engine, [sink]).run([Source(name=str(cut)), Source(name=str(good))])  # real decoding
    cut_records = [r for r in sink.records if r["source"] == str(cut)]
    segments = [r for r in cut_records if r["type"] == "segment"]
    assert len(segments) >= 2 and [r["index"] for r in segments] == list(range(len(segments)))
    assert cut_records[-1]["error"] == "MediaError" and "truncated" in cut_records[-1]["detail"]
    assert [r["label"] for r in sink.records if r["source"] == str(good) and r["type"] == "segment"][:2] == \
        ["blue", "green"]
    assert stats.sources_ok == 1 and [s for s, _ in stats.sources_failed] == [str(cut)]


def test_a_sink_out_of_space_stops_the_run_cleanly_with_its_summary_and_nothing_hangs(engine):
    sink = ListSink(fail_after=3)
    pipe = Pipeline(engine, [sink], config=PipelineConfig(batch=1, queue_size=2), opener=_opener(engine))
    t0 = time.monotonic()
    stats = pipe.run([Source(name=f"good{i}.mp4") for i in range(20)])
    assert time.monotonic() - t0 < 10
    assert stats.stopped == "the list sink: cannot write (No space left on device)"
    assert [src for src, _ in stats.sources_failed] == ["good0.mp4"] and stats.sources_ok == 0
    assert len(sink.records) == 3 and not any(finished for _, finished in sink.closed)


class UnclosableSink(ListSink):
    name = "unclosable"

    def close(self):
        raise OSError(5, "Input/output error")


def test_a_sink_that_fails_to_close_ends_the_run_with_its_error_after_closing_the_others(engine):
    first, second = UnclosableSink(), ListSink()
    second_closed = []
    second.close = lambda: second_closed.append(True)
    pipe = Pipeline(engine, [first, second], opener=_opener(engine))
    with pytest.raises(OSError, match="Input/output error"):
        pipe.run([Source(name="good.mp4")])
    assert second_closed == [True] and len(second.records) == 4 + 1  # 4 segments and their event
