"""``avfuse synth OUT --videos N``: write a labelled synthetic data set (numpy + PyAV, no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from avfuse.stream.cli.main import size_arg
from avfuse.stream.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="folder to write (manifest.csv, test/, info.json, the videos)")
    parser.add_argument("--videos", type=int, default=24, help="training videos (default 24)")
    parser.add_argument("--test-videos", type=int, default=None,
                        help="held-out videos rendered from other seeds (default: a third of --videos, at least 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each video, a multiple of 2 s")
    parser.add_argument("--size", type=size_arg, default=(128, 128), metavar="WxH", help="frame size (default 128x128)")
    parser.add_argument("--rule", choices=("pair", "count", "xor"), default="pair",
                        help="pair: any two modalities fix the class, one never does (default); count: alarm level "
                             "= sharp factors present, all three needed; xor: the hard setting")
    parser.add_argument("--overwrite", action="store_true", help="write into OUT even if it holds a data set")


def run(args: argparse.Namespace) -> int:
    from avfuse.models.synth import synthesize

    out: Path = args.out
    if (out / "manifest.csv").exists() and not args.overwrite:
        raise ConfigError(f"{out} already holds a data set (manifest.csv); pass --overwrite or choose another folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    test_videos = max(1, args.videos // 3) if args.test_videos is None else args.test_videos
    width, height = args.size
    info = synthesize(out, videos=args.videos, test_videos=test_videos, seed=args.seed, seconds=args.seconds,
                      width=width, height=height, rule=args.rule)
    print(f"wrote {len(info.train)} training windows ({args.videos} videos) to {info.manifest}")
    if info.test_manifest:
        print(f"wrote {len(info.test)} held-out windows ({test_videos} videos) to {info.test_manifest}")
    print(f"classes: {', '.join(info.labels)}")
    print(f"rule: {info.rule}")
    print(f"took {info.seconds_taken:.1f} s")
    return 0
