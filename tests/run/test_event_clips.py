"""Event clips (``avfuse run --clips DIR``): each event's media, pad seconds either side, remuxed from a
bounded packet ring: the clip exists where the event record says, starts with a keyframe, covers the
event and its pads within a GOP, holds the source's own packets (not re-encoded); a clip the buffer
cannot hold whole is reported; the ring stays bounded on a long file."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main
from avfuse.stream.errors import ConfigError
from avfuse.stream.media.packet_ring import PacketRing
from avfuse.stream.run.event_clips import ClipConfig

FPS, GOP = 10, 5  # a keyframe every 0.5 s
PAD = 1.0
COLOURS = ["red"] * 3 + ["green"] * 2 + ["blue"] * 3  # events: red 0-3 s, green 3-5 s, blue 5-8 s


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return (colour_model(d / "colour.onnx", fps=2, window_s=0.5),
            colour_video(d / "cam.mp4", COLOURS, fps=FPS, gop=GOP))


def _run(model: Path, source: Path, out: Path, *extra: str) -> tuple[int, list[dict], dict]:
    summary = out.parent / f"{out.name}.summary.json"
    rc = main(["run", str(model), str(source), "-o", str(out), "--no-cache", "--clips", str(out / "clips"),
               "--summary-json", str(summary), *extra])
    records = [json.loads(line) for line in (out / f"{source.name}.jsonl").read_text().splitlines()]
    return rc, records, json.loads(summary.read_text())


def _video_packets(path: Path) -> tuple[list[av.Packet], dict]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        params = {"codec": v.codec_context.name, "width": v.width, "height": v.height,
                  "extradata": bytes(v.codec_context.extradata or b"")}
        packets = [(bytes(p), p.is_keyframe, float(p.pts * p.time_base)) for p in c.demux(v) if p.size]
    return packets, params


def test_each_event_gets_a_clip_of_its_own_packets_from_a_keyframe(media, tmp_path):
    model, video = media
    rc, records, summary = _run(model, video, tmp_path / "out", "--clip-pad", str(PAD))
    assert rc == 0
    events = [r for r in records if r["type"] == "event"]
    assert [(e["label"], e["start"], e["end"]) for e in events] == [("red", 0, 3), ("green", 3, 5), ("blue", 5, 8)]
    assert summary["clips"]["written"] == 3 and summary["clips"]["failed"] == summary["clips"]["truncated"] == 0
    source, source_params = _video_packets(video)
    source_bytes = [b for b, _, _ in source]
    for e in events:
        clip = Path(e["clip"])
        assert clip.is_absolute() and clip.is_file() and clip.parent == (tmp_path / "out" / "clips").absolute()
        packets, params = _video_packets(clip)
        assert params == source_params  # the same stream, not a re-encoded one
        assert packets[0][1]  # starts with a keyframe
        data = [b for b, _, _ in packets]
        # A run of the source's packets, byte for byte (solid colours repeat packets: where does it fit?)
        runs = [i for i in range(len(source) - len(data) + 1) if source_bytes[i:i + len(data)] == data]
        want_start, want_end = max(0.0, e["start"] - PAD), min(8.0, e["end"] + PAD)
        assert any(_covers(source, i, len(data), want_start, want_end) for i in runs), (e, runs)
        with av.open(str(clip)) as c:  # it plays: every frame decodes
            assert sum(1 for _ in c.decode(video=0)) == len(data)
            assert c.streams.audio  # the audio came along


def _covers(source: list, first: int, n: int, start: float, end: float) -> bool:
    """Do ``n`` source packets from ``first`` start at the keyframe before ``start`` (within a GOP) and end
    past ``end`` (within a frame)?"""
    t0, t_end = source[first][2], source[first + n - 1][2] + 1 / FPS
    return start - GOP / FPS - 1e-6 <= t0 <= start + 1e-6 and end - 1e-6 <= t_end <= end + 1 / FPS + 1e-6


def test_a_clip_longer_than_the_buffer_is_reported_truncated(media, tmp_path):
    model, video = media
    rc, records, summary = _run(model, video, tmp_path / "out", "--clip-pad", "0.5", "--clip-buffer", "1.5")
    assert rc == 3  # as records not delivered
    warnings = {Path(w["clip"]).name: w for w in records if w["type"] == "warning"}
    events = {e["label"]: e for e in records if e["type"] == "event"}
    assert set(warnings) == {Path(e["clip"]).name for e in events.values()}  # each 2 s+ event > 1.5 s
    assert all(w["warning"] == "clip truncated" for w in warnings.values())
    assert summary["clips"]["truncated"] == 3 and summary["clips"]["failed"] == 0
    packets, _ = _video_packets(Path(events["red"]["clip"]))
    assert packets[0][1] and len(packets) <= (1.5 + GOP / FPS) * FPS + 1  # what the ring held, from a keyframe


def test_the_packet_ring_stays_bounded_on_a_long_file(tmp_path):
    video = colour_video(tmp_path / "long.mp4", ["red", "green"] * 30, fps=FPS, gop=GOP)  # 60 s
    with av.open(str(video)) as c:
        streams = [c.streams.video[0], c.streams.audio[0]]
        by_time, by_bytes = PacketRing(max_s=4.0, max_bytes=1 << 30), PacketRing(max_s=600.0, max_bytes=20_000)
        for ring in (by_time, by_bytes):
            ring.open(streams, t0=0.0)
        total = biggest = 0
        for p in c.demux(*streams):
            if p.size:
                total, biggest = total + 1, max(biggest, p.size)
                by_time.push(p)
                by_bytes.push(p)
                assert by_bytes.bytes <= 20_000
    rate = total / 60  # packets per second, video and audio
    interleave = 1.0  # the muxer puts audio up to about a second ahead of the video
    assert by_time.peak_packets <= (4.0 + GOP / FPS + interleave) * rate  # about 10% of the file's packets
    assert by_bytes.peak_bytes <= 20_000 + biggest and len(by_bytes) < total / 10
    kept, _ = by_time.span(0.0, 100.0)
    assert kept[0].keyframe and kept[-1].t - kept[0].t <= 4.0 + GOP / FPS  # the latest 4 s, from a keyframe


def test_a_run_over_a_long_file_reports_its_bounded_buffer(tmp_path):
    model = colour_model(tmp_path / "colour.onnx", fps=2, window_s=0.5)
    video = colour_video(tmp_path / "long.mp4", ["red"] * 40, fps=FPS, gop=GOP)  # one 40 s event
    rc, _records, summary = _run(model, video, tmp_path / "out", "--clip-pad", "0.5", "--clip-buffer", "3")
    assert rc == 3 and summary["clips"]["truncated"] == 1
    with av.open(str(video)) as c:
        total = sum(1 for p in c.demux() if p.size)
    assert summary["clips"]["peak_packets"] <= total * (3 + GOP / FPS + 1.0) / 40  # 3 s of 40 (+ a GOP, interleave)


def test_bad_clip_settings_are_one_error_naming_them(tmp_path):
    with pytest.raises(ConfigError, match="pad"):
        ClipConfig(folder=tmp_path, pad_s=-1)
    with pytest.raises(ConfigError, match="twice the pad"):
        ClipConfig(folder=tmp_path, pad_s=2, buffer_s=3)


def test_a_clips_folder_that_cannot_be_made_is_one_error_before_the_run(media, tmp_path, capsys):
    model, video = media
    (tmp_path / "taken").write_text("a file, not a folder")
    rc = main(["run", str(model), str(video), "-o", str(tmp_path / "out"), "--no-cache",
               "--clips", str(tmp_path / "taken")])
    err = capsys.readouterr().err
    assert rc == 1 and f"{tmp_path / 'taken'}: cannot write" in err
    assert not (tmp_path / "out").exists()  # nothing started
