"""Webhook: each record is POSTed as JSON to a URL, with a timeout and retries (exponential backoff).
A record that still fails after the retries is logged and counted; the run goes on.

Credentials in the URL (``https://user:pass@host/hook``) are sent as HTTP basic auth, never as part of
the host name, and the URL is only ever shown redacted."""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.request

from stream.errors import ConfigError
from stream.redact import credentials, redact
from stream.sinks.base import Sink

log = logging.getLogger(__name__)


class WebhookSink(Sink):
    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.2) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook URL must start with http:// or https://, got {redact(url)!r}")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ConfigError(f"webhook timeout must be > 0 and retries, backoff >= 0, got "
                              f"{timeout_s}, {retries}, {backoff_s}")
        self.url, user, password = credentials(url)
        self.shown = redact(url)
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._headers = {"Content-Type": "application/json"}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self.sent = 0
        self.failed = 0

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers=self._headers)
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            resp.read()

    def write(self, key: str, record: dict) -> None:
        body = json.dumps(record).encode()
        for attempt in range(self.retries + 1):
            try:
                self._post(body)
                self.sent += 1
                return
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                if attempt == self.retries:
                    self.failed += 1
                    log.warning("webhook %s: %s record for %s not delivered after %d attempts: %s",
                                self.shown, record["type"], record["source"], attempt + 1, e)
                    return
                log.debug("webhook %s: attempt %d failed (%s); retrying", self.shown, attempt + 1, e)
                time.sleep(self.backoff_s * 2**attempt)
