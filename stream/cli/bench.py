"""``avfuse bench KIND``: each benchmark compares against a baseline in the same run and prints
the ratio. The benchmarks live in their own modules, imported only when called."""

from __future__ import annotations

import argparse
import importlib

# kind -> (module, help). A module provides add_arguments(parser) and run(args) -> int.
BENCHES: dict[str, tuple[str, str]] = {
    "decode": ("avfuse.stream.cli.bench_decode", "decode+segment throughput against the ffmpeg command line"),
    "run": ("avfuse.export.bench_run", "end-to-end pipeline against decode-only and a naive PyTorch loop"),
    "model": ("avfuse.export.bench_model", "onnxruntime against PyTorch eager, int8 against fp32"),
    "live": ("avfuse.stream.cli.bench_live", "RTSP latency and concurrent streams held without drops"),
    "ray": ("avfuse.stream.cli.bench_ray", "the Ray engine (1 and 2 workers) against the local engine on a folder, "
            "and a long file in ranges against whole"),
    "quality": ("avfuse.export.bench_quality", "the default training recipe on the generalisation suite, "
                "per fusion head and single modality, with the int8 change"),
    "train": ("avfuse.models.bench_train", "avfuse train with --nproc N ranks against one process, "
              "on one generated set"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True, metavar="KIND")
    for kind, (module, help_) in BENCHES.items():
        p = sub.add_parser(kind, help=help_, description=help_)
        p.set_defaults(_bench_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as e:
            # A bench whose module or extra is missing stays listed and explains itself when called.
            p.set_defaults(_bench_missing=f"{e.name} is not installed")
            p.add_argument("rest", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    missing = getattr(args, "_bench_missing", None)
    if missing:
        raise SystemExit(f"avfuse bench {args.bench}: unavailable here ({missing}); "
                         "pip install 'avfuse[train]' for the benches that compare with PyTorch")
    return int(importlib.import_module(args._bench_module).run(args) or 0)
