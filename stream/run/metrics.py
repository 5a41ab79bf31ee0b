"""Prometheus metrics of a run, served with ``--metrics-port`` on localhost, or on the address
``--metrics-host`` names. Each run has its own registry, so two pipelines in one process (tests) do not collide."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from avfuse.stream.errors import ConfigError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"  # metrics have no authentication: other machines reach them only when asked
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.segments = Counter("avfuse_segments", "Segments labelled", registry=r)
        self.media_seconds = Counter("avfuse_media_seconds", "Media seconds labelled", registry=r)
        self.sources = Counter("avfuse_sources", "Sources finished, by status", ["status"], registry=r)
        self.undelivered = Counter("avfuse_records_undelivered", "Records a network sink could not deliver "
                                   "(spooled for the next run, or lost without -o)", ["sink"], registry=r)
        self.events = Counter("avfuse_events", "Events emitted", registry=r)
        self.dropped = Counter("avfuse_dropped_segments", "Segments dropped because inference was behind "
                               "(live sources)", registry=r)
        self.dropped_by_source = Counter("avfuse_source_dropped_segments", "Segments dropped because inference "
                                         "was behind, by live source (its output name)", ["source"], registry=r)
        self.batch_size = Histogram("avfuse_batch_size", "Segments per inference batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.inference = Histogram("avfuse_inference_seconds", "Time per inference batch",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("avfuse_segment_latency_seconds", "From a segment leaving the decoder "
                                 "to its record leaving the sinks", buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("avfuse_queue_depth", "Segments waiting for inference", registry=r)
        self.live_latency = Histogram("avfuse_live_latency_seconds", "From a live window's close (wall clock) "
                                      "to its record leaving the sinks", buckets=_LATENCY_BUCKETS, registry=r)
        self.live_latency_p50 = Gauge("avfuse_live_latency_p50_seconds", "Median live latency over the "
                                      "latest segments", registry=r)
        self.live_latency_p95 = Gauge("avfuse_live_latency_p95_seconds", "95th percentile live latency over "
                                      "the latest segments", registry=r)
        self.live_reconnects = Counter("avfuse_live_reconnects", "Live sources reconnected after a drop",
                                       registry=r)
        self.live_gaps = Counter("avfuse_live_gaps", "Wall-clock intervals of live sources lost", registry=r)
        self.live_lost_seconds = Counter("avfuse_live_lost_seconds", "Wall-clock seconds of live sources lost",
                                         registry=r)
        self.live_stalls = Counter("avfuse_live_stalls", "Live connections abandoned by the stall watchdog",
                                   registry=r)
        self._server: WSGIServer | None = None

    def serve(self, port: int, addr: str = DEFAULT_HOST) -> None:
        """Serve /metrics on ``addr:port`` (localhost by default; ``0.0.0.0`` or ``::`` for every interface)
        from a daemon thread."""
        if not 0 <= port <= 65535:
            raise ConfigError(f"metrics port must be 0..65535, got {port}")
        try:
            self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as e:  # the port is taken, or addr is not an address of this machine
            raise ConfigError(f"cannot serve metrics on {addr}:{port} ({e.strerror or e})") from e
        log.info("Prometheus metrics on http://%s:%d/metrics", addr, self.port)

    @property
    def port(self) -> int | None:
        return None if self._server is None else self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
