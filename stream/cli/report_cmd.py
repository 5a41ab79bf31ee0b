"""``avfuse report PATH [-o report.html]``: one self-contained HTML file (no server, no network) for a run's
output folder (the labels of every source) or for a training run (a folder with ``metrics.json``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from avfuse.stream.errors import ConfigError, OutputError
from avfuse.stream.run.outputs import write_atomic

log = logging.getLogger(__name__)
METRICS = "metrics.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, metavar="PATH",
                        help="a run's output folder (avfuse run -o OUT) or a training run (avfuse train -o RUN)")
    parser.add_argument("-o", "--out", type=Path, help="the HTML file to write (default PATH/report.html)")


def render(path: Path) -> str:
    """The report of ``path``: a training run when it holds metrics.json (or is one), else a run's outputs."""
    if path.is_file() and path.name == METRICS:
        path = path.parent
    if not path.is_dir():
        raise ConfigError(f"{path}: not a folder (give a run's output folder or a training run)")
    if (path / METRICS).is_file():
        from avfuse.stream.run.report.train_report import train_report
        return train_report(path / METRICS)
    from avfuse.stream.run.report.run_report import run_report
    return run_report(path)


def run(args: argparse.Namespace) -> int:
    html = render(args.path)
    out = args.out or (args.path.parent if args.path.is_file() else args.path) / "report.html"
    try:
        write_atomic(out, html)
    except OSError as e:
        raise OutputError(f"{out}: cannot write the report ({e.strerror})") from e
    print(f"wrote {out} ({len(html.encode('utf-8')) / 1e6:.2f} MB)")
    return 0
