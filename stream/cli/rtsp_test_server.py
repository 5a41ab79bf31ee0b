"""A real RTSP server for the live-source tests and ``avfuse bench live``: GStreamer's RTSP server serving
generated H.264 + AAC, or a pre-encoded H.264 clip looped without encoding (``--clip``, one media per client,
so each client is a camera with its own timing).

Run as a script by the system Python (which has ``gi`` and the GstRtspServer typelib)::

    /usr/bin/python3 stream/cli/rtsp_test_server.py --port 8554 --path /cam [--user u --password p] [--width 320 ...]
    /usr/bin/python3 stream/cli/rtsp_test_server.py --port 8554 --path /cam --clip clip.h264 --mounts 8  # /cam0../cam7

It prints ``READY`` on stdout once it listens. Imported (from the project's venv, no ``gi`` needed), it gives
:class:`RtspServer`, which starts and stops that script as a subprocess, and :func:`free_port`. Nothing here
imports beyond the standard library: the system Python runs this file by path.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve()


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gstreamer_available() -> bool:
    """Whether the system Python has GStreamer's RTSP server and the elements both kinds of media use."""
    if not Path(SYSTEM_PYTHON).exists() or shutil.which("gst-inspect-1.0") is None:
        return False
    elements = ("x264enc", "rtph264pay", "rtpmp4gpay", "appsrc", "h264parse")
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             f"assert all(Gst.ElementFactory.find(n) for n in {elements!r});"
             "assert Gst.ElementFactory.find('voaacenc') or Gst.ElementFactory.find('avenc_aac')")
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class RtspServer:
    """The script above as a subprocess on ``port``; ``start`` waits until it listens, ``stop`` kills it.

    Use as a context manager or call ``stop`` in a fixture finalizer: the process never outlives the test.
    """

    def __init__(self, *, port: int | None = None, path: str = "/cam", width: int = 320, height: int = 240,
                 fps: int = 25, audio: bool = True, user: str | None = None, password: str | None = None,
                 pattern: str = "ball", clip: Path | None = None, mounts: int = 1):
        self.port = port or free_port()
        self.path, self.mounts = path, mounts
        self.args = ["--port", str(self.port), "--path", path, "--width", str(width), "--height", str(height),
                     "--fps", str(fps), "--pattern", pattern, "--mounts", str(mounts)]
        if not audio:
            self.args.append("--no-audio")
        if clip is not None:
            self.args += ["--clip", str(clip)]
        if user is not None:
            self.args += ["--user", user, "--password", password or ""]
        self.user, self.password = user, password
        self.proc: subprocess.Popen | None = None

    def url(self, *, path: str | None = None, user: str | None = None, password: str | None = None) -> str:
        user = self.user if user is None else user
        password = self.password if password is None else password
        cred = f"{user}:{password}@" if user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}{path or self.path}"

    def urls(self) -> list[str]:
        """One URL per mount: ``path`` itself, or ``path0`` ... with ``mounts`` > 1."""
        if self.mounts == 1:
            return [self.url()]
        return [self.url(path=f"{self.path}{i}") for i in range(self.mounts)]

    def start(self, timeout: float = 20.0) -> RtspServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        deadline = time.monotonic() + timeout
        while True:  # the port may linger for a moment after a kill; retry the bind until the deadline
            self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SCRIPT), *self.args], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, start_new_session=True)
            line = self._read_line(deadline)
            if line == "READY":
                return self
            err = self._kill()
            if time.monotonic() > deadline or "BIND" not in line:
                raise RuntimeError(f"RTSP server did not start ({line!r}): {err}")
            time.sleep(0.2)

    def _read_line(self, deadline: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        return self.proc.stdout.readline().strip() if ready else "TIMEOUT"

    def _kill(self) -> str:
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            return "(did not exit)"
        return (err or "")[-2000:]

    def stop(self) -> None:
        """Kill the server at once (SIGKILL, like a camera losing power)."""
        self._kill()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- the server itself (system python, gi) ----

def _launch(width: int, height: int, fps: int, audio: bool, aac: str = "voaacenc", pattern: str = "ball") -> str:
    video = (f"videotestsrc is-live=true pattern={pattern} "
             f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
             f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=1500 "
             "! rtph264pay name=pay0 pt=96 config-interval=1")
    sound = ("audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample "
             f"! audio/x-raw,rate=48000,channels=1 ! {aac} ! rtpmp4gpay name=pay1 pt=97")
    return f"( {video} {sound if audio else ''} )"


AUD = b"\x00\x00\x00\x01\x09"  # an access unit delimiter: where each frame of a clip starts


def _launch_clip(fps: int) -> str:
    caps = f"video/x-h264,stream-format=byte-stream,alignment=au,framerate={fps}/1"
    return (f'( appsrc name=clip is-live=true format=time caps="{caps}" ! h264parse '
            "! rtph264pay name=pay0 pt=96 config-interval=1 )")


def _clip_frames(path: str) -> list[bytes]:
    """A pre-encoded H.264 elementary stream (Annex B, access unit delimiters, a key frame first) cut into frames."""
    data = Path(path).read_bytes()
    frames = [AUD + f for f in data.split(AUD) if f]
    if not data.startswith(AUD) or not frames:
        raise SystemExit(f"{path}: not an H.264 stream with access unit delimiters (x264 aud=1)")
    return frames


def _feed_clip(media, frames: list[bytes], fps: int, Gst) -> None:
    """Each client's media pushes the clip, over and over, stamping frame n at n / fps: its own camera clock."""
    src = media.get_element().get_by_name_recurse_up("clip")
    step = Gst.SECOND // fps
    count = [0]

    def need_data(appsrc, _length) -> None:
        n = count[0]
        buf = Gst.Buffer.new_wrapped(frames[n % len(frames)])
        buf.pts = buf.dts = n * step
        buf.duration = step
        count[0] = n + 1
        appsrc.emit("push-buffer", buf)

    src.connect("need-data", need_data)


def serve(argv: list[str] | None = None) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    p = argparse.ArgumentParser(description="RTSP test server: generated H.264 + AAC")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/cam")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--pattern", default="ball", help="videotestsrc pattern: ball, red, green, blue, ...")
    p.add_argument("--clip", help="serve this pre-encoded H.264 file (Annex B), looped, instead of encoding")
    p.add_argument("--mounts", type=int, default=1, help="serve at PATH0, PATH1, ... (when more than 1)")
    p.add_argument("--user")
    p.add_argument("--password", default="")
    a = p.parse_args(argv)

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    aac = "voaacenc" if Gst.ElementFactory.find("voaacenc") else "avenc_aac"
    frames = _clip_frames(a.clip) if a.clip else []
    launch = _launch_clip(a.fps) if a.clip else _launch(a.width, a.height, a.fps, not a.no_audio, aac, a.pattern)
    if a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        server.set_auth(auth)
    for path in [a.path] if a.mounts == 1 else [f"{a.path}{i}" for i in range(a.mounts)]:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(not a.clip)  # a clip: each client its own media, a camera with its own timing
        if a.clip:
            factory.connect("media-configure", lambda _f, media: _feed_clip(media, frames, a.fps, Gst))
        if a.user:
            perms = GstRtspServer.RTSPPermissions()
            perms.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
            perms.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
            factory.set_permissions(perms)
        server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print("BIND failed", flush=True)
        return 1
    print("READY", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
