"""Network sinks against real servers started here: a webhook receiver on http.server (one that fails
the first attempt, one that stalls) and a Mosquitto broker with a paho subscriber."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from onnx_models import colour_model, colour_video

from avfuse.stream.cli.main import main
from avfuse.stream.errors import ConfigError, SinkError
from avfuse.stream.run.sinks import make_sinks
from avfuse.stream.run.sinks.mqtt import MqttSink, parse_url
from avfuse.stream.run.sinks.spool import DeliveryConfig
from avfuse.stream.run.sinks.webhook import WebhookSink

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"


class Receiver:
    """A webhook endpoint on 127.0.0.1: answers 500 to the first ``fail_first`` POSTs, sleeps ``delay``."""

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.attempts += 1
                time.sleep(delay)
                if outer.attempts <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return colour_model(d / "colour.onnx"), colour_video(d / "c.mp4", ["green", "blue"], audio=False)


def _rec(i=0):
    return {"type": "segment", "source": "s", "index": i, "label": "red", "score": 0.9}


def test_csv_on_stdout_has_one_header_for_all_sources_and_files_commit_only_when_finished(tmp_path):
    import csv
    import io

    from avfuse.stream.run.outputs import OutputDir
    from avfuse.stream.run.sinks.csv import CsvSink

    buf = io.StringIO()
    sink = CsvSink(None, stream=buf)
    for key in ("a", "b"):
        sink.open_source(key)
        sink.write(key, {**_rec(), "source": key, "top": [["red", 0.9]], "gates": {"video": 1.0}})
        sink.close_source(key, finished=True)
    sink.close()
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [(r["source"], r["top"], r["gate_video"]) for r in rows] == [("a", '[["red", 0.9]]', "1.0"),
                                                                      ("b", '[["red", 0.9]]', "1.0")]
    files = CsvSink(OutputDir(tmp_path))
    for key, finished in (("done", True), ("cut", False)):
        files.open_source(key)
        files.write(key, _rec())
        files.close_source(key, finished=finished)
    assert (tmp_path / "done.csv").read_text().count("\n") == 2 and not (tmp_path / "done.csv.partial").exists()
    assert not (tmp_path / "cut.csv").exists() and (tmp_path / "cut.csv.partial").exists()


def test_webhook_retries_after_a_failed_attempt():
    rx = Receiver(fail_first=1)
    try:
        sink = WebhookSink(rx.url, config=DeliveryConfig(timeout_s=2, retries=2, backoff_s=0.01))
        sink.write("s", _rec(0))
        sink.write("s", _rec(1))
        sink.flush()
        assert rx.attempts == 3 and [b["index"] for b in rx.bodies] == [0, 1]
        assert sink.delivered == 2 and sink.pending() == 0
    finally:
        rx.close()


def test_webhook_that_stalls_times_out_and_the_run_goes_on():
    rx = Receiver(delay=1.0)
    try:
        sink = WebhookSink(rx.url, config=DeliveryConfig(timeout_s=0.2, retries=1, backoff_s=0.01))
        t0 = time.monotonic()
        sink.write("s", _rec())
        sink.flush()
        # Without the timeout the first POST would succeed after 1 s: pending == 1 is the proof; the time
        # bound only says the run was not held up much (2 x 0.2 s, generous for a loaded machine).
        assert sink.pending("s") == 1 and sink.delivered == 0 and time.monotonic() - t0 < 3.0
    finally:
        rx.close()
    with pytest.raises(ConfigError, match="http"):
        WebhookSink("ftp://x")


def test_run_posts_every_record_to_the_webhook(media, tmp_path):
    model, clip = media
    rx = Receiver(fail_first=1)
    try:
        rc = main(["run", str(model), str(clip), "-o", str(tmp_path), "--sink", "jsonl", "--sink", rx.url,
                   "--no-cache"])
    finally:
        rx.close()
    assert rc == 0
    local = [json.loads(x) for x in (tmp_path / "c.mp4.jsonl").read_text().splitlines()]
    assert rx.bodies == local  # the failed first POST was retried: nothing lost, nothing doubled
    assert [b["label"] for b in rx.bodies if b["type"] == "segment"][:2] == ["green", "blue"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    yield from _mosquitto(tmp_path, "allow_anonymous true\n")


@pytest.fixture
def password_broker(tmp_path):
    """A broker that only lets alice in, with her password."""
    passwd = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(passwd), "alice", "p@ss:word"], check=True, timeout=30)
    # run as root, mosquitto drops to its own user, which cannot read pytest's private tmp folder
    user = "user root\n" if os.geteuid() == 0 else ""
    yield from _mosquitto(tmp_path, f"{user}allow_anonymous false\npassword_file {passwd}\n")


def _mosquitto(tmp_path, settings: str, *, port: int | None = None):
    if not Path(MOSQUITTO).exists():
        pytest.skip(f"{MOSQUITTO} is not installed (scripts/system-deps.sh installs it)")
    port = port or _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\n{settings}persistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"mosquitto did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    yield port, proc
    proc.send_signal(signal.SIGCONT)  # in case a test froze it
    proc.terminate()
    proc.wait(5)


def _subscriber(port: int, topic: str) -> tuple[mqtt.Client, list]:
    got: list = []
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    assert ready.wait(5), "subscriber did not subscribe"
    return sub, got


class MosquittoSub:
    """Debian's ``mosquitto_sub`` on ``topic`` (QoS 1): each message it prints as ``TOPIC PAYLOAD``, collected
    (line-buffered by ``stdbuf``: printing to a pipe, it would hold them until it exits)."""

    def __init__(self, port: int, topic: str) -> None:
        if shutil.which("mosquitto_sub") is None:
            pytest.skip("mosquitto_sub is not installed (scripts/system-deps.sh installs mosquitto-clients)")
        self.proc = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port),
                                      "-t", topic, "-q", "1", "-d", "-F", "%t %p"], stdout=subprocess.PIPE, text=True)
        self.messages: list[tuple[str, dict]] = []
        self.subscribed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.subscribed.wait(10), "mosquitto_sub did not subscribe"

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(("Client ", "Subscribed ")):  # -d: the protocol exchange
                if "SUBACK" in line:
                    self.subscribed.set()
                continue
            topic, _, payload = line.rstrip("\n").partition(" ")
            self.messages.append((topic, json.loads(payload)))

    def wait_for(self, n: int, timeout: float = 5.0) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def test_run_publishes_to_a_real_mosquitto_what_it_writes_to_the_jsonl_file(media, broker, tmp_path):
    model, clip = media
    port, _ = broker
    sub = MosquittoSub(port, "avfuse/test/#")
    try:
        rc = main(["run", str(model), str(clip), "-o", str(tmp_path / "out"), "--sink", "jsonl",
                   "--sink", f"mqtt://127.0.0.1:{port}/avfuse/test", "--no-cache"])
        written = [json.loads(line) for line in (tmp_path / "out" / "c.mp4.jsonl").read_text().splitlines()]
        got = sub.wait_for(len(written))
    finally:
        sub.stop()
    assert rc == 0
    assert [m for _, m in got] == written  # every record, in order, as the file has it
    assert [t for t, _ in got] == [f"avfuse/test/{r['type']}" for r in written]
    assert [r["label"] for r in written if r["type"] == "segment"][:2] == ["green", "blue"]
    assert any(r["type"] == "event" for r in written)


def test_records_a_frozen_broker_never_acknowledges_are_counted_within_one_timeout(broker, caplog):
    port, proc = broker
    sink = MqttSink(f"mqtt://127.0.0.1:{port}/avfuse/frozen", config=DeliveryConfig(timeout_s=1.0, retries=0))
    try:
        sink.write("s", _rec(0))
        sink.flush()
        assert sink.pending() == 0  # a live broker acknowledges
        proc.send_signal(signal.SIGSTOP)  # connected, but it will not acknowledge anything now
        for i in range(6):
            sink.write("s", _rec(i))
        t0 = time.monotonic()
        sink.flush()
        waited = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGCONT)
        sink.close()
    assert sink.pending("s") == 6 and "6 record(s) not delivered (1 attempt(s): not acknowledged" in caplog.text
    assert waited < 4.0  # one shared timeout, not one per record (that would be 6 s)


def test_a_bad_sink_closes_the_sinks_already_connected(broker):
    port, _ = broker

    def paho_threads():
        return [t for t in threading.enumerate() if t.name.startswith("paho-mqtt-client")]

    before = len(paho_threads())
    with pytest.raises(ConfigError, match="unknown sink 'kafka://x'"):
        make_sinks([f"mqtt://127.0.0.1:{port}/a", "kafka://x"], None)
    assert len(paho_threads()) == before  # the MQTT connection made first was closed, not left running


def test_a_broker_that_never_answers_is_retried_in_the_background_and_its_connection_closed_at_the_end(caplog):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    try:
        config = DeliveryConfig(timeout_s=0.5, retries=1, backoff_s=0.1)
        sink = MqttSink(f"mqtt://127.0.0.1:{listener.getsockname()[1]}/x", config=config)
        assert "did not accept a connection within 0.5 s" in caplog.text
        sink.write("s", _rec())
        t0 = time.monotonic()
        sink.close()
        assert sink.pending("s") == 1 and time.monotonic() - t0 < 2.0  # not connected: one backoff, no timeouts
        (conn,) = accepted
        conn.settimeout(10)
        while conn.recv(4096):  # the CONNECT packet, perhaps a DISCONNECT, then the end of the stream
            pass
    finally:
        listener.close()
        for c in accepted:
            c.close()


def test_credentials_in_the_url_log_in_and_a_refusal_says_why(password_broker):
    port, _ = password_broker
    sink = MqttSink(f"mqtt://alice:p%40ss%3Aword@127.0.0.1:{port}/avfuse/auth", config=DeliveryConfig(timeout_s=5))
    try:
        sink.write("s", _rec())
        sink.flush()
        assert sink.pending() == 0 and sink.delivered == 1
    finally:
        sink.close()
    t0 = time.monotonic()
    with pytest.raises(SinkError, match="refused the connection") as info:
        MqttSink(f"mqtt://alice:wrong@127.0.0.1:{port}/avfuse/auth", config=DeliveryConfig(timeout_s=20))
    assert time.monotonic() - t0 < 15 and "wrong" not in str(info.value)  # told at once, not after the timeout


def test_mqtt_url_errors():
    assert parse_url("mqtt://h/a/b") == ("h", 1883, "a/b")
    assert parse_url("mqtt://u:p/w@h:1884/t") == ("h", 1884, "t")
    with pytest.raises(ConfigError, match="TOPIC"):
        parse_url("mqtt://host:1883")
    with pytest.raises(ConfigError, match=r"\*\*\*@"):
        parse_url("mqtt://u:Pw@h")

