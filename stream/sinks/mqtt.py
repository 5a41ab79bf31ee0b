"""MQTT: each record is published as JSON to ``TOPIC/<type>`` (segment, event, error) with QoS 1.

The URL form is ``mqtt://[USER:PASSWORD@]HOST[:PORT]/TOPIC`` (port 1883 by default)."""

from __future__ import annotations

import json
import logging
import threading
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from stream.errors import ConfigError, SourceError
from stream.redact import credentials, redact
from stream.sinks.base import Sink

log = logging.getLogger(__name__)


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, topic) of ``mqtt://[USER:PASSWORD@]HOST[:PORT]/TOPIC``."""
    u = urlparse(credentials(url)[0])
    topic = u.path.lstrip("/")
    if u.scheme != "mqtt" or not u.hostname or not topic:
        raise ConfigError(f"MQTT sink URL must be mqtt://HOST[:PORT]/TOPIC, got {redact(url)!r}")
    try:
        port = u.port or 1883
    except ValueError as e:
        raise ConfigError(f"MQTT sink URL {redact(url)!r}: bad port") from e
    return u.hostname, port, topic


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, url: str, *, qos: int = 1, timeout_s: float = 10.0, client_id: str = "") -> None:
        self.host, self.port, self.topic = parse_url(url)
        self.qos, self.timeout_s = qos, timeout_s
        self._connected = threading.Event()
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self.failed = 0  # records the broker did not acknowledge
        self._refused: str | None = None  # the broker's reason, when it answers no
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = self._on_connect
        _, user, password = credentials(url)
        if user:
            self.client.username_pw_set(user, password)
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise SourceError(f"MQTT broker {self.host}:{self.port} is unreachable ({e})") from e
        self.client.loop_start()
        if not self._connected.wait(timeout_s) or self._refused:
            self.client.disconnect()  # closes the socket: no half-open connection is left behind
            self.client.loop_stop()
            why = (f"refused the connection ({self._refused})" if self._refused else
                   f"did not accept the connection within {timeout_s:g} s")
            raise SourceError(f"MQTT broker {self.host}:{self.port} {why}")

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        self._connected.set()

    def write(self, key: str, record: dict) -> None:
        info = self.client.publish(f"{self.topic}/{record['type']}", json.dumps(record), qos=self.qos)
        self._pending.append(info)

    def flush(self) -> None:
        """Wait, at most ``timeout_s`` for the lot, for the broker to acknowledge what was published;
        records it did not acknowledge are counted in ``failed`` and logged (the run goes on)."""
        deadline = time.monotonic() + self.timeout_s
        lost, reason = 0, "not acknowledged in time"
        for info in self._pending:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                published = info.is_published()
            except (RuntimeError, ValueError) as e:
                published, reason = False, str(e)
            lost += not published
        if lost:
            self.failed += lost
            log.warning("MQTT %s:%d: %d of %d record(s) not published within %g s (%s)", self.host, self.port,
                        lost, len(self._pending), self.timeout_s, reason)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()
