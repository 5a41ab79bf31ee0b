"""RTSP servers other than GStreamer's, for the transport tests: each refuses one transport.

- :class:`PerlRtspServer`: Debian's ``rtsp-server-perl`` (RTSP::Server), a relay that ffmpeg publishes a
  file to (ANNOUNCE/RECORD); it streams to clients over UDP only and answers an interleaved (TCP) SETUP
  with 400 Bad Request.
- :class:`AioRtspServer`: PyPI's ``aio-rtsp-toolkit`` file server, which streams over interleaved TCP only
  and answers a UDP SETUP with 461 Unsupported Transport.

Both serve a file made by the test (H.264 + AAC), in real time, and are killed with SIGKILL by ``stop``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from avfuse.stream.cli.rtsp_test_server import free_port


def _describe_ok(port: int, path: str) -> bool:
    """Whether the server on ``port`` answers DESCRIBE of ``path`` with 200 (it has the stream)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(f"DESCRIBE rtsp://127.0.0.1:{port}{path} RTSP/1.0\r\nCSeq: 1\r\n"
                      "Accept: application/sdp\r\n\r\n".encode())
            return s.recv(64).startswith(b"RTSP/1.0 200")
    except OSError:
        return False


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class _Server:
    path = "/cam"

    def __init__(self, media: Path, *, port: int | None = None) -> None:
        self.media, self.port = Path(media), port or free_port()
        self.procs: list[subprocess.Popen] = []

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def _spawn(self, args: list[str], log: str) -> None:
        err = open(self.media.parent / log, "ab")  # noqa: SIM115 (the child keeps it)
        self.procs.append(subprocess.Popen(args, stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                           start_new_session=True))

    def _commands(self) -> None:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> _Server:
        deadline = time.monotonic() + timeout
        self._commands()
        while not _describe_ok(self.port, self.path):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"{type(self).__name__} did not start; see {self.media.parent}/*.log")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """Kill every process of the server at once (SIGKILL, like a camera losing power)."""
        for p in self.procs:
            _kill(p)
        self.procs = []

    def __enter__(self) -> _Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PerlRtspServer(_Server):
    """rtsp-server-perl on ``port`` for players, with ffmpeg publishing ``media`` to it in a loop."""

    available = shutil.which("rtsp-server-perl") is not None and shutil.which("ffmpeg") is not None

    def _commands(self) -> None:
        source_port = free_port()
        self._spawn(["rtsp-server-perl", "--clientport", str(self.port), "--serverport", str(source_port),
                     "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
                     "--rtp_start_port", str(20000 + self.port % 20000)], "perl-server.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", source_port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        self._spawn(["ffmpeg", "-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(self.media),
                     "-c", "copy", "-f", "rtsp", "-rtsp_transport", "udp",
                     f"rtsp://127.0.0.1:{source_port}{self.path}"], "perl-publisher.log")


class AioRtspServer(_Server):
    """aio-rtsp-toolkit's file server on ``port``, serving ``media`` as /cam (played once per session)."""

    try:
        import aio_rtsp_toolkit
        available = True
    except ImportError:
        available = False

    @property
    def path(self) -> str:  # type: ignore[override]
        return f"/{self.media.name}"

    def _commands(self) -> None:
        code = ("import asyncio, sys, aio_rtsp_toolkit.server as s; "
                "asyncio.run(s.serve(sys.argv[1], '127.0.0.1', int(sys.argv[2])))")
        folder = self.media.parent / "aio-root"
        folder.mkdir(exist_ok=True)
        if not (folder / self.media.name).exists():
            os.link(self.media, folder / self.media.name)
        self._spawn([sys.executable, "-c", code, str(folder), str(self.port)], "aio-server.log")
