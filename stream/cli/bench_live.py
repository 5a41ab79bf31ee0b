"""``avfuse bench live [MODEL.onnx] [--url RTSP_URL] [--seconds S] [--max-streams N]``: one run measures

  decode-only   one live stream read by LiveSource, no model: the latency floor (baseline),
  one stream    the same stream with the model run on micro-batches: p50/p95 latency (goal p95 <= 250 ms),
  N streams     1, 2, 4, 6, 8 ... concurrent streams into one drop-oldest queue and one engine, until a
                count drops a segment, loses the stream or falls behind (goal: >= 4 streams of 720p held),

and prints the ratio of the model's p95 latency to the decode-only one. Latency is the time a segment's
result is ready minus the wall-clock time its window closed (``Segment.wallclock``). Without ``--url``
the streams come from the project's GStreamer RTSP test server (tests/rtsp_server.py, a checkout plus
scripts/system-deps.sh) serving generated 720p H.264 + AAC. Without MODEL an untrained model of the
default shapes is exported first (needs the train extra).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avfuse.stream.cli.main import import_extra
from avfuse.stream.errors import AvfuseError, ConfigError, DependencyError
from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.live import LiveSource
from avfuse.stream.media.reconnect import Backoff
from avfuse.stream.media.redact import redact
from avfuse.stream.media.segment import Segment
from avfuse.stream.run.batching import Channel, micro_batches
from avfuse.stream.run.pipeline import PipelineConfig

log = logging.getLogger(__name__)
GOALS = {"p95_latency_s": 0.25, "streams": 4}
LADDER = (1, 2, 4, 6, 8, 12, 16, 24, 32)
WARMUP_S = 2.0  # after every stream delivered its first segment: connection start-up is not steady state
SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "rtsp_server.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", type=Path, metavar="MODEL.onnx", help="the model (default: untrained)")
    parser.add_argument("--url", help="an RTSP URL to bench instead of the local test server (opened once per stream)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measurement")
    parser.add_argument("--max-streams", type=int, default=8, help="the most concurrent streams to try")
    parser.add_argument("--width", type=int, default=1280, help="test server video width")
    parser.add_argument("--height", type=int, default=720, help="test server video height")
    parser.add_argument("--fps", type=int, default=25, help="test server frame rate")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=PipelineConfig().batch_wait_s(live=True) * 1000,
                        help="longest wait to fill a batch (default: as avfuse run with live sources)")
    parser.add_argument("--device", default="cpu", help="onnxruntime device: cpu, cuda, tensorrt, auto")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: one per core)")


@dataclass
class Trial:
    streams: int
    seconds: float
    hop: float
    segments: list[int] = field(default_factory=list)  # per stream, counted after the warm-up
    latencies: list[float] = field(default_factory=list)
    dropped: int = 0
    gaps: int = 0
    errors: list[str] = field(default_factory=list)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    @property
    def kept_pace(self) -> bool:
        """Every stream delivered at least 80% of the windows its measured time holds."""
        expected = self.seconds / self.hop
        return bool(self.segments) and min(self.segments) >= 0.8 * expected - 1

    @property
    def held(self) -> bool:
        return not (self.dropped or self.gaps or self.errors) and self.kept_pace and self.pct(95) < self.hop


def _trial(urls: list[str], engine: Engine, *, run_model: bool, seconds: float, batch: int,
           max_wait_s: float = 0.0) -> Trial:
    spec = engine.spec
    n = len(urls)
    trial = Trial(streams=n, seconds=seconds, hop=spec.segment.hop)
    stop = threading.Event()
    queue: Channel = Channel(max(4, 2 * n), policy="drop_oldest", name="bench-live")
    sources = [LiveSource(u, decode=spec.decode, segment=spec.segment, open_timeout=10.0, read_timeout=5.0,
                          backoff=Backoff(initial=0.5, cap=2.0), max_attempts=5) for u in urls]
    first: dict[int, float] = {}
    started = threading.Event()
    measure: dict[str, float] = {}

    def read(i: int, source: LiveSource) -> None:
        if stop.wait(0.2 * i):  # staggered, like cameras coming up one by one, not a thundering herd
            return
        try:
            for item in source.segments(stop):
                if isinstance(item, Segment):
                    first.setdefault(i, time.time())
                    if len(first) == n and not started.is_set():
                        measure["from"] = time.time() + WARMUP_S
                        measure["to"] = measure["from"] + seconds
                        started.set()
                    queue.put((i, item))
        except AvfuseError as e:
            trial.errors.append(str(e))

    def stopper() -> None:
        if not started.wait(60.0):
            trial.errors.append("not every stream delivered a segment within 60 s")
        else:
            time.sleep(max(0.0, measure["to"] - time.time()) + 0.5)
        stop.set()
        for t in readers:
            t.join(15.0)
        queue.close()

    readers = [threading.Thread(target=read, args=(i, s), daemon=True, name=f"bench-live-{i}")
               for i, s in enumerate(sources)]
    counts = [0] * n
    for t in readers:
        t.start()
    threading.Thread(target=stopper, daemon=True, name="bench-live-stop").start()
    for group in micro_batches(queue, size=batch, max_wait_s=max_wait_s):
        if run_model:
            engine.run_segments([seg for _, seg in group])
        now = time.time()
        for i, seg in group:
            if started.is_set() and measure["from"] <= seg.wallclock < measure["to"]:
                counts[i] += 1
                trial.latencies.append(now - seg.wallclock)
    trial.segments = counts
    trial.dropped = queue.dropped
    trial.gaps = sum(s.stats.gaps for s in sources)
    return trial


def _server(args: argparse.Namespace):
    if not SERVER_SCRIPT.is_file():
        raise DependencyError(f"{SERVER_SCRIPT}: the RTSP test server comes with a checkout of avfuse; "
                              "or pass --url rtsp://... to bench a camera")
    spec = importlib.util.spec_from_file_location("avfuse_rtsp_server", SERVER_SCRIPT)
    if spec is None or spec.loader is None:
        raise DependencyError(f"{SERVER_SCRIPT}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.gstreamer_available():
        raise DependencyError("the RTSP test server needs GStreamer's RTSP server: bash scripts/system-deps.sh")
    return module.RtspServer(width=args.width, height=args.height, fps=args.fps).start()


def _row(name: str, t: Trial) -> str:
    per = t.seconds / t.hop
    return (f"  {name:<16} {t.streams:>7} {sum(t.segments):>8} {min(t.segments or [0]) / per:>9.0%} "
            f"{t.pct(50) * 1000:>8.0f} {t.pct(95) * 1000:>8.0f} {t.dropped:>7} {t.gaps:>5}  "
            f"{'held' if t.held else 'NOT held'}{': ' + t.errors[0] if t.errors else ''}")


def run(args: argparse.Namespace) -> int:
    if args.seconds < 5 or args.max_streams < 1:
        raise ConfigError(f"--seconds must be >= 5 and --max-streams >= 1, got {args.seconds}, {args.max_streams}")
    server = None
    with tempfile.TemporaryDirectory(prefix="avfuse-bench-live-") as tmp:
        try:
            model = args.model
            if not model:
                model = Path(tmp) / "default.onnx"
                who = "avfuse bench live (no MODEL given)"
                import_extra("avfuse.export.bench_run", who=who).export_default_model(model, who=who)
            engine = Engine(model, EngineConfig(device=args.device, threads=args.threads))
            if args.url:
                url, what = args.url, redact(args.url)
            else:
                server = _server(args)
                url, what = server.url(), f"local RTSP test server, {args.width}x{args.height} @ {args.fps} fps"
            spec = engine.spec
            print(f"avfuse bench live: {Path(model).name} on {what} ({engine.device}, batch {args.batch}, "
                  f"batch wait {args.max_wait_ms:g} ms, "
                  f"window {spec.segment.window_s:g} s, hop {spec.segment.hop:g} s, {args.seconds:g} s each)")
            print(f"  {'':<16} {'streams':>7} {'segments':>8} {'kept pace':>9} {'p50 ms':>8} {'p95 ms':>8} "
                  f"{'dropped':>7} {'gaps':>5}")
            wait = args.max_wait_ms / 1000
            base = _trial([url], engine, run_model=False, seconds=args.seconds, batch=args.batch, max_wait_s=wait)
            print(_row("decode-only", base), flush=True)
            best = 0
            one = None
            for n in [k for k in LADDER if k <= args.max_streams]:
                t = _trial([url] * n, engine, run_model=True, seconds=args.seconds, batch=args.batch,
                           max_wait_s=wait)
                one = one or t
                print(_row("with model", t), flush=True)
                if not t.held:
                    break
                best = n
        finally:
            if server is not None:
                server.stop()
    if one is None:  # --max-streams >= 1: the ladder's first rung always runs
        raise RuntimeError("no trial with the model ran")
    p95 = one.pct(95)
    print(f"  p95 latency, one stream: {p95 * 1000:.0f} ms (goal <= {GOALS['p95_latency_s'] * 1000:.0f} ms); "
          f"{p95 / base.pct(95):.2f}x the decode-only p95 ({base.pct(95) * 1000:.0f} ms)")
    print(f"  concurrent streams held without drops: {best} (goal >= {GOALS['streams']})")
    missed = [k for k, ok in (("p95_latency_s", p95 <= GOALS["p95_latency_s"]), ("streams", best >= GOALS["streams"]))
              if not ok]
    if missed:
        print(f"  below goal: {', '.join(missed)}")
    return 0
