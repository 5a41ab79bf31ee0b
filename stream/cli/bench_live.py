"""``avfuse bench live [MODEL.onnx] [--url RTSP_URL ...] [--seconds S] [--max-streams N] [--ui]``: the real
pipeline of ``avfuse run`` (:mod:`avfuse.stream.cli.bench_live_trial`) on 1, 2, 4, 6, 8, 10, 12 ... concurrent live RTSP
streams, growing the count until one is no longer held (every stream's windows delivered on time, nothing
dropped, no gap or reconnect, p95 latency from the window's close <= ``--target-ms``). It prints the largest
count held with its p95, and that p95 as a ratio of the one-stream p95 (the baseline, in the same run). Goal:
>= 12 streams of 720p25 held with p95 <= 250 ms on 2 cores.

``--ui`` also runs ``--ui-streams`` streams twice, without and with the live view (``--ui-port``) open in a
client that reads its events and frames as the page does (:mod:`avfuse.stream.cli.bench_live_ui`), and prints the ratio
of the two p95s (goal: <= 1.10).

Without ``--url`` the streams come from the RTSP test server (:mod:`~avfuse.stream.cli.rtsp_test_server`,
GStreamer's RTSP server from scripts/system-deps.sh) serving a clip encoded once before the bench
(:mod:`~avfuse.stream.cli.bench_live_clip`) and looped without encoding, one camera with its own clock per
stream. Each ``--url`` is one stream (give several for several). Without MODEL an untrained model of the
default shapes is exported first (train extra).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from avfuse.stream.cli.bench_live_trial import ON_TIME, Trial, run_trial
from avfuse.stream.cli.main import import_extra
from avfuse.stream.errors import ConfigError, DependencyError
from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.live import LiveConfig
from avfuse.stream.media.redact import redact
from avfuse.stream.media.transport import MODES as LIVE_TRANSPORTS
from avfuse.stream.run.pipeline import PipelineConfig

GOALS = {"p95_latency_s": 0.25, "streams": 12, "ui_ratio": 1.10}
LADDER = (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 32)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # ours to use


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", type=Path, metavar="MODEL.onnx", help="the model (default: untrained)")
    parser.add_argument("--url", action="append", default=[],
                        help="an RTSP URL to bench instead of the local test server; repeat: one per stream")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measurement")
    parser.add_argument("--max-streams", type=int, default=16, help="the most concurrent streams to try")
    parser.add_argument("--target-ms", type=float, default=GOALS["p95_latency_s"] * 1000,
                        help="p95 latency a held count of streams stays within")
    parser.add_argument("--width", type=int, default=1280, help="test server video width")
    parser.add_argument("--height", type=int, default=720, help="test server video height")
    parser.add_argument("--fps", type=int, default=25, help="test server frame rate")
    parser.add_argument("--clip-seconds", type=int, default=10, help="length of the clip the test server loops")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=None,
                        help="longest wait to fill a batch (default: as avfuse run with live sources)")
    parser.add_argument("--live-transport", choices=LIVE_TRANSPORTS, default="tcp", help="RTSP transport")
    parser.add_argument("--device", default="cpu", help="onnxruntime device: cpu, cuda, tensorrt, auto")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: onnxruntime decides)")
    parser.add_argument("--ui", action="store_true", help="also compare the p95 with the live view open and not")
    parser.add_argument("--ui-streams", type=int, default=8, help="streams for the --ui comparison")
    parser.add_argument("--ui-rounds", type=int, default=4,
                        help="--ui: pairs of measurements, closed-open then open-closed, and so on")


def _check(args: argparse.Namespace) -> None:
    if args.seconds < 1 or min(args.max_streams, args.ui_streams, args.ui_rounds) < 1 or args.target_ms <= 0:
        raise ConfigError(f"--seconds must be >= 1, --max-streams, --ui-streams and --ui-rounds >= 1 and --target-ms "
                          f"> 0, got {args.seconds}, {args.max_streams}, {args.ui_streams}, {args.ui_rounds}, "
                          f"{args.target_ms}")
    most = max(args.max_streams, args.ui_streams if args.ui else 1)
    if args.url and most > len(args.url):
        raise ConfigError(f"{len(args.url)} --url given for up to {most} streams: give one --url per stream "
                          "(or lower --max-streams / --ui-streams)")


def _server(args: argparse.Namespace, tmp: Path):
    from avfuse.stream.cli.bench_live_clip import encode_clip
    from avfuse.stream.cli.rtsp_test_server import RtspServer, gstreamer_available

    if not gstreamer_available():
        raise DependencyError("the RTSP test server needs GStreamer's RTSP server: bash scripts/system-deps.sh; "
                              "or pass --url rtsp://... to bench cameras")
    clip = encode_clip(tmp / "clip.h264", width=args.width, height=args.height, fps=args.fps,
                       seconds=args.clip_seconds)
    mounts = max(args.max_streams, args.ui_streams if args.ui else 1, 2)  # 2: paths end in their number
    mbps = clip.stat().st_size * 8 / args.clip_seconds / 1e6
    return RtspServer(clip=clip, mounts=mounts, fps=args.fps).start(), mbps


def _row(name: str, t: Trial) -> str:
    share = min(t.segments or [0]) / t.expected
    return (f"  {name:<12} {t.streams:>7} {sum(t.segments):>8} {share:>8.0%} {t.pct(50) * 1000:>7.0f} "
            f"{t.pct(95) * 1000:>7.0f} {t.worst_stream_p95 * 1000:>10.0f} {t.dropped:>7} {t.gaps:>5} "
            f"{t.reconnects:>6} {t.cores_per_stream:>7.2f}  {'held' if t.held else 'NOT held'}"
            + (f": {t.errors[0]}" if t.errors else ""))


def run(args: argparse.Namespace) -> int:
    _check(args)
    server = None
    with tempfile.TemporaryDirectory(prefix="avfuse-bench-live-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            model = args.model
            if not model:
                model = tmp / "default.onnx"
                who = "avfuse bench live (no MODEL given)"
                import_extra("avfuse.export.bench_run", who=who).export_default_model(model, who=who)
            engine = Engine(model, EngineConfig(device=args.device, threads=args.threads, max_batch=args.batch))
            config = PipelineConfig(batch=args.batch, max_wait_ms=args.max_wait_ms,
                                    live=LiveConfig(transport=args.live_transport, attempts=3))
            if args.url:
                urls, what = args.url, ", ".join(redact(u) for u in args.url)
            else:
                server, mbps = _server(args, tmp)
                urls = server.urls()
                what = (f"local RTSP test server: {args.width}x{args.height} @ {args.fps} fps H.264 High at "
                        f"{mbps:.1f} Mbit/s, encoded once, looped, one camera per stream")
            spec = engine.spec
            print(f"avfuse bench live: {Path(model).name} on {what}\n  {engine.device}, {CORES} cores, batch "
                  f"{args.batch}, window {spec.segment.window_s:g} s, hop {spec.segment.hop:g} s, {args.seconds:g} s "
                  f"each; held: >= {ON_TIME:.0%} of each stream's windows, no drops, gaps or reconnects, p95 <= "
                  f"{args.target_ms:g} ms")
            print(f"  {'':<12} {'streams':>7} {'segments':>8} {'on time':>8} {'p50 ms':>7} {'p95 ms':>7} "
                  f"{'worst p95':>10} {'dropped':>7} {'gaps':>5} {'reconn':>6} {'cores/s':>7}")

            def trial(urls_: list[str], out: Path, **kw) -> Trial:
                return run_trial(urls_, engine, config, seconds=args.seconds, target_s=args.target_ms / 1000,
                                 out=out, **kw)

            best, one = None, None
            for n in [k for k in LADDER if k <= args.max_streams]:
                t = trial(urls[:n], tmp / f"streams-{n}")
                one = one or t
                print(_row("pipeline", t), flush=True)
                if not t.held:
                    break
                best = t
            pair = None
            if args.ui:
                from avfuse.stream.cli.bench_live_ui import compare_view
                pair = compare_view(urls[:args.ui_streams], trial, tmp, rounds=args.ui_rounds)
            if pair is not None:
                print(_row("view closed", pair[0]))
                print(_row("view open", pair[1]), flush=True)
        finally:
            if server is not None:
                server.stop()
    if one is None:  # --max-streams >= 1: the ladder's first rung always runs
        raise RuntimeError("no trial with the model ran")
    if best is None:
        print(f"  largest count held: none (goal >= {GOALS['streams']}); one stream: p95 {one.pct(95) * 1000:.0f} ms")
    else:
        print(f"  largest count held: {best.streams} stream(s) (goal >= {GOALS['streams']}), p95 "
              f"{best.pct(95) * 1000:.0f} ms (goal <= {GOALS['p95_latency_s'] * 1000:.0f} ms); "
              f"{best.pct(95) / one.pct(95):.2f}x the one-stream p95 ({one.pct(95) * 1000:.0f} ms)")
        print(f"  CPU: {best.cores_per_stream:.2f} cores per stream at {best.streams} stream(s) (cores/s: this "
              f"process, every thread); at that rate {CORES} free cores would carry about "
              f"{int(CORES / best.cores_per_stream)} streams")
    missed = [] if best is not None and best.streams >= GOALS["streams"] else ["streams"]
    if pair is not None:
        off, on, pages = pair
        ratio = on.pct(95) / off.pct(95)
        errors = [p.error for p in pages if p.error]
        messages, frames = sum(p.messages for p in pages), sum(p.frames for p in pages)
        print(f"  live view on {on.streams} stream(s), {len(pages)} round(s): p95 {on.pct(95) * 1000:.0f} ms with the "
              f"page open, {off.pct(95) * 1000:.0f} ms without: {ratio:.2f}x (goal <= {GOALS['ui_ratio']:.2f}x); the "
              f"page got {messages} event(s) and {frames} frame(s)" + (f"; its error: {errors[0]}" if errors else ""))
        print(f"  CPU with the page open: {on.cores_per_stream / off.cores_per_stream:.2f}x the CPU without "
              f"({on.cores_per_stream:.3f} against {off.cores_per_stream:.3f} cores per stream)")
        if not ratio <= GOALS["ui_ratio"] or errors or not messages:
            missed.append("ui_ratio")
    if missed:
        print(f"  below goal: {', '.join(missed)}")
    return 0
