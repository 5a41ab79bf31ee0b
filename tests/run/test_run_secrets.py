"""No credential or token of a source or sink URL reaches a file name, a file's content, stdout,
stderr or a log line: ``avfuse run`` and ``avfuse probe`` against real local servers."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import logging
import socket
import threading
from pathlib import Path

import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main

PASSWORD, TOKEN = "S3cr3tPW", "T0K3N-77"
SECRETS = (PASSWORD, TOKEN, "pa/ss#w?rd")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return colour_model(d / "colour.onnx"), colour_video(d / "clip.mp4", ["red", "green"], audio=False)


class _Server(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; remembers each request's Authorization header and takes POSTs (a webhook)."""

    seen: list[tuple[str, str | None]]
    posted: list[dict]

    def do_POST(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(media):
    _, clip = media
    handler = type("Handler", (_Server,), {"seen": [], "posted": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(clip.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, server.server_address[1]
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _everything_under(root: Path) -> str:
    """Every name and every byte of every file under ``root``, as one text."""
    parts = []
    for p in sorted(root.rglob("*")):
        parts.append(str(p.relative_to(root)))
        if p.is_file():
            parts.append(p.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_no_secret_of_any_source_url_form_reaches_files_output_or_logs(media, server, tmp_path, capfd, caplog):
    model, _ = media
    _handler, port = server
    dead = _closed_port()
    caplog.set_level(logging.DEBUG)
    sources = [f"rtsp://admin:{PASSWORD}@127.0.0.1:{dead}", f"rtsp://admin:{PASSWORD}@127.0.0.1:{dead}/",
               f"tcp://admin:{PASSWORD}@127.0.0.1:{dead}", f"rtsp://admin:pa/ss#w?rd@127.0.0.1:{dead}/live",
               f"http://admin:{PASSWORD}@127.0.0.1:{port}/clip.mp4?token={TOKEN}"]
    out = tmp_path / "out"
    rc = main(["run", str(model), *sources, "-o", str(out), "--no-cache", "--live-attempts", "1",
               "--live-timeout", "2", "--summary-json", str(tmp_path / "summary.json")])
    captured = capfd.readouterr()
    assert rc == 1  # the live sources cannot connect
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    # three sources without a path share the host and port: told apart by a hash of the redacted URL
    assert len([f for f in files if f.startswith(f"127.0.0.1_{dead}-") and f.endswith(".jsonl")]) == 3
    assert "live.jsonl" in files and "clip.mp4.jsonl" in files
    marker = json.loads((out / ".done" / "clip.mp4.json").read_text())
    assert marker["source"] == f"http://***@127.0.0.1:{port}/clip.mp4?token=***"
    labels = [json.loads(line)["label"] for line in (out / "clip.mp4.jsonl").read_text().splitlines()
              if json.loads(line)["type"] == "segment"]
    assert labels == ["red", "green"]
    summary = (tmp_path / "summary.json").read_text()
    assert f"rtsp://***@127.0.0.1:{dead}/live" in captured.err and "4 failed" in captured.err
    for text in (_everything_under(out), summary, captured.out, captured.err, caplog.text):
        _assert_clean(text)
    assert "admin" not in _everything_under(out)


def test_probe_shows_a_url_redacted_in_text_and_json(server, capfd):
    _, port = server
    url = f"http://admin:{PASSWORD}@127.0.0.1:{port}/clip.mp4?token={TOKEN}"
    assert main(["probe", url]) == 0
    assert main(["probe", url, "--json"]) == 0
    captured = capfd.readouterr()
    shown = f"http://***@127.0.0.1:{port}/clip.mp4?token=***"
    assert captured.out.splitlines()[0] == shown
    assert json.loads(captured.out.splitlines()[-1])["source"] == shown
    _assert_clean(captured.out + captured.err)


def test_webhook_credentials_are_sent_as_basic_auth_and_never_shown(media, server, tmp_path, capfd, caplog):
    model, clip = media
    handler, port = server
    rc = main(["run", str(model), str(clip), "-o", str(tmp_path / "out"), "--no-cache", "--sink", "jsonl",
               "--sink", f"http://alice:pa/ss#w?rd@127.0.0.1:{port}/hook?token={TOKEN}"])
    captured = capfd.readouterr()
    assert rc == 0
    expected = "Basic " + base64.b64encode(b"alice:pa/ss#w?rd").decode()
    assert handler.seen and all(auth == expected for _, auth in handler.seen)
    assert {path for path, _ in handler.seen} == {f"/hook?token={TOKEN}"}  # the token is the receiver's
    assert [r["label"] for r in handler.posted if r["type"] == "segment"] == ["red", "green"]
    for text in (_everything_under(tmp_path / "out"), captured.out, captured.err, caplog.text):
        _assert_clean(text)
