"""``avfuse bench live`` runs the real pipeline on live RTSP streams from the test server, which serves a clip
encoded once and looped (one camera with its own clock per client), and prints the largest count of streams
held with its p95; ``--ui`` compares the p95 with the live view open in a client and not. (No timing asserted
beyond the bench's own verdict: the numbers are for the bench to print.)"""

from __future__ import annotations

import re
import threading
import time

import av
import pytest
from onnx_models import colour_model

from avfuse.stream.cli.bench_live_clip import encode_clip
from avfuse.stream.cli.main import main
from avfuse.stream.cli.rtsp_test_server import RtspServer, gstreamer_available

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not gstreamer_available(), reason="GStreamer RTSP server missing")]
# small frames, and a latency target a machine shared with other tests meets: what is held is decided by delivery
SMALL = ["--width", "320", "--height", "240", "--clip-seconds", "2", "--target-ms", "2000"]
HELD = re.compile(r"largest count held: (\d+) stream\(s\) \(goal >= 12\), p95 (\d+) ms")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return colour_model(tmp_path_factory.mktemp("bench-live") / "colour.onnx", window_s=0.5)


def test_bench_live_runs_the_pipeline_on_a_live_stream_and_prints_the_count_held_and_its_p95(model, capsys):
    assert main(["bench", "live", str(model), "--seconds", "1", "--max-streams", "1", *SMALL]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("pipeline"))
    assert row.split()[1:5] == ["1", "2", "100%", row.split()[4]] and row.rstrip().endswith("held")
    held = HELD.search(out)
    assert held and int(held.group(1)) == 1 and 0 < int(held.group(2)) <= 2000, out
    assert re.search(r"CPU: [\d.]+ cores per stream at 1 stream\(s\)", out), out
    assert "below goal: streams" in out  # one stream is not the goal's twelve, and the bench says so


@pytest.mark.slow
def test_bench_live_ui_compares_the_p95_with_the_page_open_and_the_page_got_events(model, capsys):
    assert main(["bench", "live", str(model), "--seconds", "2", "--max-streams", "2", "--ui", "--ui-streams", "2",
                 "--ui-rounds", "1", *SMALL]) == 0
    out = capsys.readouterr().out
    held = HELD.search(out)
    assert held and int(held.group(1)) == 2, out
    ui = re.search(r"live view on 2 stream\(s\), 1 round\(s\): p95 (\d+) ms with the page open, (\d+) ms without: "
                   r"([\d.]+)x \(goal <= 1.10x\); the page got (\d+) event\(s\) and (\d+) frame\(s\)$", out, re.M)
    assert ui, out
    on, off, ratio, events, frames = (float(g) for g in ui.groups())
    assert events >= 2 and frames >= 2  # a page that saw both streams' labels and pictures
    assert "its error" not in out  # closing the page at the end is not an error of the view
    assert on > 0 and off > 0 and abs(ratio - on / off) < 0.02 + 0.5 * 2 / off  # the ratio of the printed p95s
    assert re.search(r"CPU with the page open: [\d.]+x the CPU without", out), out


def test_bench_live_wants_one_url_per_stream_and_never_prints_its_password(tmp_path, capsys):
    code = main(["bench", "live", str(tmp_path / "m.onnx"), "--url", "rtsp://cam:s3cret@10.0.0.9/x",
                 "--max-streams", "4"])
    err = capsys.readouterr().err
    assert code != 0 and "1 --url given for up to 4 streams" in err and "s3cret" not in err


def _pts(url: str, frames: int, out: list) -> None:
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=10) as c:
        for f in c.decode(video=0):
            if f.time is not None:  # FFmpeg has no time for the frame before the first RTCP report
                out.append((time.monotonic(), f.time))
            if len(out) == frames:
                return


def test_the_test_server_loops_a_pre_encoded_clip_as_separate_cameras(tmp_path):
    clip = encode_clip(tmp_path / "clip.h264", width=160, height=120, fps=25, seconds=1)
    with RtspServer(clip=clip, mounts=2) as server:
        first, second = [], []
        a = threading.Thread(target=_pts, args=(server.urls()[0], 75, first))
        a.start()
        time.sleep(1.0)
        _pts(server.urls()[1], 30, second)
        a.join(30)
    times = [t for _, t in first]
    assert len(times) == 75 and times == sorted(set(times))  # past the 1 s loop point, time goes on rising
    assert abs((times[-1] - times[0]) - 74 / 25) < 0.01  # one frame every 1/25 s, none lost or repeated
    assert first[-1][0] - first[0][0] > 1.0  # served at the clip's pace, not as fast as it can be read
    assert second[0][1] < 0.2 and second[0][0] > first[0][0] + 0.9  # the later camera starts its own clock at 0
