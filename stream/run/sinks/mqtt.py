"""MQTT: each record is published as JSON to ``TOPIC/<type>`` (segment, event, error) with QoS 1, with
retries, backoff and a spool for what the broker does not acknowledge (:mod:`avfuse.stream.run.sinks.spool`).

The URL form is ``mqtt://[USER:PASSWORD@]HOST[:PORT]/TOPIC`` (port 1883 by default). A broker that
refuses the login is an error at once; one that cannot be reached, at the start or later, is retried
in the background (paho reconnects with backoff) while its records are spooled. QoS 1 is "at least
once": a record published just before the connection dropped may arrive and also be spooled."""

from __future__ import annotations

import json
import logging
import threading
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from avfuse.stream.errors import ConfigError, SinkError
from avfuse.stream.media.redact import credentials, redact
from avfuse.stream.run.sinks.spool import DeliveryConfig, DeliverySink, Entry, Spool

log = logging.getLogger(__name__)
_POLL_S = 0.02  # how often an acknowledgement wait checks that the connection is still up


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


class MqttSink(DeliverySink):
    name = "mqtt"

    def __init__(self, url: str, *, config: DeliveryConfig | None = None, spool: Spool | None = None,
                 qos: int = 1, client_id: str = "") -> None:
        self.host, self.port, self.topic = parse_url(url)
        super().__init__(config or DeliveryConfig(), spool)
        self.shown, self.qos = redact(url), qos
        self._answered = threading.Event()
        self._refused: str | None = None  # the broker's reason, when it answers no
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        delay = max(1, round(self.config.backoff_s))
        self.client.reconnect_delay_set(min_delay=delay, max_delay=max(delay, round(self.config.pause_s)))
        _, user, password = credentials(url)
        if user:
            self.client.username_pw_set(user, password)
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        timeout = self.config.timeout_s
        if self._answered.wait(timeout) and self._refused:
            self._stop()
            raise SinkError(f"MQTT broker {self.host}:{self.port} refused the connection ({self._refused})")
        if not self.client.is_connected():
            self.reason = f"not connected within {timeout:g} s"
            log.warning("MQTT broker %s:%d did not accept a connection within %g s; its records are retried "
                        "and spooled until it does", self.host, self.port, timeout)

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties=None) -> None:
        self.reason = f"disconnected ({reason})"

    def _send(self, entries: list[Entry]) -> list[Entry]:
        """Publish, then wait at most ``timeout_s`` for the lot to be acknowledged."""
        if not self.client.is_connected():
            self.reason = self.reason or "not connected"
            return entries
        infos = [self.client.publish(f"{self.topic}/{r['type']}", json.dumps(r), qos=self.qos) for _, r in entries]
        deadline = time.monotonic() + self.config.timeout_s
        for n, info in enumerate(infos):
            while not info.is_published():
                if time.monotonic() > deadline or not self.client.is_connected():
                    if self.client.is_connected():
                        self.reason = f"not acknowledged within {self.config.timeout_s:g} s"
                    return entries[n:]
                time.sleep(_POLL_S)
        return []

    def _stop(self) -> None:
        self.client.disconnect()  # closes the socket: no half-open connection is left behind
        self.client.loop_stop()

    def close(self) -> None:
        self.flush()
        self._stop()
