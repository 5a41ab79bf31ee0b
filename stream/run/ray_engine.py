"""``avfuse run --engine ray``: files decoded as Ray CPU tasks, labelled by a pool of Ray actors, written
by this process exactly as the local engine writes them.

The driver runs the local :class:`~avfuse.stream.run.pipeline.Pipeline` (sinks, outputs, ``--resume``, stop,
summary, exit status); only its opener and its engine differ. The opener of a file hands out the
segments Ray labelled, range by range in order; the engine (:class:`RayLabels`) returns the model
outputs each segment already carries. Smoothing, events and records are made here, so they are the
local engine's.

Per file: a plan task cuts it at IDR frames (:mod:`avfuse.stream.media.range_decode`), a decode task per range
gives its segments, and an actor of the pool (each holding ONE onnxruntime session, built once from
the model file) labels them in micro-batches of ``--batch``. A file cut into several ranges has its audio
decoded once, by an audio task started with its ranges (:mod:`avfuse.stream.media.audio_track`); each range
task is handed a reference to it, decodes its video, and only then takes the track. ``Scheduler.counts``
(in the summary as ``ranges``) says what was cut and decoded. Up to ``2 * workers`` ranges are in
flight ahead of the one being written, across files. A task whose worker dies is retried
(``max_retries``), an actor that dies is restarted and its call retried (``max_restarts``,
``max_task_retries``); a file that cannot be decoded ends as its ``error`` record, as locally.

Every node must see the model and the media at the same paths (a shared volume, as in
docker/rayjob.yaml); an actor that finds another model file there (by its sha256), or none, stops the run
before it starts, with one error naming the node.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
import ray
from ray.exceptions import RayError, RayTaskError

from avfuse.stream.errors import AvfuseError, ConfigError, ModelError, SourceError
from avfuse.stream.infer.engine import Engine, EngineConfig, Outputs
from avfuse.stream.infer.modelspec import ModelSpec, read_spec
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.range_decode import RANGE_S, Range
from avfuse.stream.media.segment import Segment
from avfuse.stream.run.pipeline import Pipeline
from avfuse.stream.run.ray_tasks import Decoded, RangeCounts, decode_audio, decode_range, get, plan_file
from avfuse.stream.run.sources import Source, output_stems

log = logging.getLogger(__name__)
_POLL_S = 0.2  # how often a wait for Ray looks at the stop flag
OBJECT_STORE_BYTES = 200 * 1024 * 1024  # a local cluster's object store: segments in flight, not the archive
ACTOR_START_S = 300.0  # longest wait for the actors' sessions (a busy cluster may first start worker processes)
JOIN_TIMEOUT_S = 5.0  # a head that does not answer this fast is reported, not waited for (Ray waits minutes)
_HOST_PORT = re.compile(r"\[?[\w.:-]+?\]?:\d{1,5}")


@dataclass(frozen=True, kw_only=True)
class RayConfig:
    """``address``: None starts a local cluster for the run; ``auto`` or ``HOST:PORT`` joins one.
    ``workers``: inference actors (0: one per CPU of the cluster). ``range_s``: media seconds per range."""

    address: str | None = None
    workers: int = 0
    range_s: float = RANGE_S

    def __post_init__(self) -> None:
        if self.address not in (None, "auto") and not _HOST_PORT.fullmatch(self.address):
            raise ConfigError(f"--address must be auto or HOST:PORT (a Ray head's GCS port), got {self.address!r}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0 (0: one per CPU of the cluster), got {self.workers}")
        if not self.range_s > 0:
            raise ConfigError(f"range length must be > 0 s, got {self.range_s}")


@dataclass(frozen=True, kw_only=True)
class LabelledSegment(Segment):
    """A segment with the model's outputs for it, back from an actor (frames cut to the middle one)."""

    probs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    gates: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    embedding: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def connect(config: RayConfig) -> bool:
    """Join the cluster at ``config.address`` or start a local one; workers import this tree's ``stream``.
    True when this call started Ray here (and so the caller shuts it down)."""
    if ray.is_initialized():
        return False
    root = str(Path(__file__).resolve().parent.parent)
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
                        "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}}
    os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
    if config.address is None:
        ray.init(num_cpus=config.workers or None, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                 runtime_env=env, log_to_driver=False, configure_logging=False)
    else:
        _check_reachable(config.address)
        try:
            ray.init(address=config.address, runtime_env=env, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError) as e:
            raise ConfigError(f"--address {config.address}: cannot join the Ray cluster ({e})") from e
    return True


def _check_reachable(address: str) -> None:
    """A HOST:PORT nobody listens on is one clear error at once (``auto`` is looked up by Ray itself)."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=JOIN_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: no Ray head answers there ({e.strerror or e})") from e


def cluster_workers(config: RayConfig) -> int:
    return config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def _same_file(path: str, digest: str) -> str | None:
    """Why this node cannot use the model at ``path`` (sha256 ``digest`` on the driver), or None."""
    try:
        if hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest:
            return None
        why = "it differs from the driver's file"
    except OSError as e:
        why = e.strerror or str(e)
    return f"{path} on the Ray node {ray.util.get_node_ip_address()}: {why} (every node needs it at the same path)"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Labeller:
    """One onnxruntime session for the actor's life; labels a range's segments in micro-batches."""

    def __init__(self, model: str, digest: str, config: EngineConfig):
        self.batch, self.engine = config.max_batch, None
        self.error = _same_file(model, digest)
        if self.error is None:
            try:
                self.engine = Engine(model, config)
            except AvfuseError as e:
                self.error = str(e)

    def ready(self) -> str | None:
        """None once the session is built; else why it could not be."""
        return self.error

    def label(self, decoded: Decoded) -> Decoded:
        segments, out = decoded.segments, []
        for i in range(0, len(segments), self.batch):
            chunk = segments[i:i + self.batch]
            if self.engine is None:  # ready() said why; the driver stops before it sends work
                raise RuntimeError(self.error or "the actor has no onnxruntime session")
            o = self.engine.run_segments(chunk)
            for n, s in enumerate(chunk):
                mid = len(s.frames) // 2
                out.append(LabelledSegment(**{**_fields(s), "frames": s.frames[mid:mid + 1]},
                                           probs=o.probs[n], gates=o.gates[n], embedding=o.embedding[n]))
        return Decoded(out, decoded.stats)


def _fields(s: Segment) -> dict:
    return {k: getattr(s, k) for k in Segment.__dataclass_fields__}


class RayLabels:
    """The pipeline's engine for a Ray run: the outputs the actors attached to each segment."""

    def __init__(self, model: str | Path, engine: EngineConfig, config: RayConfig):
        self.path, self.config = Path(model), config
        self.spec: ModelSpec = read_spec(self.path)
        self._started = connect(config)
        self.workers = cluster_workers(config)
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        # one onnxruntime thread per actor unless told: several actors share a node's cores with the decoders
        actor_cfg = replace(engine, warmup=False, threads=engine.threads or 1)
        self.pool = [Labeller.remote(str(self.path.resolve()), digest, actor_cfg)  # type: ignore[attr-defined]
                     for _ in range(self.workers)]  # (ray.remote adds .remote; its stubs do not say so)
        self.device = f"ray ({self.workers} actors)"
        try:
            errors = [e for e in ray.get([a.ready.remote() for a in self.pool], timeout=ACTOR_START_S) if e]
        except RayError as e:
            self.close()
            raise ModelError(f"{self.path}: the Ray actors did not start ({type(e).__name__})") from e
        if errors:
            self.close()
            raise ModelError(errors[0])

    def run_segments(self, segments: Sequence[LabelledSegment]) -> Outputs:
        return Outputs(probs=np.stack([s.probs for s in segments]), gates=np.stack([s.gates for s in segments]),
                       embedding=np.stack([s.embedding for s in segments]))

    def close(self, *, shutdown: bool = True) -> None:
        """End the actors; and Ray itself where this process started or joined it (``shutdown``)."""
        for a in self.pool:
            ray.kill(a)
        self.pool = []
        if shutdown and self._started:
            ray.shutdown()


@dataclass
class _Work:
    source: Source
    plan: object | None = None  # ObjectRef[list[Range]]
    labelled: deque = field(default_factory=deque)  # ObjectRef[Decoded] (labelled) per range, in order
    audio_stats: object | None = None  # ObjectRef[DecodeStats] of its audio track, when it was cut
    error: BaseException | None = None  # its plan failed: raised when the file's turn comes, not before


class Scheduler:
    """Submits the plan, decode and label calls of the files to be read, in their order, keeping up to
    ``2 * workers`` ranges in flight; the pipeline's opener takes each file's labelled ranges in turn."""

    def __init__(self, labels: RayLabels, *, decode: DecodeConfig, segment: SegmentConfig):
        self.labels, self.decode, self.segment = labels, decode, segment
        self.window = 2 * labels.workers
        self.queue: deque[_Work] = deque()
        self.by_name: dict[str, _Work] = {}
        self._next_actor = 0
        self._lock = threading.Lock()
        self.counts = RangeCounts()

    def add(self, sources: Sequence[Source]) -> None:
        for s in sources:
            w = _Work(s, plan=plan_file.remote(s.name, self.segment, self.labels.config.range_s))
            self.queue.append(w)
            self.by_name[s.name] = w

    def in_flight(self) -> int:
        return sum(len(w.labelled) for w in self.queue)

    def _submit(self, w: _Work, rng: Range, audio: list) -> None:
        actor = self.labels.pool[self._next_actor % len(self.labels.pool)]
        self._next_actor += 1
        w.labelled.append(actor.label.remote(decode_range.remote(w.source.name, rng, self.decode, self.segment, audio)))

    def top_up(self, stop: threading.Event) -> None:
        """Submit ranges of the files ahead (their plans in order) while fewer than the window are in flight."""
        with self._lock:
            for w in list(self.queue):
                if self.in_flight() >= self.window or stop.is_set():
                    return
                if w.plan is not None:
                    self._plan_ranges(w, stop)

    def _plan_ranges(self, w: _Work, stop: threading.Event) -> None:
        """Submit ``w``'s ranges once its plan is in; a plan that failed is kept for the file's own turn."""
        try:
            ranges = _resolve(w.plan, stop, w.source) or []
        except Exception as e:  # any error of that file's plan is that file's
            w.error, ranges = e, []
        w.plan = None
        audio: list = []
        if len(ranges) > 1:  # decoded once, before the ranges so that Ray starts it first; they take it by reference
            # (num_returns=2 gives two references; Ray's stubs do not say so)
            track, w.audio_stats = decode_audio.remote(w.source.name, self.decode, self.segment)  # type: ignore[misc]
            audio = [track]  # type: ignore[has-type]
            self.counts.cut += 1
            self.counts.ranges += len(ranges)
        self.counts.files += 1
        for rng in ranges:
            self._submit(w, rng, audio)

    def segments(self, source: Source, stop: threading.Event) -> Iterator[LabelledSegment]:
        """``source``'s labelled segments in order; what is left of it is cancelled when the reader stops."""
        w = self.by_name.get(source.name)
        if w is None:
            raise SourceError(f"{source.shown}: not planned for this Ray run")
        try:
            while True:
                self.top_up(stop)
                if w.error is not None:
                    raise w.error
                if (w.plan is None and not w.labelled) or stop.is_set():
                    self._done(w, stop)
                    return
                if not w.labelled:  # its plan is behind the window: make room for it
                    with self._lock:
                        self._plan_ranges(w, stop)
                    continue
                ref = w.labelled[0]
                part = _resolve(ref, stop, source)
                w.labelled.popleft()
                if part is None:
                    continue  # stopped
                self.counts.decoded.add(part.stats)
                yield from part.segments
        finally:
            with self._lock:
                for ref in w.labelled:
                    ray.cancel(ref)
                w.labelled.clear()
                if w.audio_stats is not None:
                    ray.cancel(w.audio_stats)
                w.plan = w.audio_stats = None
                if w in self.queue:
                    self.queue.remove(w)

    def _done(self, w: _Work, stop: threading.Event) -> None:
        """A file read to its end: count its audio track's decoding."""
        if w.audio_stats is not None:
            stats = _resolve(w.audio_stats, stop, w.source)  # (None when stopped)
            w.audio_stats = None
            if stats is not None:
                self.counts.audio_tracks += 1
                self.counts.decoded.add(stats)

    def cancel(self) -> None:
        with self._lock:
            for w in self.queue:
                for ref in w.labelled:
                    ray.cancel(ref)
                for ref in (w.plan, w.audio_stats):
                    if ref is not None:
                        ray.cancel(ref)
            self.queue.clear()


def _resolve(ref, stop: threading.Event, source: Source):
    """:func:`_get`, waiting in short steps so a stop is seen (then None); Ray's own errors come out as a
    SourceError naming the file."""
    while not stop.is_set():
        ready, _ = ray.wait([ref], timeout=_POLL_S)
        if ready:
            break
    else:
        return None
    try:
        return get(ref)
    except RayTaskError as e:
        raise SourceError(f"{source.shown}: a Ray task failed ({type(e).__name__})") from e
    except RayError as e:
        raise SourceError(f"{source.shown}: Ray gave up on it ({type(e).__name__}: {e})") from e


class RayPipeline(Pipeline):
    """The local pipeline, reading through a :class:`Scheduler` of the Ray run."""

    def __init__(self, labels: RayLabels, sinks, **kwargs):
        # RayLabels has the surface of an Engine that the pipeline uses (spec, run_segments, device)
        super().__init__(cast(Engine, labels), sinks, opener=self._open, **kwargs)
        spec = labels.spec
        self.scheduler = Scheduler(labels, decode=spec.decode, segment=spec.segment)

    def _open(self, source: Source, stop: threading.Event):
        if source.path is None or self.config.is_live(source):
            raise SourceError(f"{source.shown}: --engine ray labels local files; run live sources and URLs "
                              "with the local engine")
        return self.scheduler.segments(source, stop)

    def run(self, sources: Sequence[Source]):
        sources = list(sources)
        stems = output_stems(sources, claims=self.out.claims() if self.out is not None else None)
        todo = [s for s in sources if s.error is None and s.path is not None and not self.config.is_live(s)
                and not (self.config.resume and self.out is not None
                         and self.out.redo_reason(s, stems[s.name]) is None)]
        self.scheduler.add(todo)
        try:
            stats = super().run(sources)
        finally:
            self.scheduler.cancel()
        stats.ranges = self.scheduler.counts
        return stats
