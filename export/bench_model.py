"""``avfuse bench model model.onnx [--checkpoint RUN/model.pt]``: onnxruntime CPU against PyTorch eager on
the same decoded segments at batch 1 and 8, and the int8 variant against fp32, in one run, with ratios.

Calls are interleaved (one call of every runtime and batch size per round, many rounds) and the median
per call is compared, so load from other processes hits every contender alike. Both runtimes get the
same thread count. No torch import at module level: the bench parser is built without it.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from avfuse.stream.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

BATCHES = (1, 8)
GOAL_ORT_VS_TORCH = 2.0  # at batch 1
GOAL_INT8_VS_FP32 = 1.3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="an exported fp32 avfuse .onnx file")
    parser.add_argument("--checkpoint", type=Path, help="the RUN/model.pt it was exported from (PyTorch baseline)")
    parser.add_argument("--int8", type=Path, help="int8 variant (default: MODEL.int8.onnx beside the model, "
                                                  "or quantized now on the bench segments)")
    parser.add_argument("--source", type=Path, help="media to decode segments from (default: the real clip)")
    parser.add_argument("--rounds", type=int, default=100, help="timed calls per runtime and batch size")
    parser.add_argument("--threads", type=int, default=0, help="threads for both runtimes (0: torch's default)")


def _sessions(paths: dict[str, Path], threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return {name: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for name, p in paths.items()}


def _batch(inputs, size: int):
    return inputs.take(np.arange(size) % len(inputs))


def _times_ms(fn, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def run(args: argparse.Namespace) -> int:
    from avfuse.export.export_cmd import require_train_extra

    require_train_extra("avfuse bench model")
    import torch

    from avfuse.export import verify as V
    from avfuse.export.export_cmd import variant_path
    from avfuse.stream.infer.modelspec import read_spec
    from avfuse.stream.media.sample_clips import real_clip

    if args.rounds < 3:
        raise ConfigError(f"--rounds must be >= 3, got {args.rounds}")
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.int8 is not None and not args.int8.is_file():
        raise ModelError(f"{args.int8}: int8 model not found (leave out --int8 to quantize one now)")
    spec = read_spec(args.model)
    source = args.source or real_clip("bigbuckbunny")
    segments = V.decode_sources([source], decode=spec.metadata["avfuse.decode"], tokenizer=spec.tokenizer, limit=8)
    inputs = V.verification_rows(segments, spec.tokenizer, rows=4)  # half with captions: the GRU runs too
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)

    paths = {"onnxruntime fp32": args.model}
    with tempfile.TemporaryDirectory(prefix="avfuse-bench-") as tmp:
        int8 = args.int8 or variant_path(args.model, "int8")
        if not int8.is_file():
            from avfuse.export.quantize import quantize_int8

            log.info("no %s: quantizing now, calibrated on the bench segments", int8)
            int8 = Path(tmp) / "model.int8.onnx"
            quantize_int8(args.model, int8, inputs)
        paths["onnxruntime int8"] = int8
        runners = {}
        for name, session in _sessions(paths, threads).items():
            for b in BATCHES:
                feed = _batch(inputs, b).feed()
                runners[(name, b)] = lambda s=session, f=feed: s.run(None, f)
        if args.checkpoint is not None:
            from avfuse.models.checkpoint import load_checkpoint

            model, ckpt = load_checkpoint(args.checkpoint)
            if tuple(ckpt.config.labels) != spec.labels:
                raise ModelError(f"{args.checkpoint}: labels differ from {args.model}'s; not the same model")
            for b in BATCHES:
                tensors = [torch.from_numpy(v) for v in _batch(inputs, b).feed().values()]

                def eager(t=tensors):
                    with torch.inference_mode():
                        return model(*t)
                runners[("pytorch eager", b)] = eager
        else:
            log.warning("no --checkpoint: PyTorch eager baseline skipped")

        for fn in runners.values():  # warm up (first-call allocations, kernel selection)
            fn()
            fn()
        samples: dict[tuple[str, int], list[float]] = {k: [] for k in runners}
        for _ in range(args.rounds):
            for key, fn in runners.items():
                samples[key] += _times_ms(fn, 1)
    ms = {k: statistics.median(v) for k, v in samples.items()}

    print(f"model {args.model} ({spec.model.get('fusion', '?')} fusion), segments from {source}, "
          f"{threads} threads, median of {args.rounds} interleaved calls")
    print(f"{'runtime':<20} {'batch':>5} {'ms/call':>9} {'segments/s':>11}")
    for (name, b), v in sorted(ms.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"{name:<20} {b:>5} {v:>9.2f} {1e3 * b / v:>11.1f}")
    for b in BATCHES:
        if ("pytorch eager", b) in ms:
            ratio = ms[("pytorch eager", b)] / ms[("onnxruntime fp32", b)]
            goal = f" (goal >= {GOAL_ORT_VS_TORCH}x)" if b == 1 else ""
            print(f"onnxruntime fp32 vs PyTorch eager, batch {b}: {ratio:.2f}x{goal}")
    for b in BATCHES:
        ratio = ms[("onnxruntime fp32", b)] / ms[("onnxruntime int8", b)]
        print(f"onnxruntime int8 vs fp32, batch {b}: {ratio:.2f}x (goal >= {GOAL_INT8_VS_FP32}x)")
    return 0
