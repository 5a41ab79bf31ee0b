"""``avfuse bench train``: ``avfuse train`` in one process against ``--nproc N`` ranks, in the same run, on
the same generated set (every window has video, audio and a caption; any two decide the label). Each is a
fresh ``avfuse train`` process: its wall seconds include starting torch (and the ranks), reading the segment
cache (filled before either is timed) and training. Prints both and their ratio, with each one's held-out
accuracy, since a speed-up that learns less is none. The module does not import torch at the top:
``avfuse bench -h`` lists it on the edge install.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from avfuse.models.launch import nproc_arg
from avfuse.stream.errors import AvfuseError

FAST = ["--fps", "1", "--size", "32x32"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nproc", type=nproc_arg, default=2, help="ranks to compare with one process (default 2)")
    parser.add_argument("--videos", type=int, default=16, help="generated training videos (default 16)")
    parser.add_argument("--test-videos", type=int, default=16, help="generated held-out videos (default 16)")
    parser.add_argument("--epochs", type=int, default=30, help="as avfuse train (default 30)")
    parser.add_argument("--patience", type=int, default=10, help="early stopping, as avfuse train (default 10)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the one process (default 0: torch's, one per core)")
    parser.add_argument("--out", type=Path, default=None, help="keep the data, runs and logs here")


def _train(root: Path, data, name: str, extra: list[str], args: argparse.Namespace) -> dict:
    run, log = root / name, root / f"{name}.log"
    cmd = [sys.executable, "-m", "avfuse", "train", "--manifest", str(data.manifest), "--test-manifest",
           str(data.test_manifest), "-o", str(run), "--epochs", str(args.epochs),
           "--patience", str(args.patience), *FAST, *extra]
    began = time.perf_counter()
    with open(log, "wb") as err:
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, env=os.environ.copy()).returncode
    wall = time.perf_counter() - began
    if code != 0:
        raise AvfuseError(f"bench train: {name} ended with exit code {code}; see {log}")
    metrics = json.loads((run / "metrics.json").read_text())
    return {"wall_s": wall, "train_s": metrics["seconds"], "epochs": len(metrics["history"]),
            "accuracy": metrics["test"]["accuracy"], "segments": metrics["test"]["segments"]}


def run(args: argparse.Namespace) -> int:
    from avfuse.models import data as datasets
    from avfuse.models.distributed import cores
    from avfuse.models.synth import synthesize
    from avfuse.stream.media.config import DecodeConfig, SegmentConfig

    nproc = args.nproc
    root = args.out or Path(tempfile.mkdtemp(prefix="avfuse-bench-train-"))
    root.mkdir(parents=True, exist_ok=True)
    made = synthesize(root / "data", videos=args.videos, test_videos=args.test_videos, seed=3, width=64, height=64,
                      caption_drop=0.0, no_audio=0.0)
    decode, segment = DecodeConfig(fps=1, width=32, height=32), SegmentConfig(window_s=2.0)
    for manifest in (made.manifest, made.test_manifest):  # into the cache, outside the timings
        datasets.load_manifest(manifest, decode=decode, segment=segment)
    one = _train(root, made, "one", ["--threads", str(args.threads)], args)
    many = _train(root, made, f"nproc{nproc}", ["--nproc", str(nproc)], args)
    print(f"avfuse bench train: {args.videos} training and {args.test_videos} held-out videos, up to {args.epochs} "
          f"epochs, {cores()} CPU cores")
    print(f"{'run':<28} {'wall s':>7} {'train s':>7} {'epochs':>6} {'held-out accuracy':>18}")
    threads = f"--threads {args.threads}" if args.threads else "torch's threads"
    for label, r in ((f"1 process ({threads})", one), (f"{nproc} ranks", many)):
        print(f"{label:<28} {r['wall_s']:>7.1f} {r['train_s']:>7.1f} {r['epochs']:>6} "
              f"{r['accuracy']:>12.3f} of {r['segments']}")
    print(f"{nproc} ranks against 1 process: wall time x{many['wall_s'] / one['wall_s']:.2f}, training time "
          f"x{many['train_s'] / one['train_s']:.2f}, per epoch x"
          f"{(many['train_s'] / many['epochs']) / (one['train_s'] / one['epochs']):.2f} (below 1: faster)")
    (root / "bench_train.json").write_text(json.dumps({"one": one, "ranks": many, "nproc": nproc}, indent=2) + "\n")
    print(f"wrote {root / 'bench_train.json'}")
    return 0
