"""``avfuse bench decode``: decode+segment throughput against the ffmpeg command line, same run.

The baseline is ``ffmpeg -i FILE -vf fps=4,scale=160:160 -ac 1 -ar 16000 -f null -``: the same
decoding, frame sampling, scaling and audio resampling, with no Python and no segmenting. With
``--real`` (or no FILE) the input is the real 720p clip remuxed end to end (continuous timestamps)
until it lasts at least ``--seconds``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av

from avfuse.stream.errors import DependencyError, MediaError
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, frames_per_window
from avfuse.stream.media.decode import DecodeStats, media_duration, open_container
from avfuse.stream.media.sample_clips import real_clip
from avfuse.stream.media.segmenter import iter_segments

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Timing:
    wall: float  # best wall time over the repeats, seconds
    cpu: float  # CPU time (user + system, all threads) of that side's best run, seconds
    segments: int = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default=None, help="media file (default: the real 720p clip)")
    parser.add_argument("--real", action="store_true", help="use the real 720p H.264 + 5.1 AAC clip")
    parser.add_argument("--seconds", type=float, default=60.0, help="loop the clip to at least this long")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; the best is kept")
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=160, help="frame height and width")


def loop_clip(src: str | Path, dst: str | Path, seconds: float) -> float:
    """Remux ``src`` into ``dst`` (no re-encoding) enough times to last ``seconds``; returns the length."""
    with av.open(str(src)) as inp:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        ends: dict[int, float] = {}
        starts: dict[int, float] = {}
        packets: list[tuple[av.Packet, int, int]] = []  # with its pts and dts
        for p in inp.demux(*streams):
            if p.dts is None or p.pts is None:
                continue
            tb = p.time_base
            starts[p.stream.index] = min(starts.get(p.stream.index, 1e18), float(p.pts * tb))
            ends[p.stream.index] = max(ends.get(p.stream.index, -1e18), float((p.pts + (p.duration or 0)) * tb))
            packets.append((p, p.pts, p.dts))
        if not packets:
            raise MediaError(f"{src}: no packets to loop")
        length = max(ends.values()) - min(starts.values())  # loops never overlap, whatever the stream
        loops = max(1, int(-(-seconds // length)))
        with av.open(str(dst), "w") as out:
            mapping = {s.index: out.add_stream_from_template(s) for s in streams}
            for i in range(loops):
                for p, pts, dts in packets:
                    shift = round(i * length / p.time_base)
                    q = av.Packet(bytes(p))
                    q.pts, q.dts, q.duration, q.time_base = pts + shift, dts + shift, p.duration, p.time_base
                    q.is_keyframe = p.is_keyframe
                    q.stream = mapping[p.stream.index]
                    out.mux(q)
    log.info("looped %s %d times into %s (%.1f s)", src, loops, dst, loops * length)
    return loops * length


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def time_ours(path: str | Path, decode: DecodeConfig) -> Timing:
    stats = DecodeStats()
    cpu, start = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    count = sum(1 for _ in iter_segments(path, decode=decode, segment=SegmentConfig(), stats=stats))
    wall, cpu = time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu
    log.debug("ours: %d segments, %s", count, stats)
    return Timing(wall=wall, cpu=cpu, segments=count)


def ffmpeg_command(ffmpeg: str, path: str | Path, decode: DecodeConfig) -> list[str]:
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path),
            "-vf", f"fps={decode.fps:g},scale={decode.width}:{decode.height}", "-ac", "1",
            "-ar", str(decode.sample_rate), "-f", "null", "-"]


def time_ffmpeg(cmd: list[str], path: str | Path) -> Timing:
    cpu, start = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _cpu(resource.RUSAGE_CHILDREN) - cpu
    if done.returncode != 0:
        raise MediaError(f"{path}: ffmpeg failed: {done.stderr.strip()[-300:]}")
    return Timing(wall=wall, cpu=cpu)


def run(args: argparse.Namespace) -> int:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise DependencyError("the baseline needs the ffmpeg command line: apt-get install ffmpeg")
    decode = DecodeConfig(fps=args.fps, height=args.size, width=args.size)
    with tempfile.TemporaryDirectory(prefix="avfuse-bench-") as tmp:
        if args.file and not args.real:
            path = Path(args.file)
            with open_container(path) as c:
                length = media_duration(c) or 0.0
        else:
            path = Path(tmp) / "looped.mkv"
            length = loop_clip(real_clip("bigbuckbunny"), path, args.seconds)
        cmd = ffmpeg_command(ffmpeg, path, decode)
        log.info("baseline: %s", " ".join(cmd))
        runs_ours, runs_ff = [], []
        for _ in range(max(1, args.repeat)):  # alternate, so both sides see the same machine load
            runs_ours.append(time_ours(path, decode))
            runs_ff.append(time_ffmpeg(cmd, path))
    ours, theirs = min(runs_ours, key=lambda t: t.wall), min(runs_ff, key=lambda t: t.wall)
    n = ours.segments
    segment = SegmentConfig()
    shown = path.name if args.file and not args.real else "bigbuckbunny 720p H.264 + 5.1 AAC, looped"
    print(f"input: {shown}, {length:.1f} s, {n} segments of {frames_per_window(decode, segment)} frames "
          f"{decode.width}x{decode.height} + {segment.window_s:g} s of {decode.sample_rate / 1000:g} kHz audio")
    print(f"{'':<8}{'wall s':>9}{'CPU s':>9}{'segments/s':>12}{'x real time':>13}")
    for name, t in (("avfuse", ours), ("ffmpeg", theirs)):
        print(f"{name:<8}{t.wall:>9.2f}{t.cpu:>9.2f}{n / t.wall:>12.1f}{length / t.wall:>13.1f}")
    print(f"ratio (avfuse / ffmpeg throughput): {theirs.wall / ours.wall:.2f}x wall, "
          f"{theirs.cpu / ours.cpu:.2f}x per CPU second  (goal >= 1.0x; best of {len(runs_ours)} alternating runs)")
    return 0
