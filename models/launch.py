"""``avfuse train --nproc N``: start N training ranks on this machine through torch.distributed.run, as
``torchrun --standalone --nproc_per_node N -m avfuse.models.train_cmd ARGS`` would, and wait for them.

The ranks get the same arguments (rebuilt from the parsed ones) and run this process's code. Each gets the
machine's cores shared out (``OMP_NUM_THREADS``, unless set). When a rank fails, torch.distributed.run stops
the others; the run ends with one error naming the first rank that failed and how. Nothing here imports torch
before ``launch`` is called, so ``avfuse train -h`` works without it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from avfuse.stream.errors import AvfuseError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]  # the folder holding models/ and stream/: the ranks import from it
ENTRY = "avfuse.models.train_cmd"


class RankError(AvfuseError, RuntimeError):
    """A training rank failed (its own error is printed above this one)."""


def nproc_arg(text: str) -> int:
    """argparse type for ``--nproc``: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--nproc must be a whole number of processes >= 1, got {text!r}") from e
    if n < 1:
        raise argparse.ArgumentTypeError(f"--nproc must be >= 1, got {n}")
    return n


def argv_of(parser: argparse.ArgumentParser, args: argparse.Namespace, formats: dict | None = None,
            skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The command line that parses back to ``args``, less the options in ``skip`` (``formats``: dest -> str
    for values that are not their own text, such as a size tuple)."""
    formats = formats or {}
    out: list[str] = []
    for action in parser._actions:  # argparse has no public list of a parser's options
        if not action.option_strings or action.dest in ("help", *skip) or not hasattr(args, action.dest):
            continue
        value, flag = getattr(args, action.dest), action.option_strings[-1]
        if isinstance(action, argparse.BooleanOptionalAction):
            out.append(action.option_strings[0 if value else 1])  # --x, --no-x
        elif action.nargs == 0:  # store_true
            if value:
                out.append(flag)
        elif value is not None:
            out += [flag, formats[action.dest](value) if action.dest in formats else str(value)]
    return out


@contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def launch(argv: list[str], nproc: int) -> None:
    """Run ``python -m avfuse.models.train_cmd ARGV`` as ``nproc`` ranks; RankError when one fails."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from avfuse.models.distributed import cores

    if nproc > cores():
        log.warning("--nproc %d on %d CPU cores: the ranks share cores", nproc, cores())
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, cores() // nproc))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    config = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                                  "--module", ENTRY, *argv])
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)  # it reports each failed rank at length; RankError says it in a line
    try:
        with _env(OMP_NUM_THREADS=threads, PYTHONPATH=path):
            torchrun.run(config)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        what = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else
                f"failed (exit code {failure.exitcode}); its error is above")
        others = len(e.failures) - 1
        raise RankError(f"rank {rank} of {nproc} {what}"
                        + (f"; {others} more rank(s) failed with it" if others else "")) from e
    except SignalException as e:  # torch.distributed.run stopped the ranks and raised this for the signal
        if e.sigval == signal.SIGINT:
            raise KeyboardInterrupt from e
        raise RankError(f"stopped by {signal.Signals(e.sigval).name}, and the ranks with it") from e
    finally:
        elastic.setLevel(level)
        sys.stdout.flush()
