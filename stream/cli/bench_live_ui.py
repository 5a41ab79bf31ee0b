"""``avfuse bench live --ui``: the same streams measured with the live view (``avfuse run --ui-port``) closed and
open, in rounds ordered off-on, on-off, ... so that a load that drifts over the run weighs on both alike. The page
is :class:`PageClient`, which does what the open page does (``stream/report/live.html``): reads the Server-Sent
Events of ``/events`` and, for each source whose frame changed, fetches ``/frame/N.jpg`` at most once a second."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from avfuse.stream.cli.bench_live_trial import Trial, merge

log = logging.getLogger(__name__)
FRAME_EVERY_S = 1.0  # as the page: a source's picture is loaded at most once a second


class PageClient(threading.Thread):
    """Consumes ``http://127.0.0.1:PORT/events`` until the view closes; counts what it received."""

    def __init__(self, port: int) -> None:
        super().__init__(name="bench-live-page", daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.messages = 0
        self.frames = 0
        self.error: str | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        loaded: dict[int, tuple[int, float]] = {}  # source id -> (frame shown, when loaded)
        try:
            with urllib.request.urlopen(f"{self.base}/events", timeout=30) as events:
                self.connected.set()
                for line in events:
                    if not line.startswith(b"data: "):
                        continue
                    self.messages += 1
                    now = time.monotonic()
                    for s in json.loads(line[6:])["sources"]:
                        frame, at = loaded.get(s["id"], (-1, -FRAME_EVERY_S))
                        if s["frame"] != frame and now - at >= FRAME_EVERY_S:
                            with urllib.request.urlopen(f"{self.base}/frame/{s['id']}.jpg?seq={s['frame']}",
                                                        timeout=30) as r:
                                r.read()
                            loaded[s["id"]] = (s["frame"], now)
                            self.frames += 1
        except (OSError, urllib.error.URLError, ValueError) as e:
            self.error = str(e)
        finally:
            self.connected.set()


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
                view.close()
                page.join(10)
            pages.append(page)
    return merge(closed), merge(opened), pages
