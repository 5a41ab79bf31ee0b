"""A client of the live view (``avfuse run --ui-port``) for ``avfuse bench live --ui``: it does what the open page
does (``stream/report/live.html``): reads the Server-Sent Events of ``/events`` and, for each source whose frame
changed, fetches ``/frame/N.jpg`` at most once a second."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request

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
