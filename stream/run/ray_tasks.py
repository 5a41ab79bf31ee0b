"""The Ray tasks of ``avfuse run --engine ray`` (:mod:`avfuse.stream.run.ray_engine`) and what they hand back:
a file's plan (its ranges), a cut file's audio track, decoded once, and a range's segments.

A task's error comes back, through :func:`get`, as the error the task raised, so a file that cannot be
decoded gets the local engine's ``error`` record."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import ray
from ray.exceptions import RayTaskError

from avfuse.stream.media.audio_track import AudioTrack, decode_audio_track
from avfuse.stream.media.config import DecodeConfig, SegmentConfig
from avfuse.stream.media.decode import DecodeStats
from avfuse.stream.media.range_decode import Range, plan_ranges, range_segments

DECODE_CPUS = 1  # a decode task asks Ray for one CPU and decodes on one FFmpeg thread: Ray shares out the cores
TASK_RETRIES = 3  # a decode or plan task whose worker dies is run again this often


@ray.remote(num_cpus=0, max_retries=TASK_RETRIES)
def plan_file(path: str, segment: SegmentConfig, range_s: float) -> list[Range]:
    return plan_ranges(path, segment, range_s=range_s)


@dataclass(frozen=True)
class Decoded:
    """A range's segments (labelled, once back from an actor) and what decoding them took."""

    segments: list
    stats: DecodeStats


@dataclass
class RangeCounts:
    """What a Ray run cut and decoded: files planned, those cut into several ranges and their ranges, audio
    tracks decoded for the cut files (one each), and the decoders' counts over all tasks read."""

    files: int = 0
    cut: int = 0
    ranges: int = 0
    audio_tracks: int = 0
    decoded: DecodeStats = field(default_factory=DecodeStats)


def _one_thread(decode: DecodeConfig) -> DecodeConfig:
    # FFmpeg's threads give the frames one thread gives; one per CPU asked for, or every task takes every core
    return replace(decode, threads=decode.threads or DECODE_CPUS)


@ray.remote(num_cpus=DECODE_CPUS, max_retries=TASK_RETRIES, num_returns=2)
def decode_audio(path: str, decode: DecodeConfig, segment: SegmentConfig) -> tuple[AudioTrack, DecodeStats]:
    track = decode_audio_track(path, decode=_one_thread(decode), segment=segment)
    return track, track.stats


def get(ref):
    """``ray.get(ref)``, a task's error raised as the error the task raised (so its record is the local
    engine's, and a range's is its audio task's)."""
    try:
        return ray.get(ref)
    except RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


@ray.remote(num_cpus=DECODE_CPUS, max_retries=TASK_RETRIES)
def decode_range(path: str, rng: Range, decode: DecodeConfig, segment: SegmentConfig, audio: list) -> Decoded:
    """``audio``: [a reference to the file's AudioTrack] for a cut file (nested, so that this task starts,
    and decodes its video, before the audio is ready), [] for a whole one."""
    stats = DecodeStats()
    track = (lambda: get(audio[0])) if audio else None
    segments = list(range_segments(path, rng, decode=_one_thread(decode), segment=segment, audio=track, stats=stats))
    return Decoded(segments, stats)
