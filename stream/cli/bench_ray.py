"""``avfuse bench ray [MODEL.onnx]``: in one run, on local Ray clusters of 1 and 2 CPUs started for it,

  folder       ``--files`` copies of the real 720p clip looped to ``--file-seconds``: the local engine,
               then Ray with 1 and 2 workers (segments per second, and their ratio to the local engine),
  per file     ``--tiny`` short files (one loop of the clip, 5.3 s), local against Ray with 1 worker:
               what Ray adds per file,
  long file    the clip looped to ``--long-seconds``, cut into ranges of ``--range-s`` against whole,
               with 1 worker (what Ray adds per range) and with 2 (the speed-up of cutting),

printing the ratios against the goals. A cluster's start and its actors' sessions are not timed: each
configuration labels short files first, two per worker. With no MODEL, an untrained model of the default shapes is
exported (needs the train extra).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray

from avfuse.stream.cli.bench_decode import loop_clip
from avfuse.stream.cli.main import import_extra
from avfuse.stream.cli.tree_cpu import TreeCpuMeter
from avfuse.stream.errors import ConfigError
from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.sample_clips import real_clip
from avfuse.stream.run.pipeline import Pipeline, PipelineConfig
from avfuse.stream.run.ray_engine import RayConfig, RayLabels, RayPipeline
from avfuse.stream.run.ray_tasks import RangeCounts
from avfuse.stream.run.sources import Source
from avfuse.stream.run.summary import RunStats

log = logging.getLogger(__name__)
GOALS = {"ray2_vs_local_folder": 0.9, "split_vs_whole_2_workers": 1.6}
MAX_FILE_OVERHEAD_S = 0.3
WHOLE_S = 1e9  # a range length no file reaches: files decode whole


@dataclass
class Timing:
    segments: int
    wall_s: float
    ranges: RangeCounts | None = None  # a Ray run's: what it cut and decoded
    cpu_s: float | None = None  # CPU seconds of this process and its children (Ray's workers) during it

    @property
    def rate(self) -> float:
        return self.segments / self.wall_s

    @property
    def cores(self) -> float | None:
        """The cores this configuration got, on average: what the run could use of the machine."""
        return None if self.cpu_s is None else self.cpu_s / self.wall_s


def _timed(run: Callable[[], RunStats], what: str) -> Timing:
    with TreeCpuMeter() as cpu:
        stats = run()
    t = _check(stats, what)
    t.cpu_s = cpu.seconds
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="an avfuse .onnx file (default: an untrained default model)")
    parser.add_argument("--files", type=int, default=6, help="files in the folder")
    parser.add_argument("--file-seconds", type=float, default=10.0, help="length of each file in the folder")
    parser.add_argument("--tiny", type=int, default=8,
                        help="short files (one loop of the clip) for the per-file overhead")
    parser.add_argument("--long-seconds", type=float, default=60.0, help="length of the long file")
    parser.add_argument("--range-s", type=float, default=15.0, help="media seconds per range of the long file")
    parser.add_argument("--batch", type=int, default=8)


def _check(stats, what: str) -> Timing:
    if stats.sources_failed:
        raise ConfigError(f"{what}: {stats.sources_failed[0][0]} failed: {stats.sources_failed[0][1]}")
    return Timing(stats.segments, stats.wall_s, stats.ranges)


def _local(engine: Engine, files: list[str], batch: int) -> Timing:
    return _timed(lambda: Pipeline(engine, [], config=PipelineConfig(batch=batch)).run([Source(name=f) for f in files]),
                  "local engine")


def _ray(model: Path, cfg: EngineConfig, workers: int, warm: list[str], runs: dict[str, tuple[list[str], float]],
         batch: int) -> dict[str, Timing]:
    """Each of ``runs`` (name -> files, range length) on a fresh local cluster of ``workers`` CPUs."""
    labels = RayLabels(model, cfg, RayConfig(workers=workers))
    try:
        out = {}
        # the warm-up starts a decode worker per CPU and every actor's session, outside the timings
        for name, (files, range_s) in {"warm-up": (warm[:2 * workers], WHOLE_S), **runs}.items():
            labels.config = RayConfig(workers=workers, range_s=range_s)
            pipeline = RayPipeline(labels, [], config=PipelineConfig(batch=batch))
            out[name] = _timed(lambda: pipeline.run([Source(name=f) for f in files]),  # noqa: B023 (called at once)
                               f"ray {workers} workers, {name}")
        return out
    finally:
        labels.close()
        if ray.is_initialized():
            ray.shutdown()


def run(args: argparse.Namespace) -> int:
    if args.files < 1 or args.tiny < 1:
        raise ConfigError(f"--files and --tiny must be >= 1, got {args.files}, {args.tiny}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # others' work, before ours
    with tempfile.TemporaryDirectory(prefix="avfuse-bench-ray-") as tmp:
        root = Path(tmp)
        model = Path(args.model) if args.model else root / "default.onnx"
        if not args.model:
            import_extra("avfuse.export.bench_run", who="avfuse bench ray").export_default_model(
                model, who="avfuse bench ray")
        clip = real_clip("bigbuckbunny")
        folder = [str(root / f"f{i}.mkv") for i in range(args.files)]
        tiny = [str(root / f"t{i}.mkv") for i in range(args.tiny)]
        long = str(root / "long.mkv")
        loop_clip(clip, folder[0], args.file_seconds)
        short_s = loop_clip(clip, tiny[0], 1.0)
        for f in folder[1:]:
            Path(f).write_bytes(Path(folder[0]).read_bytes())
        for f in tiny[1:]:
            Path(f).write_bytes(Path(tiny[0]).read_bytes())
        long_s = loop_clip(clip, long, args.long_seconds)
        cfg = EngineConfig(device="cpu", cache_dir=root / "cache", max_batch=args.batch)
        engine = Engine(model, cfg)
        _local(engine, tiny[:1], args.batch)  # warm the page cache and the session
        local = {"folder": _local(engine, folder, args.batch), "tiny": _local(engine, tiny, args.batch),
                 "long": _local(engine, [long], args.batch)}
        one = _ray(model, cfg, 1, tiny, {"folder": (folder, WHOLE_S), "tiny": (tiny, WHOLE_S),
                                            "whole": ([long], WHOLE_S), "split": ([long], args.range_s)}, args.batch)
        two = _ray(model, cfg, 2, tiny, {"folder": (folder, WHOLE_S), "whole": ([long], WHOLE_S),
                                            "split": ([long], args.range_s)}, args.batch)
    counted = one["split"].ranges
    ranges = counted.ranges if counted is not None and counted.ranges else max(1, round(long_s / args.range_s))
    per_file = (one["tiny"].wall_s - local["tiny"].wall_s) / args.tiny
    per_range = (one["split"].wall_s - one["whole"].wall_s) / max(1, ranges - 1)
    results = {"ray2_vs_local_folder": two["folder"].rate / local["folder"].rate,
               "split_vs_whole_2_workers": two["split"].rate / two["whole"].rate}
    print(f"avfuse bench ray: {model.name}; folder {args.files} x {args.file_seconds:g} s, "
          f"{args.tiny} x {short_s:.1f} s, "
          f"a {long_s:.0f} s file in ranges of {args.range_s:g} s (about {ranges}); the real 720p clip, looped")
    print(f"  {os.cpu_count()} cores, load average {load:.1f} before the bench; cpu s: this process and its children "
          "(Ray's workers) during the run, cores: cpu s / wall s")
    print(f"  {'':<34} {'segments':>8} {'wall s':>8} {'seg/s':>8} {'x local':>8} {'cpu s':>8} {'cores':>6}")
    rows = [("local engine, folder", local["folder"], local["folder"]),
            ("ray 1 worker, folder", one["folder"], local["folder"]),
            ("ray 2 workers, folder", two["folder"], local["folder"]),
            ("local engine, short files", local["tiny"], local["tiny"]),
            ("ray 1 worker, short files", one["tiny"], local["tiny"]),
            ("local engine, long file", local["long"], local["long"]),
            ("ray 1 worker, long file whole", one["whole"], local["long"]),
            ("ray 1 worker, long file in ranges", one["split"], local["long"]),
            ("ray 2 workers, long file whole", two["whole"], local["long"]),
            ("ray 2 workers, long file in ranges", two["split"], local["long"])]
    for name, t, base in rows:
        cpu = f"{t.cpu_s:>8.1f} {t.cores:>6.2f}" if t.cpu_s is not None and t.cores is not None else ""
        print(f"  {name:<34} {t.segments:>8} {t.wall_s:>8.2f} {t.rate:>8.1f} {t.rate / base.rate:>7.2f}x {cpu}")
    print(f"  ray 2 workers / local, folder:           {results['ray2_vs_local_folder']:.2f}x (goal >= 0.9x)")
    print(f"  long file in ranges / whole, 2 workers:  {results['split_vs_whole_2_workers']:.2f}x (goal >= 1.6x)")
    print(f"  per-file overhead of ray:  {per_file:+.3f} s ({one['tiny'].wall_s / local['tiny'].wall_s:.2f}x the "
          f"local engine's time on the short files; goal < {MAX_FILE_OVERHEAD_S} s)")
    sw, ww = two["split"], two["whole"]
    if sw.cores is not None and ww.cores is not None and sw.cpu_s and ww.cpu_s:
        print(f"  in ranges / whole, 2 workers = {sw.cores / ww.cores:.2f} (the cores each got: {sw.cores:.2f} "
              f"against {ww.cores:.2f}) / {sw.cpu_s / ww.cpu_s:.2f} (the CPU each took: {sw.cpu_s:.1f} s against "
              f"{ww.cpu_s:.1f} s)")
    cut, whole = sw.ranges, ww.ranges
    if cut is not None and whole is not None:
        print(f"  long file in ranges, 2 workers: {cut.ranges} ranges, {cut.audio_tracks} audio track decoded for "
              f"them; audio frames decoded {cut.decoded.audio_frames} ({whole.decoded.audio_frames} whole), "
              f"video frames {cut.decoded.video_frames} ({whole.decoded.video_frames} whole)")
    print(f"  per-range overhead of ray: {per_range:+.3f} s ({one['split'].wall_s / one['whole'].wall_s:.2f}x the "
          "whole file's time with 1 worker)")
    missed = [k for k, v in results.items() if v < GOALS[k]] + (["per_file_overhead"]
                                                                 if per_file >= MAX_FILE_OVERHEAD_S else [])
    if missed:
        print(f"  below goal: {', '.join(missed)}")
    return 0
