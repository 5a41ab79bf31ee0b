"""An RTSP proxy in front of a real server that passes the conversation (DESCRIBE, SETUP, PLAY and the answers)
but swallows the media interleaved in the TCP connection (``$``-framed RTP/RTCP): over TCP the stream is
accepted, set up and played, and then silent, as behind a middlebox that lets RTSP through and not the data. Over
UDP the server sends the media straight to the client's ports, so that transport still works."""

from __future__ import annotations

import socket
import threading

from avfuse.stream.cli.rtsp_test_server import free_port


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _answers(server: socket.socket, client: socket.socket) -> None:
    """Server to client: RTSP messages go through, interleaved frames are dropped."""
    while True:
        first = _read_exact(server, 1)
        if first == b"$":
            _, size = _read_exact(server, 1), int.from_bytes(_read_exact(server, 2), "big")
            _read_exact(server, size)
            continue
        head = first
        while not head.endswith(b"\r\n\r\n"):
            head += _read_exact(server, 1)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        client.sendall(head + _read_exact(server, length))


def _requests(client: socket.socket, server: socket.socket) -> None:
    while chunk := client.recv(65536):
        server.sendall(chunk)
    raise ConnectionError("closed")


class SilentTcpProxy:
    """Listens on 127.0.0.1:``port`` and relays each connection to 127.0.0.1:``upstream``; ``stop`` closes all."""

    def __init__(self, upstream: int) -> None:
        self.upstream, self.port = upstream, free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/cam") -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.open += [client, server]
            for pump, src, dst in ((_answers, server, client), (_requests, client, server)):
                threading.Thread(target=self._run, args=(pump, src, dst), daemon=True).start()

    @staticmethod
    def _run(pump, src: socket.socket, dst: socket.socket) -> None:
        try:
            pump(src, dst)
        except (OSError, ConnectionError):  # either side closed: close the other too
            for s in (src, dst):
                s.close()

    def stop(self) -> None:
        self.sock.close()
        for s in self.open:
            s.close()
