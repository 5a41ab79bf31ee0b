"""Fair under load: when inference falls behind, the drops are shared by source (oldest first within
each), so a fast stream cannot push a slow one's segments out; they are counted per source in the
summary and the metrics. And a looped file (--loop) reads its sidecar captions once, not every pass."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from media import AudioSpec, VideoSpec, write_media, write_sidecar
from onnx_models import colour_model
from prometheus_client import generate_latest
from test_pipeline_live import Collect

from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.live import LiveSource
from avfuse.stream.media.segment import Present, Segment
from avfuse.stream.run.pipeline import Pipeline, PipelineConfig
from avfuse.stream.run.sources import Source

pytestmark = pytest.mark.timeout(60)


class SlowCollect(Collect):
    """Collect, taking 5 ms per record: a sink that cannot keep up."""

    def write(self, key, record):
        time.sleep(0.005)
        super().write(key, record)

    def indices(self, key: str) -> list[int]:
        return [r["index"] for r in self.segments(key)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(colour_model(tmp_path_factory.mktemp("m") / "colour.onnx"), EngineConfig(device="cpu", threads=1))


def _opener(engine: Engine, shape: dict[str, tuple[int, float]]):
    """Each source named in ``shape`` delivers (count, seconds between segments): a burst when 0."""
    spec = engine.spec
    frames = np.full((spec.frames, spec.decode.height, spec.decode.width, 3), (20, 20, 230), np.uint8)
    audio = np.zeros(spec.samples, np.float32)

    def opener(source: Source, stop: threading.Event):
        count, every = shape[source.name]
        for i in range(count):
            if stop.wait(every):
                return
            yield Segment(source=source.shown, index=i, start=float(i), end=i + 1.0, frames=frames, audio=audio,
                          text="", present=Present(video=True, audio=False, text=False), wallclock=time.time())

    return opener


def _run(engine: Engine, shape: dict[str, tuple[int, float]]):
    sink = SlowCollect()
    pipe = Pipeline(engine, [sink], config=PipelineConfig(batch=2, queue_size=4, max_wait_ms=0),
                    opener=_opener(engine, shape))
    return pipe, sink, pipe.run([Source(name=name) for name in shape])


def test_a_fast_stream_does_not_push_out_a_slow_ones_segments(engine):
    pipe, sink, stats = _run(engine, {"rtsp://cam/fast": (300, 0.0), "rtsp://cam/slow": (15, 0.05)})
    fast, slow = sink.indices("fast"), sink.indices("slow")
    assert slow == list(range(15))  # nothing of the slow camera lost
    assert fast == sorted(fast) and fast[-1] == 299 and len(fast) < 300  # the fast one lost its oldest
    assert stats.dropped_by_source == {"fast": 300 - len(fast)} and stats.dropped == 300 - len(fast)
    assert f"dropped per source: fast {300 - len(fast)}" in stats.render()
    text = generate_latest(pipe.metrics.registry).decode()
    assert f'avfuse_source_dropped_segments_total{{source="fast"}} {300 - len(fast)}.0' in text


def test_two_streams_that_both_outpace_inference_share_the_drops(engine):
    _, sink, stats = _run(engine, {"rtsp://cam/a": (200, 0.0), "rtsp://cam/b": (200, 0.0)})
    lost = stats.dropped_by_source
    assert set(lost) == {"a", "b"} and sum(lost.values()) == stats.dropped
    assert all(len(sink.indices(k)) == 200 - lost[k] for k in ("a", "b"))
    assert abs(lost["a"] - lost["b"]) <= 0.2 * max(lost.values())  # shared, not taken from one


def test_a_looped_file_reads_its_sidecar_captions_once(tmp_path):
    clip = write_media(tmp_path / "clip.mp4", video=VideoSpec(frames=8, fps=8, width=64, height=48, codec="libx264"),
                       audio=AudioSpec(duration=1.0, codec="aac", channels=1))
    sidecar = write_sidecar(clip.with_suffix(".srt"), [(0.0, 1.0, "said once")])
    source = LiveSource(clip, decode=DecodeConfig(fps=4, height=48, width=64), segment=SegmentConfig(window_s=0.5),
                        loop_file=True, speed=10.0)
    stop = threading.Event()
    timer = threading.Timer(30, stop.set)
    timer.start()
    segs = []
    try:
        for seg in source.segments(stop):
            segs.append(seg)
            if seg.index == 1:
                sidecar.unlink()  # parsed already: later passes do not go back to the file
            if len(segs) == 6:
                break
    finally:
        timer.cancel()
        stop.set()
    assert [s.text for s in segs] == ["said once"] * 6 and source.stats.loops >= 2
