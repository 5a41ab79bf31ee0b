"""``avfuse probe SOURCE``: a source's streams, duration, captions and segment count (:mod:`avfuse.stream.media.probe`
does the looking)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from avfuse.stream.media.config import DecodeConfig, SegmentConfig, frames_per_window, samples_per_window
from avfuse.stream.media.netsource import DEFAULT_TIMEOUT_S
from avfuse.stream.media.probe import StreamInfo, probe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FILE", help="media file or URL")
    parser.add_argument("--fps", type=float, default=DecodeConfig().fps, help="sampled frames per second")
    parser.add_argument("--window", type=float, default=SegmentConfig().window_s, help="segment length, s")
    parser.add_argument("--hop", type=float, default=None, help="segment hop, s (default: the window)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help="open and read timeout of a URL, seconds (default %(default)s)")


def _line(s: StreamInfo) -> str:
    if s.type == "video":
        fps = f" {s.fps:g} fps" if s.fps else ""
        return f"video #{s.index}: {s.codec} {s.width}x{s.height}{fps}"
    if s.type == "audio":
        return f"audio #{s.index}: {s.codec} {s.sample_rate} Hz {s.channels} ch ({s.layout})"
    if s.type == "picture":
        return f"picture #{s.index}: {s.codec} {s.width}x{s.height} (a cover image, not video)"
    lang = f" [{s.language}]" if s.language else ""
    return f"{s.type} #{s.index}: {s.codec}{lang}"


def run(args: argparse.Namespace) -> int:
    decode = DecodeConfig(fps=args.fps)
    segment = SegmentConfig(window_s=args.window, hop_s=args.hop)
    result = probe(args.source, segment=segment, timeout=args.timeout)
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    duration = "unknown" if result.duration is None else f"{result.duration:.3f} s"
    print(f"{result.source}")
    print(f"  format:   {result.format}, duration {duration}, first timestamp {result.start:.3f} s")
    for s in result.streams:
        print(f"  {_line(s)}")
    if not any(s.type == "video" for s in result.streams):
        print("  (no video: segments carry black frames, present.video = false)")
    if not any(s.type == "audio" for s in result.streams):
        print("  (no audio: segments carry silence, present.audio = false)")
    subs = [s for s in result.streams if s.type == "subtitle"]
    if result.sidecar:
        print(f"  captions: sidecar {result.sidecar} ({result.caption_events} events)")
    elif subs:
        print(f"  captions: embedded stream #{subs[0].index} ({result.caption_events} events)")
    else:
        print("  captions: none")
    approx = "" if result.exact else "about "
    print(f"  segments: {approx}{result.segments} (fps {decode.fps:g}, window {segment.window_s:g} s, "
          f"hop {segment.hop:g} s: {frames_per_window(decode, segment)} frames of {decode.width}x{decode.height}"
          f" and {samples_per_window(decode, segment)} samples each)")
    return 0
