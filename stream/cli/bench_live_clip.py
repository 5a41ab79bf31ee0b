"""The clip ``avfuse bench live`` serves: H.264 encoded once, before the bench, so that the RTSP test server
only loops and payloads it (:func:`avfuse.stream.cli.rtsp_test_server._launch_clip`) and the cores measured are the
ones reading the streams, not an encoder's.

An Annex B elementary stream with a key frame every second and no B-frames (the server stamps the frames in
order from the frame rate), parameter sets repeated at every key frame, and a loop that starts on a key frame.
A bar sweeps across a textured colour ramp that drifts and changes colour per frame, so every frame differs and
carries detail, as a camera's would; High profile (CABAC, deblocking) at about a camera's bit rate.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from avfuse.stream.errors import ConfigError

BITRATE = 2_000_000  # about what a 720p25 camera sends


def encode_clip(path: Path, *, width: int, height: int, fps: int, seconds: float) -> Path:
    """Write ``seconds`` of ``width`` x ``height`` video at ``fps`` to ``path`` (raw H.264); returns ``path``."""
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ConfigError(f"clip size must be even and >= 16 pixels, got {width}x{height}")
    if fps < 1 or seconds < 1:
        raise ConfigError(f"clip needs fps >= 1 and >= 1 s, got {fps} fps, {seconds} s")
    frames = round(seconds) * fps  # whole seconds: the loop point falls on a key frame
    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = BITRATE
        stream.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "high", "g": str(fps),
                          "keyint_min": str(fps), "sc_threshold": "0", "bf": "0",
                          "x264-params": "repeat-headers=1:aud=1"}  # SPS/PPS at every key frame, frame delimiters
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :]
        scene = np.random.default_rng(0).integers(0, 48, (height + fps, width + fps), dtype=np.uint8)  # texture
        bar = max(width // 12, 2)
        for i in range(frames):
            pan = i % fps  # the scene drifts a pixel a frame, as under a camera that sways
            texture = scene[pan:pan + height, pan:pan + width]
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (ramp + 9 * i) % 208 + texture
            img[..., 1] = (255 - ramp) % 208 + texture
            img[..., 2] = (37 * i) % 208 + texture
            x = (i * width // (2 * fps)) % (width - bar)
            img[height // 3: 2 * height // 3, x:x + bar] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
