"""``avfuse bench live --ui``: the same streams measured with the live view (``avfuse run --ui-port``) closed and
open, in rounds ordered off-on, on-off, ... so that a load that drifts over the run weighs on both alike. The page
is :class:`PageClient`, a process of its own that does what the open page does (``stream/run/report/live.html``):
reads the Server-Sent Events of ``/events`` and, for each source whose frame changed, fetches ``/frame/N.jpg``
at most once a second."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from avfuse.stream.cli.bench_live_trial import Trial, merge

log = logging.getLogger(__name__)
FRAME_EVERY_S = 1.0  # as the page: a source's picture is loaded at most once a second


class _Closed(Exception):
    """The page was told to close (SIGTERM): what it met after that is not the view's doing."""


def _close(_signum, _frame) -> None:
    raise _Closed


def read_page(base: str) -> dict:
    """What the open page does, until it is closed (SIGTERM) or the view ends the events: the events of
    ``base/events``, and for each source whose frame changed, ``/frame/N.jpg`` at most once a second. Returns what
    it received, and the first error met while the page was open."""
    signal.signal(signal.SIGTERM, _close)
    loaded: dict[int, tuple[int, float]] = {}  # source id -> (frame shown, when loaded)
    got: dict = {"messages": 0, "frames": 0, "error": None}
    try:
        with urllib.request.urlopen(f"{base}/events", timeout=30) as events:
            for line in events:
                if not line.startswith(b"data: "):
                    continue
                got["messages"] += 1
                now = time.monotonic()
                for s in json.loads(line[6:])["sources"]:
                    frame, at = loaded.get(s["id"], (-1, -FRAME_EVERY_S))
                    if s["frame"] != frame and now - at >= FRAME_EVERY_S:
                        with urllib.request.urlopen(f"{base}/frame/{s['id']}.jpg?seq={s['frame']}", timeout=30) as r:
                            r.read()
                        loaded[s["id"]] = (s["frame"], now)
                        got["frames"] += 1
    except _Closed:
        pass
    except (OSError, urllib.error.URLError, ValueError) as e:
        got["error"] = str(e)
    return got


class PageClient:
    """The page, in a process of its own as a browser would be (its reading and parsing take nothing from the
    measured process): ``python -m avfuse.stream.cli.bench_live_ui URL``. ``join`` collects what it received."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.messages = 0
        self.frames = 0
        self.error: str | None = None
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "avfuse.stream.cli.bench_live_ui", self.base],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def join(self, timeout: float) -> None:
        """Close the page (before the view closes, as a user closes the tab) and collect its counts."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        try:
            got = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.error = f"the page process gave no counts (exit {self.proc.returncode}): {err.strip()[-300:]}"
            return
        self.messages, self.frames, self.error = got["messages"], got["frames"], got["error"]


def compare_view(urls: list[str], trial: Callable[..., Trial], out: Path, *,
                 rounds: int) -> tuple[Trial, Trial, list[PageClient]]:
    """(view closed, view open, the pages) over ``rounds`` pairs of trials; ``trial(urls, out, taps=, attach=)``."""
    from avfuse.stream.run.report.live import LiveView

    closed: list[Trial] = []
    opened: list[Trial] = []
    pages: list[PageClient] = []
    for r in range(rounds):
        for with_view in (False, True) if r % 2 == 0 else (True, False):
            folder = out / f"ui-{r}-{'on' if with_view else 'off'}"
            if not with_view:
                closed.append(trial(urls, folder))
                continue
            view = LiveView(0, "127.0.0.1")
            page = PageClient(view.port)
            page.start()
            try:
                opened.append(trial(urls, folder, taps=[view], attach=view.attach))
            finally:
                page.join(10)
                view.close()
            pages.append(page)
    return merge(closed), merge(opened), pages


if __name__ == "__main__":
    print(json.dumps(read_page(sys.argv[1])), flush=True)
