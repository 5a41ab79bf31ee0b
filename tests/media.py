"""Test media made in code with PyAV: video whose every frame says which frame it is, audio of known
level or frequency, subtitle streams and sidecars, and broken files.

Frame ``i`` is one flat colour, ``frame_colour(i)``; ``frame_index(rgb)`` reads the index back from a
decoded (and possibly scaled, lossy) frame. Audio is a sine of ``freq`` Hz at ``level`` or, with
``freq=0``, a sequence of constant ``steps`` (one level per 0.5 s) that survives resampling.

Other engineers import these helpers; keep their signatures stable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

STEP = 16  # colour step between consecutive frame indices; big enough to survive lossy H.264
MS = Fraction(1, 1000)

ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
    "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
    "MarginR, MarginV, Encoding\n"
    "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


def frame_colour(i: int) -> tuple[int, int, int]:
    """The flat RGB colour of frame ``i`` (i < 256 * 15 / STEP distinct values in practice)."""
    return ((i * STEP) % 240 + 8, (i // 15) * STEP % 240 + 8, 128)


def frame_index(rgb: np.ndarray) -> int:
    """Read back which frame a decoded flat-colour frame was (inverse of :func:`frame_colour`)."""
    r, g = float(rgb[..., 0].mean()), float(rgb[..., 1].mean())
    return round((r - 8) / STEP) + 15 * round((g - 8) / STEP)


def irregular_times(seed: int | tuple[float, ...], frames: int = 40) -> tuple[float, ...]:
    """Frame times with gaps from 10 ms to 1.7 s, drawn with ``seed`` (or ``seed`` itself if it is the times)."""
    if isinstance(seed, tuple):
        return seed
    gaps = np.random.default_rng(seed).choice([0.01, 0.04, 0.1, 0.3, 1.7], size=frames, p=[0.2, 0.3, 0.3, 0.15, 0.05])
    return tuple(np.round(np.concatenate([[0.0], np.cumsum(gaps)]), 3))


@dataclass(frozen=True, kw_only=True)
class VideoSpec:
    """Video track: ``frames`` frames at ``fps``, or explicit presentation ``times`` (seconds, VFR)."""

    frames: int = 8
    fps: int = 4
    times: tuple[float, ...] | None = None
    width: int = 64
    height: int = 48
    codec: str = "ffv1"  # ffv1 (lossless RGB), libx264, libx264-lossless (qp=0), png
    start: float = 0.0  # pts of the first frame, seconds
    x264: tuple[tuple[str, str], ...] = ()  # extra libx264 options, e.g. (("g", "10"),) for an IDR every 10 frames

    def frame_times(self) -> list[float]:
        if self.times is not None:
            return [self.start + t for t in self.times]
        return [self.start + i / self.fps for i in range(self.frames)]


@dataclass(frozen=True, kw_only=True)
class AudioSpec:
    """Audio track: ``duration`` seconds starting at pts ``start``."""

    duration: float = 2.0
    rate: int = 48000
    channels: int = 2
    codec: str = "flac"  # flac, aac, pcm_s16le
    start: float = 0.0
    freq: float = 440.0  # 0 means constant-level steps instead of a sine
    level: float = 0.5
    steps: tuple[float, ...] = field(default=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8))

    def samples(self) -> np.ndarray:
        """The mono float signal written to every channel."""
        n = round(self.duration * self.rate)
        t = np.arange(n) / self.rate
        if self.freq:
            return (self.level * np.sin(2 * np.pi * self.freq * t)).astype(np.float32)
        idx = np.minimum((t / 0.5).astype(int), len(self.steps) - 1)
        return np.asarray(self.steps, dtype=np.float32)[idx]


Caption = tuple[float, float, str]  # start s, end s, text


def _encode_video(container, spec: VideoSpec) -> list[av.Packet]:
    codec = "libx264" if spec.codec.startswith("libx264") else spec.codec
    stream = container.add_stream(codec, rate=spec.fps)
    stream.width, stream.height = spec.width, spec.height
    stream.pix_fmt = {"ffv1": "bgr0", "png": "rgb24"}.get(codec, "yuv420p")
    stream.codec_context.time_base = MS
    if spec.codec == "libx264-lossless":
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0"}
    elif codec == "libx264":
        stream.options = {"crf": "18", "preset": "ultrafast", **dict(spec.x264)}  # ultrafast: no B-frames
    packets = []
    for i, t in enumerate(spec.frame_times()):
        arr = np.empty((spec.height, spec.width, 3), np.uint8)
        arr[...] = frame_colour(i)
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
        frame.pts, frame.time_base = round(t * 1000), MS
        packets += stream.encode(frame)
    packets += stream.encode(None)
    return packets


def _encode_audio(container, spec: AudioSpec) -> list[av.Packet]:
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[spec.channels]
    stream = container.add_stream(spec.codec, rate=spec.rate)
    stream.layout = layout
    stream.format = {"aac": "fltp", "flac": "s16", "pcm_s16le": "s16"}[spec.codec]
    pcm = (np.clip(spec.samples(), -1, 1) * 32767).astype(np.int16)
    packets, chunk, start_pts = [], 1024, round(spec.start * spec.rate)
    for off in range(0, len(pcm), chunk):
        block = pcm[off:off + chunk]
        data = np.repeat(block[:, None], spec.channels, axis=1).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = spec.rate, start_pts + off, Fraction(1, spec.rate)
        packets += stream.encode(frame)
    packets += stream.encode(None)
    return packets


def _subtitle_payload(codec: str, text: str) -> bytes:
    raw = text.encode()
    if codec == "mov_text":
        return len(raw).to_bytes(2, "big") + raw
    if codec == "ass":
        return b"0,0,Default,,0,0,0,," + raw
    return raw


def _subtitle_packets(container, codec: str, captions: list[Caption]) -> list[av.Packet]:
    stream = container.add_stream(codec)
    stream.codec_context.time_base = MS
    stream.codec_context.subtitle_header = ASS_HEADER.encode()
    stream.time_base = MS
    packets = []
    for start, end, text in captions:
        packet = av.Packet(_subtitle_payload(codec, text))
        packet.stream = stream
        packet.pts = packet.dts = round(start * 1000)
        packet.duration = round((end - start) * 1000)
        packet.time_base = MS
        packets.append(packet)
    return packets


def _packet_time(p: av.Packet) -> float:
    ts = p.dts if p.dts is not None else p.pts
    return float(ts * p.time_base) if ts is not None else 0.0


def _cover_packets(container) -> list[av.Packet]:
    """A 32x32 JPEG cover image as an ``attached_pic`` video stream, as music files carry one."""
    stream = container.add_stream("mjpeg", rate=1)
    stream.width = stream.height = 32
    stream.pix_fmt = "yuvj420p"
    stream.disposition = av.stream.Disposition.attached_pic
    frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
    frame.pts = 0
    return stream.encode(frame) + stream.encode(None)


def write_media(path: str | os.PathLike, *, video: VideoSpec | None = None, audio: AudioSpec | None = None,
                captions: list[Caption] | None = None, caption_codec: str = "subrip",
                container_options: dict[str, str] | None = None, cover: bool = False) -> Path:
    """Write a file with the given tracks (container from the suffix: .mkv, .mp4, .mov, .webm); ``cover``
    adds a cover image (an attached picture: .mp4 / .m4a / .mov keep it as one)."""
    path = Path(path)
    with av.open(str(path), "w", options=container_options or {}) as out:
        packets = []
        if video is not None:
            packets += _encode_video(out, video)
        if audio is not None:
            packets += _encode_audio(out, audio)
        if cover:
            packets += _cover_packets(out)
        if captions:
            packets += _subtitle_packets(out, caption_codec, captions)
        for packet in sorted(packets, key=_packet_time):
            out.mux(packet)
    return path


def write_sidecar(path: str | os.PathLike, captions: list[Caption]) -> Path:
    """A caption file (.srt / .vtt / .ass by suffix) written with pysubs2."""
    import pysubs2

    subs = pysubs2.SSAFile()
    for start, end, text in captions:
        subs.append(pysubs2.SSAEvent(start=round(start * 1000), end=round(end * 1000),
                                     text=text.replace("\n", "\\N")))
    subs.save(str(path))
    return Path(path)


def truncate(src: str | os.PathLike, dst: str | os.PathLike, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst``."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def write_garbage(path: str | os.PathLike, size: int = 20000, seed: int = 0) -> Path:
    """Random bytes with a media-looking name."""
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return Path(path)


def corrupt_packets(src: str | os.PathLike, dst: str | os.PathLike, indices: set[int], seed: int = 0) -> Path:
    """Remux ``src`` to ``dst`` replacing the payload of the video packets at ``indices`` with garbage."""
    rng = np.random.default_rng(seed)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        n = 0
        for packet in inp.demux(*[inp.streams[i] for i in mapping]):
            if packet.dts is None:
                continue
            stream = mapping[packet.stream.index]
            if packet.stream.type == "video":
                if n in indices:
                    bad = av.Packet(rng.integers(0, 256, max(packet.size, 64), dtype=np.uint8).tobytes())
                    bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                    bad.duration = packet.duration
                    packet = bad
                n += 1
            packet.stream = stream
            out.mux(packet)
    return Path(dst)
