"""The ``avfuse`` command line. Each command lives in its own module, imported only when that
command is called, so the edge install (no torch) runs ``avfuse run`` and ``avfuse probe``
and says which extra to install for ``train`` or ``export``.

A command module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from avfuse import __version__
from avfuse.stream.errors import AvfuseError, DependencyError
from avfuse.stream.media.redact import RedactFilter, redact_text

# name -> (module, one-line help, extra the module needs beyond the base install)
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "demo": ("avfuse.export.demo", "whole loop on generated data, then on a real clip", "train"),
    "probe": ("avfuse.stream.cli.probe_cmd", "show a source's streams, duration and segment count", None),
    "synth": ("avfuse.models.synth_cmd", "write a labelled synthetic data set", None),
    "train": ("avfuse.models.train_cmd", "train a model from a manifest or a folder per class", "train"),
    "export": ("avfuse.export.export_cmd", "export a checkpoint to one self-describing ONNX file", "train"),
    "inspect": ("avfuse.stream.cli.inspect_cmd", "show an ONNX model's inputs, outputs, labels and config", None),
    "run": ("avfuse.stream.cli.run_cmd", "label files, folders and live streams with an ONNX model", None),
    "report": ("avfuse.stream.cli.report_cmd", "an HTML report of a run's outputs or of a training run", None),
    "bench": ("avfuse.stream.cli.bench", "measure throughput against a baseline in the same run", None),
}

_TORCH_MODULES = ("torch", "torchvision", "torchaudio", "onnx", "onnxscript")


def size_arg(text: str) -> tuple[int, int]:
    """argparse type for ``WxH`` frame sizes: returns (width, height), each 8..4096."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must look like 64x64 (WxH), got {text!r}") from e
    if not (8 <= w <= 4096 and 8 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"size must be 8..4096 on each side, got {text!r}")
    return w, h


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"avfuse {__version__}: label video segments with a fused video, audio and text model", "",
             "usage: avfuse COMMAND [options]   (avfuse COMMAND -h for a command's options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_, _) in COMMANDS.items()]
    return "\n".join(lines)


def import_extra(module: str, *, who: str, extra: str = "train"):
    """Import ``module``, which needs an extra; if the extra is missing, one DependencyError saying which."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in _TORCH_MODULES:
            raise DependencyError(f"{who}: needs the '{extra}' extra ({e.name} is not installed): "
                                  f"pip install 'avfuse[{extra}]'") from e
        raise


def _load(name: str):
    module, _, extra = COMMANDS[name]
    if extra is None:
        return importlib.import_module(module)
    try:
        return import_extra(module, who=f"avfuse {name}", extra=extra)
    except DependencyError as e:
        raise SystemExit(str(e)) from e


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"avfuse: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # credentials in URLs never reach a log line
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
    module = _load(name)
    parser = argparse.ArgumentParser(prog=f"avfuse {name}", description=COMMANDS[name][1])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    try:
        return int(module.run(args) or 0)
    except AvfuseError as e:
        print(f"avfuse {name}: error: {redact_text(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"avfuse {name}: interrupted", file=sys.stderr)
        return 130


def entry() -> int:
    """The ``avfuse`` process: ``main``, then an exit that does not finalize the interpreter while a network
    reader abandoned by a stop is still inside FFmpeg (that crashed the process instead of exiting 130)."""
    code = main()
    from avfuse.stream.media.netsource import readers_left

    if readers_left():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(entry())
