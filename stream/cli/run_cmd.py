"""``avfuse run model.onnx SOURCE... [-o OUT]``: label files, folders, globs, stdin lists and live
streams with an ONNX model, writing records to one or more sinks.

Live sources (rtsp:// and other streams; files with ``--loop``) run until stopped: SIGINT or SIGTERM
flushes what was labelled and prints the summary, with the live latency, drops and reconnects.

Network sinks (webhook, MQTT) retry with backoff; what they still cannot deliver is spooled in
``OUT/.spool`` and replayed by the next run, and its source is not marked done until then.

The model file is watched (``--watch-model``) and SIGHUP reloads it: a replaced file that fits the running
decode configuration takes over between two batches (``avfuse.stream.run.model_swap``); ``--clips DIR`` saves each
event's media (``avfuse.stream.run.event_clips``).

Exit code: 0 when every source was labelled and every record delivered, 1 when any source failed,
3 when all were labelled but some records were not delivered (spooled, or lost without ``-o``) or
some event clips (``--clips``) could not be written or were truncated,
130 (SIGINT) or 143 (SIGTERM) when stopped; the summary is printed on stderr either way.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from avfuse.stream.errors import ConfigError, DependencyError
from avfuse.stream.infer.engine import DEVICES, GRAPH_OPT, Engine, EngineConfig, default_cache_dir
from avfuse.stream.infer.events import EventConfig
from avfuse.stream.infer.modelspec import file_sha256
from avfuse.stream.infer.postprocess import PostprocessConfig, parse_smoothing
from avfuse.stream.media.live import LiveConfig
from avfuse.stream.media.reconnect import Backoff
from avfuse.stream.media.redact import redact
from avfuse.stream.media.transport import MODES as LIVE_TRANSPORTS
from avfuse.stream.run.event_clips import BUFFER_S as CLIP_BUFFER_S
from avfuse.stream.run.event_clips import PAD_S as CLIP_PAD_S
from avfuse.stream.run.event_clips import ClipConfig, EventClips
from avfuse.stream.run.live_output import Rotation
from avfuse.stream.run.metrics import DEFAULT_HOST, Metrics
from avfuse.stream.run.model_swap import POLL_S, ModelSwap
from avfuse.stream.run.outputs import OutputDir, RunOutputs, check_target, write_atomic
from avfuse.stream.run.pipeline import FILE_WAIT_MS, Pipeline, PipelineConfig
from avfuse.stream.run.ray_extra import EXIT_MISSING, import_ray_module
from avfuse.stream.run.report import hooks as report_hooks
from avfuse.stream.run.sinks import make_sinks
from avfuse.stream.run.sinks.files import FileSink
from avfuse.stream.run.sinks.spool import DeliveryConfig
from avfuse.stream.run.sources import expand
from avfuse.stream.run.summary import Progress

log = logging.getLogger(__name__)
EXIT_SIGNAL: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
EXIT_FAILED = 1
EXIT_UNDELIVERED = 3
EPILOG = (f"exit status: 0 all labelled and delivered; {EXIT_FAILED} a source failed; {EXIT_UNDELIVERED} records "
          "not delivered to a webhook or MQTT sink (spooled in OUT/.spool and replayed by the next run, or "
          f"lost without -o), or event clips (--clips) not written or truncated; {EXIT_SIGNAL[signal.SIGINT]} or "
          f"{EXIT_SIGNAL[signal.SIGTERM]} stopped by SIGINT "
          "or SIGTERM")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("model", help="an avfuse .onnx file (it carries its own labels and decode settings)")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="files, folders (searched recursively), globs, rtsp:// URLs, or - for a list on stdin")
    parser.add_argument("-o", "--out", type=Path, help="output folder (one file per source per file sink); "
                        "without it, jsonl/csv records go to stdout")
    parser.add_argument("--sink", action="append", default=[], metavar="SINK",
                        help="jsonl (default), csv, table, http(s)://URL (webhook), mqtt://HOST[:PORT]/TOPIC; "
                        "repeat for several")
    parser.add_argument("--resume", action="store_true", help="skip sources already complete in OUT")
    g = parser.add_argument_group("engine")
    g.add_argument("--device", choices=DEVICES, default="auto")
    g.add_argument("--strict-device", action="store_true", help="fail rather than fall back to another device")
    g.add_argument("--threads", type=int, default=0, help="inference threads (0: onnxruntime decides)")
    g.add_argument("--graph-opt", choices=tuple(GRAPH_OPT), default="all")
    g.add_argument("--fp16", action="store_true", help="TensorRT fp16 kernels")
    g.add_argument("--cache-dir", type=Path, default=None,
                   help=f"optimised model and TensorRT engine cache (default {default_cache_dir()})")
    g.add_argument("--no-cache", action="store_true")
    g.add_argument("--batch", type=int, default=8, help="segments per inference batch at most")
    g.add_argument("--max-wait-ms", type=float, default=None,
                   help=f"longest wait to fill a batch (default: {FILE_WAIT_MS:g} ms; 0 when a source is live)")
    g.add_argument("--queue", type=int, default=32, help="decoded segments buffered before inference")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): this process; ray: decode and label on a Ray cluster (files only; "
                   "pip install 'avfuse[ray]'), the outputs written here as locally")
    g.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                   help="--engine ray: the cluster to join (default: start one on this machine for the run)")
    g.add_argument("--workers", type=int, default=0, metavar="N",
                   help="--engine ray: inference actors, each with one onnxruntime session (0: one per CPU)")
    g.add_argument("--watch-model", type=float, default=POLL_S, metavar="S",
                   help="look at the model file every S seconds and swap in a replaced one between two batches "
                   "(0: only on SIGHUP); each record's model is the labelling file's SHA-256 prefix")
    v = parser.add_argument_group("live sources (rtsp:// and other streams, each read on its own thread)")
    v.add_argument("--loop", action="store_true",
                   help="play files as if live: paced at real speed, over and over, until stopped (Ctrl-C)")
    v.add_argument("--live-transport", choices=LIVE_TRANSPORTS, default=LiveConfig.transport,
                   help="RTSP transport; auto (default): TCP, else UDP where TCP is refused or silent, and the "
                   "other way round; what worked is kept for the source's reconnects")
    v.add_argument("--timeout", "--live-timeout", dest="live_timeout", type=float,
                   default=LiveConfig.timeout_s, metavar="S",
                   help="open and read timeout of every network source: a live one that stalls this long is "
                   "reconnected, a file over http(s) fails")
    v.add_argument("--live-attempts", type=int, default=10, metavar="N",
                   help="connection attempts in a row before a live source is given up (0: retry forever)")
    v.add_argument("--live-backoff", type=float, default=Backoff().initial, metavar="S",
                   help="first reconnect delay; it doubles per failed attempt, with jitter")
    v.add_argument("--live-backoff-max", type=float, default=Backoff().cap, metavar="S",
                   help="longest reconnect delay")
    p = parser.add_argument_group("labels and events")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--smooth", default="none", help="none, mean:K (moving average of K segments) or ema:ALPHA")
    p.add_argument("--threshold", type=float, default=0.5, help="lowest score that counts towards an event")
    p.add_argument("--min-event-s", type=float, default=0.0, help="shortest event reported (seconds)")
    p.add_argument("--clips", type=Path, metavar="DIR", help="save each event's media (packets copied, from a "
                   "keyframe) as DIR/STEM.<start ms>.<label>.mkv; the event record's clip is its absolute path")
    p.add_argument("--clip-pad", type=float, default=CLIP_PAD_S, metavar="S",
                   help="seconds of media kept before and after each event in its clip (default %(default)s)")
    p.add_argument("--clip-buffer", type=float, default=CLIP_BUFFER_S, metavar="S",
                   help="media kept per source to cut clips from: the longest clip (event + 2 pads) kept whole "
                   "(default %(default)s)")
    o = parser.add_argument_group("outputs")
    o.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on HOST:PORT")
    o.add_argument("--metrics-host", default=DEFAULT_HOST, metavar="HOST",
                   help="address the metrics listener binds (0.0.0.0: every interface); default %(default)s")
    d = DeliveryConfig()
    o.add_argument("--sink-timeout", "--webhook-timeout", type=float, default=d.timeout_s, metavar="S",
                   help="longest one delivery attempt to a webhook or MQTT sink may take")
    o.add_argument("--sink-retries", "--webhook-retries", type=int, default=d.retries, metavar="N",
                   help="delivery attempts after the first, before records are spooled")
    o.add_argument("--sink-backoff", type=float, default=d.backoff_s, metavar="S",
                   help="wait before the first retry; it doubles per retry")
    o.add_argument("--sink-pause", type=float, default=d.pause_s, metavar="S",
                   help="after a delivery fails every attempt, records are spooled at once for this long")
    o.add_argument("--rotate", type=Rotation.parse, default=None, metavar="PERIOD|SIZE",
                   help="live sources: a new output file per period (1h, 30m, 1d) or size (10MB), named after "
                   "its UTC start time")
    o.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    report_hooks.add_arguments(o)


def _configs(args: argparse.Namespace) -> tuple[EngineConfig, PipelineConfig]:
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    engine = EngineConfig(device=args.device, strict_device=args.strict_device, threads=args.threads,
                          graph_opt=args.graph_opt, cache_dir=cache, fp16=args.fp16, max_batch=args.batch)
    post = PostprocessConfig(top_k=args.top_k, **parse_smoothing(args.smooth))
    events = EventConfig(threshold=args.threshold, min_duration_s=args.min_event_s)
    if args.resume and args.out is None:
        raise ConfigError("--resume needs -o OUT (it looks there for the completed sources)")
    backoff = Backoff(initial=args.live_backoff, cap=max(args.live_backoff, args.live_backoff_max))
    live = LiveConfig(transport=args.live_transport, timeout_s=args.live_timeout, attempts=args.live_attempts,
                      backoff=backoff, loop=args.loop)
    pipeline = PipelineConfig(batch=args.batch, max_wait_ms=args.max_wait_ms, queue_size=args.queue, post=post,
                              events=events, resume=args.resume, live=live)
    return engine, pipeline


def _output_dir(args: argparse.Namespace) -> OutputDir | None:
    """The -o folder, locked for this run and checked writable before the first source starts."""
    if args.out is None:
        return None
    out = OutputDir(args.out)
    out.lock()
    try:
        out.check()
    except BaseException:
        out.unlock()
        raise
    return out


def run(args: argparse.Namespace) -> int:
    engine_cfg, pipe_cfg = _configs(args)
    ray_run = None
    if args.engine != "ray" and (args.address is not None or args.workers):
        raise ConfigError("--address and --workers are options of --engine ray")
    if args.engine == "ray":
        if args.clips is not None:
            raise ConfigError("--clips works with the local engine only (--engine local)")
        try:
            ray_run = import_ray_module("avfuse.stream.run.ray_engine", who="avfuse run --engine ray")
        except DependencyError as e:
            print(f"avfuse run: {e}", file=sys.stderr)
            return EXIT_MISSING
        ray_cfg = ray_run.RayConfig(address=args.address, workers=args.workers)
    if args.summary_json is not None:  # checked now, not found out after the whole run
        check_target(args.summary_json)
    sources = expand(args.sources)
    clips = (EventClips(ClipConfig(folder=args.clips, pad_s=args.clip_pad, buffer_s=args.clip_buffer))
             if args.clips is not None else None)
    if clips is not None:
        clips.check()
    engine = ray_run.RayLabels(args.model, engine_cfg, ray_cfg) if ray_run else Engine(args.model, engine_cfg)
    out = _output_dir(args)
    metrics = Metrics()
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, args.metrics_host)  # a busy port fails here, before any sink has connected
    previous: dict = {}
    models: ModelSwap | None = None
    views = report_hooks.RunViews()
    try:
        views = report_hooks.RunViews.from_args(args, out)  # --thumbnails, --ui-port
        delivery = DeliveryConfig(timeout_s=args.sink_timeout, retries=args.sink_retries,
                                  backoff_s=args.sink_backoff, pause_s=args.sink_pause)
        sinks = make_sinks(args.sink, out, delivery=delivery, rotation=args.rotate)
        if out is not None:  # what each source's marker records, and --resume checks
            out.outputs = RunOutputs(model_sha256=file_sha256(args.model),
                                     sinks=tuple(sorted(redact(s) for s in args.sink or ["jsonl"])),
                                     exts=tuple(s.ext for s in sinks if isinstance(s, FileSink)))
        if ray_run:  # the actors hold the model: a swap would need them all to reload (not done yet)
            pipeline = ray_run.RayPipeline(engine, sinks, config=pipe_cfg, out=out, metrics=metrics, taps=views.taps)
        else:
            models = ModelSwap(engine, lambda path: Engine(path, engine_cfg), poll_s=args.watch_model)
            pipeline = Pipeline(engine, sinks, config=pipe_cfg, out=out, metrics=metrics, taps=views.taps,
                                clips=clips, models=models)
        views.attach(pipeline.stats)
        received: list[int] = []

        def on_signal(signum, frame) -> None:
            if received:  # a second signal: stop waiting for the clean shutdown
                raise KeyboardInterrupt
            received.append(signum)
            pipeline.stop()

        previous = {s: signal.signal(s, on_signal) for s in EXIT_SIGNAL}
        if models is not None:
            swap = models
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda signum, frame: swap.request())
        with Progress(pipeline.stats, len(sources)):
            stats = pipeline.run(sources)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        metrics.close()
        if models is not None:
            models.close()
        views.close()
        if isinstance(engine, ray_run.RayLabels if ray_run else ()):
            engine.close()
        if out is not None:
            out.unlock()
    print(stats.render(), file=sys.stderr)
    if args.summary_json is not None:
        write_atomic(args.summary_json, json.dumps(stats.as_dict(), indent=2) + "\n")
    if received:
        return EXIT_SIGNAL[received[0]]
    if stats.sources_failed:
        return EXIT_FAILED
    clips_short = stats.clips is not None and (stats.clips.failed or stats.clips.truncated)
    return EXIT_UNDELIVERED if stats.records_undelivered or clips_short else 0
