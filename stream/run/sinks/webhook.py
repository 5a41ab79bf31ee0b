"""Webhook: each record is POSTed as JSON to a URL, with a timeout, retries with backoff and a spool
for what still fails (:mod:`avfuse.stream.run.sinks.spool`). A receiver that refuses, stalls past the timeout,
answers an HTTP error or answers bytes that are not HTTP at all fails the delivery; the run goes on.

Credentials in the URL (``https://user:pass@host/hook``) are sent as HTTP basic auth, never as part of
the host name, and the URL is only ever shown redacted."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import urllib.error
import urllib.request

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.redact import credentials, redact, redact_text
from avfuse.stream.run.sinks.spool import DeliveryConfig, DeliverySink, Entry, Spool

log = logging.getLogger(__name__)


class WebhookSink(DeliverySink):
    name = "webhook"

    def __init__(self, url: str, *, config: DeliveryConfig | None = None, spool: Spool | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook URL must start with http:// or https://, got {redact(url)!r}")
        super().__init__(config or DeliveryConfig(), spool)
        self.url, user, password = credentials(url)
        self.shown = redact(url)
        self._headers = {"Content-Type": "application/json"}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.url, data=body, method="POST", headers=self._headers)
        with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
            resp.read()

    def _send(self, entries: list[Entry]) -> list[Entry]:
        for n, (_, record) in enumerate(entries):
            try:
                self._post(json.dumps(record).encode())
            except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError, timeouts; not HTTP
                self.reason = f"{type(e).__name__}: {redact_text(str(e))}"
                return entries[n:]
        return []
