"""The harness of ``avfuse bench live`` measures what it says: one real RTSP stream through the model,
latency from the window's close, segments counted per stream, drops and gaps. (No timing asserted:
the numbers themselves are for the bench to print.)"""

from __future__ import annotations

import math

import pytest
from onnx_models import colour_model

from stream.bench import add_arguments
from stream.bench_live import _trial
from stream.engine import Engine, EngineConfig
from stream.rtsp_test_server import RtspServer, gstreamer_available

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not gstreamer_available(), reason="GStreamer RTSP server missing")]


@pytest.mark.slow
def test_bench_trial_measures_latency_of_real_streams(tmp_path, request):
    engine = Engine(colour_model(tmp_path / "colour.onnx", window_s=0.5), EngineConfig(device="cpu", threads=1))
    server = RtspServer(user="cam", password="pw-in-url")
    request.addfinalizer(server.stop)
    server.start()
    trial = _trial([server.url()] * 2, engine, run_model=True, seconds=2.0, batch=4)
    assert trial.errors == [] and trial.dropped == 0 and trial.gaps == 0
    assert len(trial.segments) == 2 and min(trial.segments) >= 2  # 2 s of 0.5 s windows from each stream
    assert len(trial.latencies) == sum(trial.segments)
    assert all(0 <= lat < 5.0 for lat in trial.latencies) and not math.isnan(trial.pct(95))


def test_bench_live_is_registered():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["live", "model.onnx", "--max-streams", "4", "--url", "rtsp://u:p@cam/x"])
    assert args._bench_module == "stream.bench_live" and args.max_streams == 4
