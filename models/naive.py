"""The loop a user writes first, as the baseline of ``avfuse bench run``: PyAV decodes every frame to
a full-size RGB array, the frames of each window are picked and resized in torch, the audio resampled
in torch, and PyTorch eager runs each segment in turn. Nothing overlaps: decoding waits for the model
and the model waits for decoding.

Also: the PyTorch model for the bench when no checkpoint is given (untrained weights, same architecture
and shapes: speed does not depend on the weights).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import av
import numpy as np
import torch
import torchaudio
from torch.nn import functional as F

from avfuse.models.net import AvfuseNet, ModelConfig, build_model
from avfuse.stream.errors import MediaError, ModelError, SourceError
from avfuse.stream.infer.tokenize import Tokenizer
from avfuse.stream.media.config import (
    DecodeConfig,
    SegmentConfig,
    decode_metadata,
    frames_per_window,
    samples_per_window,
)


@dataclass(frozen=True, kw_only=True)
class NaiveResult:
    segments: int
    media_s: float
    wall_s: float


def default_model(decode: DecodeConfig | None = None,
                  segment: SegmentConfig | None = None) -> tuple[AvfuseNet, dict, Tokenizer]:
    """An untrained model with the default shapes, its ``avfuse.decode`` dict and a small tokenizer."""
    decode, segment = decode or DecodeConfig(), segment or SegmentConfig()
    meta = decode_metadata(decode, segment)
    tok = Tokenizer.build(["a person speaks", "music plays", "a car passes"], max_len=16)
    config = ModelConfig(labels=("speech", "music", "traffic"), frames=meta["frames"], height=decode.height,
                         width=decode.width, sample_rate=decode.sample_rate, samples=meta["samples"],
                         vocab_size=len(tok), max_tokens=tok.max_len)
    return build_model(config).eval(), meta, tok


def model_from_metadata(model_meta: dict) -> AvfuseNet:
    """The architecture an exported file describes (``avfuse.model["config"]``), untrained."""
    if "config" not in model_meta:
        raise ModelError("the ONNX file's avfuse.model metadata has no 'config' (the architecture to rebuild); "
                         "give --checkpoint RUN/model.pt")
    return build_model(ModelConfig.from_dict(model_meta["config"])).eval()


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """float32 mono in [-1, 1] from any sample format, planar (``[channels, n]``) or packed (interleaved)."""
    channels = len(frame.layout.channels)
    a = frame.to_ndarray()
    a = a.reshape(channels, -1) if frame.format.is_planar else a.reshape(-1, channels).T
    if np.issubdtype(a.dtype, np.integer):  # s16, s32: scale by the full range; u8: centred on 128
        info = np.iinfo(a.dtype)
        a = (a.astype(np.float32) - (info.max + info.min + 1) / 2) / ((info.max - info.min + 1) / 2)
    return a.mean(axis=0, dtype=np.float32)


def _decoded(container: av.container.InputContainer, streams: list, path: str):
    try:
        yield from container.decode(*streams)
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot decode: {e}") from e


def naive_run(path: str, model: AvfuseNet, *, decode: DecodeConfig, segment: SegmentConfig) -> NaiveResult:
    """Label ``path`` the naive way; returns counts and the wall time."""
    T, S = frames_per_window(decode, segment), samples_per_window(decode, segment)
    window, hop = segment.window_s, segment.hop
    cfg = model.config
    tokens = torch.zeros(1, cfg.max_tokens, dtype=torch.long)
    start = time.perf_counter()
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as e:
        raise SourceError(f"{path}: cannot open ({e})") from e
    frames: list[tuple[float, np.ndarray]] = []
    audio: list[tuple[float, np.ndarray]] = []
    rate = None
    k = 0
    segments = 0

    def run_window(k: int) -> None:
        lo = k * hop
        times = lo + (np.arange(T) + 0.5) * window / T
        picked = []
        for t in times:
            before = [f for ft, f in frames if ft <= t] or [frames[0][1]]
            picked.append(torch.from_numpy(before[-1]))
        clip = torch.stack(picked).permute(0, 3, 1, 2).float()  # [T, 3, h, w] full size
        clip = F.interpolate(clip, size=(decode.height, decode.width), mode="bilinear", align_corners=False)
        clip = clip.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)[None]
        near = [(at, a) for at, a in audio if at < lo + window and at + len(a) / rate > lo] if rate else []
        if near:  # the chunks overlapping the window, resampled, then cut to start at the window's start
            wave = torchaudio.functional.resample(torch.from_numpy(np.concatenate([a for _, a in near])).float(),
                                                  rate, decode.sample_rate)
            shift = round((lo - near[0][0]) * decode.sample_rate)
            wave = wave[shift:] if shift >= 0 else F.pad(wave, (-shift, 0))
        else:  # no audio stream, or a gap in it
            wave = torch.zeros(S)
        wave = F.pad(wave[:S], (0, max(0, S - wave.shape[0])))[None]
        present = torch.tensor([[1.0, 1.0 if near else 0.0, 0.0]])
        with torch.no_grad():
            model(clip, wave, tokens, present)

    with container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        if not any(s.type == "video" for s in streams):
            raise MediaError(f"{path}: the naive loop needs a video stream")
        for frame in _decoded(container, streams, path):
            if frame.time is None:
                continue
            if isinstance(frame, av.AudioFrame):
                rate = frame.sample_rate
                audio.append((frame.time, _mono(frame)))
                continue
            frames.append((frame.time, frame.to_ndarray(format="rgb24")))  # every frame, full size
            while frame.time >= k * hop + window:
                run_window(k)
                segments += 1
                k += 1
                # keep the frame on screen at the next window's start, and audio that reaches into it
                first = max((i for i, (t, _) in enumerate(frames) if t <= k * hop), default=0)
                frames[:] = frames[first:]
                audio[:] = [(t, a) for t, a in audio if t + len(a) / rate > k * hop]
        if frames:
            run_window(k)
            segments += 1
            k += 1
    return NaiveResult(segments=segments, media_s=k * hop, wall_s=time.perf_counter() - start)
