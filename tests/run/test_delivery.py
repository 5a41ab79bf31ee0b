"""Records are never silently lost: ``avfuse run`` against webhook receivers that refuse, stall or
answer garbage, and Mosquitto brokers that refuse or die mid-run. What is not delivered is spooled,
counted in the summary and the exit status, keeps its source from being marked done, and is
replayed by the next run."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from onnx_models import colour_model, colour_video
from test_sinks import Receiver, _free_port, _mosquitto, _subscriber

from avfuse.stream.cli.main import main
from avfuse.stream.cli.run_cmd import EXIT_UNDELIVERED

FAST = ["--no-cache", "--sink-timeout", "0.5", "--sink-retries", "1", "--sink-backoff", "0.05"]
COLOURS = ["red", "green", "blue", "red", "green", "blue"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return colour_model(d / "colour.onnx"), colour_video(d / "c.mp4", COLOURS, audio=False)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _spooled(out: Path) -> list[dict]:
    return [e["record"] for p in sorted((out / ".spool").glob("*.jsonl")) for e in _lines(p)]


def _assert_undelivered(rc: int, err: str, out: Path) -> list[dict]:
    """The run says records were not delivered, the source is not done, and its records are spooled."""
    local = _lines(out / "c.mp4.jsonl")
    assert rc == EXIT_UNDELIVERED, err
    assert "1 source(s), 0 ok, 0 failed, 1 not delivered" in err
    assert f"not delivered: {len(local)} record(s)" in err and "Traceback" not in err
    assert not (out / ".done" / "c.mp4.json").exists()
    assert _spooled(out) == local
    return local


class _RawServer:
    """A TCP server on 127.0.0.1 that reads a request and then answers ``reply`` (None: never answers)."""

    def __init__(self, reply: bytes | None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.conns: list[socket.socket] = []
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.reply is not None:
                conn.recv(65536)
                conn.sendall(self.reply)
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_refused_webhook_spools_then_the_next_run_replays_and_resume_finishes(media, tmp_path, capsys):
    model, clip = media
    port = _free_port()  # nothing listens here yet: refused
    url, out = f"http://127.0.0.1:{port}/hook", tmp_path / "out"
    args = ["run", str(model), str(clip), "-o", str(out), "--sink", "jsonl", "--sink", url, "--resume", *FAST]
    local = _assert_undelivered(main(args), capsys.readouterr().err, out)
    rx = Receiver()
    rx.server.server_close()  # the receiver now listens on the port that refused
    rx.server = ThreadingHTTPServer(("127.0.0.1", port), rx.server.RequestHandlerClass)
    threading.Thread(target=rx.server.serve_forever, daemon=True).start()
    try:
        assert main(args) == 0
        err = capsys.readouterr().err
        assert f"replayed {len(local)} record(s)" in err and "1 skipped" in err
        assert rx.bodies == local and (out / ".done" / "c.mp4.json").exists() and _spooled(out) == []
        assert main(args) == 0  # done: nothing is sent twice
        assert rx.bodies == local and "1 skipped" in capsys.readouterr().err
    finally:
        rx.close()


@pytest.mark.parametrize("reply", [None, b"\x00\x01 garbage, not HTTP\r\n\r\n", b"HTTP/1.1 503 Busy\r\n\r\n"],
                         ids=["stalls", "garbage", "503"])
def test_a_webhook_that_stalls_or_answers_nonsense_is_a_delivery_failure_within_a_bound(media, tmp_path, capsys,
                                                                                         reply):
    model, clip = media
    server = _RawServer(reply)
    out = tmp_path / "out"
    try:
        t0 = time.monotonic()
        rc = main(["run", str(model), str(clip), "-o", str(out), "--sink", "jsonl", "--sink", server.url, *FAST])
        took = time.monotonic() - t0
    finally:
        server.close()
    _assert_undelivered(rc, capsys.readouterr().err, out)
    assert took < 15  # two 0.5 s attempts, then the sink pauses: the rest goes straight to the spool


def test_without_an_output_folder_lost_records_are_still_counted_and_exit_non_zero(media, capsys):
    model, clip = media
    rc = main(["run", str(model), str(clip), "--sink", "table", "--sink", f"http://127.0.0.1:{_free_port()}/h",
               *FAST])
    err = capsys.readouterr().err
    assert rc == EXIT_UNDELIVERED and "1 not delivered" in err and "lost: without -o OUT there is no spool" in err


def test_refused_mqtt_broker_spools_and_the_next_run_replays(media, tmp_path, capsys):
    model, clip = media
    port = _free_port()
    out = tmp_path / "out"
    args = ["run", str(model), str(clip), "-o", str(out), "--sink", "jsonl", "--sink",
            f"mqtt://127.0.0.1:{port}/avfuse/t", "--resume", *FAST]
    local = _assert_undelivered(main(args), capsys.readouterr().err, out)
    gen = _mosquitto(tmp_path, "allow_anonymous true\n", port=port)
    next(gen)
    sub, got = _subscriber(port, "avfuse/t/#")
    try:
        assert main(args) == 0
        deadline = time.monotonic() + 5
        while len(got) < len(local) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
        gen.close()
    assert [m for _, m in got] == local and (out / ".done" / "c.mp4.json").exists()
    assert f"replayed {len(local)} record(s)" in capsys.readouterr().err


def test_a_broker_that_dies_mid_run_leaves_every_record_delivered_or_spooled(media, tmp_path, capsys):
    model, _ = media
    clip = colour_video(tmp_path / "c.mp4", COLOURS * 5, audio=False)
    gen = _mosquitto(tmp_path, "allow_anonymous true\n")
    port, proc = next(gen)
    sub, got = _subscriber(port, "avfuse/t/#")

    def kill_at_first_record() -> None:
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_at_first_record, daemon=True)
    killer.start()
    out = tmp_path / "out"
    try:
        rc = main(["run", str(model), str(clip), "-o", str(out), "--sink", "jsonl", "--sink",
                   f"mqtt://127.0.0.1:{port}/avfuse/t", "--batch", "1", *FAST])
    finally:
        killer.join(5)
        sub.loop_stop()
        sub.disconnect()
        gen.close()
    err = capsys.readouterr().err
    local, spooled, received = _lines(out / "c.mp4.jsonl"), _spooled(out), [m for _, m in got]
    assert rc == EXIT_UNDELIVERED and spooled and received, err
    assert all(r in received or r in spooled for r in local)  # QoS 1: at least once, never lost
    assert f"not delivered: {len(spooled)} record(s)" in err
    assert not (out / ".done" / "c.mp4.json").exists()
