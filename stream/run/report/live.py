"""The live view of a run (``avfuse run ... --ui-port PORT``): a small page (``live.html`` beside this module) that
shows, per live source, the latest sampled frame with its label, score and gate bars drawn over it, the last
events, and the counters (latency p95 from window close to label, drops, reconnects).

Labels travel as data (Server-Sent Events on ``/events``); the picture is the segment's own sampled frame as a small
JPEG (``/frame/N.jpg``), encoded on request at most once a second per source: no video is re-encoded. The pipeline
only hands over references (:meth:`LiveView.__call__`, a pipeline tap); everything else runs on the server's threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.segment import Segment
from avfuse.stream.run.report.page import fill
from avfuse.stream.run.report.thumbs import jpeg

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("live.html")
PUSH_EVERY_S = 0.25  # how often a connected page is sent what changed
FRAME_EVERY_S = 1.0  # a source's picture is re-encoded at most this often
EVENTS_KEPT = 5
LATENCIES_KEPT = 500  # per source: the p95 is over its latest segments
_FRAME_PATH = re.compile(r"^/frame/(\d+)\.jpg$")


@dataclass
class _Source:
    id: int
    record: dict
    frame: np.ndarray
    seq: int = 0  # grows with every labelled segment
    events: deque = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))
    jpeg: bytes = b""
    jpeg_at: float = -math.inf


class LiveView:
    """Serves the live page on ``host:port`` from daemon threads; ``close`` stops it."""

    def __init__(self, port: int, host: str) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"--ui-port must be 0..65535, got {port}")
        self.page = fill(PAGE.read_text(encoding="utf-8")).encode("utf-8")  # read once, served on every visit
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}
        self._version = 0
        self._stats: object | None = None  # the run's RunStats, for drops and reconnects (attach)
        self._closed = threading.Event()
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as e:  # taken, or not an address of this machine
            raise ConfigError(f"cannot serve the live view on {host}:{port} ({e.strerror or e})") from e
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="avfuse-ui", daemon=True)
        self._thread.start()
        log.info("live view on http://%s:%d/", host, self.port)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def attach(self, stats: object) -> None:
        """The run's stats (read for the run-wide drops, reconnects and gaps)."""
        self._stats = stats

    def __call__(self, key: str, segment: Segment, records: list[dict]) -> None:
        """The pipeline tap: keep references to the newest segment of each live source; nothing is copied."""
        if segment.wallclock is None:  # files are not shown: the report covers them
            return
        latency = time.time() - segment.wallclock
        with self._lock:
            src = self._sources.get(key)
            if src is None:
                src = self._sources[key] = _Source(id=len(self._sources), record=records[0], frame=segment.frames)
            src.record, src.frame, src.seq = records[0], segment.frames, src.seq + 1
            src.events.extend(r for r in records[1:] if r.get("type") == "event")
            src.latencies.append(latency)
            self._version += 1

    def snapshot(self) -> dict:
        """What the page shows, as JSON-ready data."""
        with self._lock:
            sources = [(s.id, dict(s.record), s.seq, list(s.events), list(s.latencies))
                       for s in self._sources.values()]
        stats = self._stats
        out = []
        for sid, rec, seq, events, lat in sources:
            out.append({"id": sid, "name": rec.get("source", ""), "label": rec.get("label", ""),
                        "score": rec.get("score", 0.0), "top": rec.get("top", []), "gates": rec.get("gates", {}),
                        "present": rec.get("present", {}), "start": rec.get("start"), "end": rec.get("end"),
                        "frame": seq, "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1000) if lat else None,
                        "events": [{"label": e.get("label"), "start": e.get("start"), "end": e.get("end"),
                                    "score": e.get("score")} for e in events]})
        counters = {k: getattr(stats, k, 0) for k in ("segments", "dropped", "reconnects", "gaps", "stalls")}
        return {"sources": out, "counters": counters, "time": time.time()}

    def frame_jpeg(self, sid: int) -> bytes | None:
        """Source ``sid``'s latest sampled frame as JPEG, encoded again only once a second has passed."""
        with self._lock:
            src = next((s for s in self._sources.values() if s.id == sid), None)
            if src is None:
                return None
            if src.jpeg and time.monotonic() - src.jpeg_at < FRAME_EVERY_S:
                return src.jpeg
            frames = src.frame
        data = jpeg(frames[len(frames) // 2])  # the middle of the window, as thumbnails
        with self._lock:
            src.jpeg, src.jpeg_at = data, time.monotonic()
        return data

    def stream(self, write) -> None:
        """Push snapshots to one page (``write(bytes)``) until the view closes or the page goes away."""
        seen = -1
        last = 0.0
        while not self._closed.is_set():
            now = time.monotonic()
            if self._version != seen or now - last >= 1.0:  # the counters change without new segments too
                seen, last = self._version, now
                write(b"data: " + json.dumps(self.snapshot()).encode("utf-8") + b"\n\n")
            self._closed.wait(PUSH_EVERY_S)

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()


def _handler(view: LiveView) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:
            log.debug("live view: " + format, *args)

        def handle(self) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a page closed mid-reply
                super().handle()

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(200, "text/html; charset=utf-8", view.page)
            elif path == "/events":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

                def write(data: bytes) -> None:
                    self.wfile.write(data)
                    self.wfile.flush()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the page was closed
                    view.stream(write)
            elif (m := _FRAME_PATH.match(path)) and (data := view.frame_jpeg(int(m.group(1)))) is not None:
                self._send(200, "image/jpeg", data)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

    return Handler
