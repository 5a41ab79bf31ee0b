"""What ``avfuse run`` takes from :mod:`avfuse.stream.run.report`: ``--thumbnails`` (a JPEG per segment for the
report) and ``--ui-port`` (the live view), as pipeline taps. The run calls :func:`add_arguments`,
:meth:`RunViews.from_args`,
:meth:`RunViews.attach` and :meth:`RunViews.close`; the rest lives in this package."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Protocol

from avfuse.stream.errors import ConfigError
from avfuse.stream.run.metrics import DEFAULT_HOST
from avfuse.stream.run.outputs import OutputDir


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--thumbnails", action="store_true",
                       help="write a small JPEG of one sampled frame per segment under OUT/thumbs (for avfuse report)")
    group.add_argument("--ui-port", type=int, metavar="PORT",
                       help="serve the live view (frame, label, gates, events, counters) on HOST:PORT")
    group.add_argument("--ui-host", default=DEFAULT_HOST, metavar="HOST",
                       help="address the live view binds (0.0.0.0: every interface); default %(default)s")


class LiveViewer(Protocol):
    """What the run calls on the live view (``avfuse.stream.run.report.live.LiveView``, imported when asked for)."""

    def attach(self, stats: object) -> None: ...

    def close(self) -> None: ...


@dataclass
class RunViews:
    taps: list = field(default_factory=list)
    live: LiveViewer | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, out: OutputDir | None) -> RunViews:
        """The taps asked for; the live view's port is bound here, so a busy one fails before the run starts."""
        views = cls()
        if args.thumbnails:
            if out is None:
                raise ConfigError("--thumbnails needs -o OUT (they are written under OUT/thumbs)")
            from avfuse.stream.run.report.thumbs import ThumbnailWriter
            views.taps.append(ThumbnailWriter(out.root))
        if args.ui_port is not None:
            from avfuse.stream.run.report.live import LiveView
            views.live = LiveView(args.ui_port, args.ui_host)
            views.taps.append(views.live)
        return views

    def attach(self, stats: object) -> None:
        if self.live is not None:
            self.live.attach(stats)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
