"""``avfuse bench run [MODEL.onnx] [FILE] [--real] [--checkpoint RUN/model.pt]``: one run measures

  decode-only   iter_segments alone (the ceiling for the pipeline),
  end-to-end    the whole ``avfuse run`` pipeline (decode, batches, onnxruntime, postprocess; no sink),
  naive         the loop a user writes first (models/naive.py: full-size RGB frames, torch resize,
                PyTorch eager per segment, nothing overlapping),

and prints media seconds per wall second for each, their ratios and the real-time factor. With no
MODEL, an untrained model of the default shapes is exported to a temporary file (needs the train
extra); the naive side needs torch in any case. With ``--real`` (or no FILE) the input is the real 720p
clip looped to ``--seconds``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from avfuse.stream.cli.main import import_extra
from avfuse.stream.errors import ConfigError
from avfuse.stream.infer.engine import Engine, EngineConfig
from avfuse.stream.media.sample_clips import real_clip
from avfuse.stream.run.pipeline import Pipeline, PipelineConfig
from avfuse.stream.run.sources import Source

log = logging.getLogger(__name__)
GOALS = {"end_to_end_vs_decode": 0.8, "end_to_end_vs_naive": 3.0, "realtime_factor": 15.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="MODEL.onnx|FILE", help="a model, a media file, or both")
    parser.add_argument("--real", action="store_true", help="the real 720p H.264 clip, looped")
    parser.add_argument("--seconds", type=float, default=60.0, help="loop the clip to at least this long")
    parser.add_argument("--checkpoint", type=Path, help="the PyTorch model for the naive loop (RUN/model.pt)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: one per core)")
    parser.add_argument("--no-naive", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each loop, alternating; the fastest is kept")


def export_default_model(path: Path, *, who: str):
    """Export an untrained model of the default shapes to ``path`` (needs the train extra); returns the
    PyTorch model it was exported from."""
    naive, onnx_export = import_extra("avfuse.models.naive", who=who), import_extra("avfuse.export.onnx", who=who)
    model, decode, tok = naive.default_model()
    info = onnx_export.model_info(model, decode=decode, tokenizer=tok, metrics={})
    onnx_export.save(onnx_export.export_model(model, info, path), path)
    log.info("no model given: exported an untrained model of the default shapes to %s", path)
    return model


def _decode_only(path: str, engine: Engine) -> tuple[int, float, float]:
    from avfuse.stream.media.segmenter import iter_segments

    spec = engine.spec
    start, count, end = time.perf_counter(), 0, 0.0
    for seg in iter_segments(path, decode=spec.decode, segment=spec.segment):
        count, end = count + 1, seg.end
    return count, end, time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    models = [p for p in args.paths if p.endswith(".onnx")]
    files = [p for p in args.paths if not p.endswith(".onnx")]
    if args.repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {args.repeat}")
    if len(models) > 1 or len(files) > 1:
        raise ConfigError(f"give at most one model and one media file, got {args.paths}")
    with tempfile.TemporaryDirectory(prefix="avfuse-bench-run-") as tmp:
        torch_model = None
        if models:
            model_path = Path(models[0])
        else:
            model_path = Path(tmp) / "default.onnx"
            torch_model = export_default_model(model_path, who="avfuse bench run")
        if files and not args.real:
            media = files[0]
        else:
            from avfuse.stream.cli.bench_decode import loop_clip
            media = str(Path(tmp) / "looped.mkv")
            loop_clip(real_clip("bigbuckbunny"), media, args.seconds)
        engine = Engine(model_path, EngineConfig(device="cpu", threads=args.threads, cache_dir=Path(tmp) / "cache"))
        n_dec, media_s, dec_wall = _decode_only(media, engine)  # also warms the page cache for the rest
        naive = None
        if not args.no_naive:
            naive = import_extra("avfuse.models.naive", who="avfuse bench run")
            if args.checkpoint is not None:
                checkpoint = import_extra("avfuse.models.checkpoint", who="avfuse bench run")
                torch_model, _ = checkpoint.load_checkpoint(args.checkpoint)
            elif torch_model is None:
                torch_model = naive.model_from_metadata(engine.spec.model)
        stats, naive_res = None, None
        for _ in range(args.repeat):  # alternate, so each loop sees the same machine load; keep the fastest
            dec_wall = min(dec_wall, _decode_only(media, engine)[2])
            run = Pipeline(engine, [], config=PipelineConfig(batch=args.batch)).run([Source(name=media)])
            if run.sources_failed:
                raise ConfigError(f"{media}: the pipeline failed: {run.sources_failed[0][1]}")
            stats = run if stats is None or run.wall_s < stats.wall_s else stats
            if naive is not None:
                res = naive.naive_run(media, torch_model, decode=engine.spec.decode, segment=engine.spec.segment)
                naive_res = res if naive_res is None or res.wall_s < naive_res.wall_s else naive_res
        rows = [("decode-only", n_dec, media_s, dec_wall), ("end-to-end", stats.segments, stats.media_s, stats.wall_s)]
        if naive_res is not None:
            rows.append(("naive PyTorch loop", naive_res.segments, naive_res.media_s, naive_res.wall_s))
    print(f"avfuse bench run: {Path(model_path).name} on {Path(media).name} ({media_s:.1f} s of media, "
          f"{engine.spec.decode.width}x{engine.spec.decode.height} @ {engine.spec.decode.fps:g} fps, "
          f"{engine.device}, batch {args.batch}; fastest of {args.repeat} alternating runs of each loop)")
    print(f"  {'':<20} {'segments':>8} {'wall s':>8} {'x real time':>12}")
    for name, n, m, w in rows:
        print(f"  {name:<20} {n:>8} {w:>8.2f} {m / w:>12.1f}")
    e2e, dec = stats.media_s / stats.wall_s, media_s / dec_wall
    results = {"end_to_end_vs_decode": e2e / dec, "realtime_factor": e2e}
    if naive_res is not None:
        results["end_to_end_vs_naive"] = e2e / (naive_res.media_s / naive_res.wall_s)
    print(f"  end-to-end / decode-only: {results['end_to_end_vs_decode']:.2f}x (goal >= 0.8x)")
    if naive_res is not None:
        print(f"  end-to-end / naive loop:  {results['end_to_end_vs_naive']:.1f}x (goal >= 3x)")
    print(f"  real-time factor:         {e2e:.1f}x (goal >= 15x)")
    print("  stage time: " + ", ".join(f"{k} {v:.2f} s" for k, v in stats.stage_s.items()))
    missed = [k for k, v in results.items() if v < GOALS[k]]
    if missed:
        print(f"  below goal: {', '.join(missed)}")
    return 0
