"""Network sinks never lose a record silently: each batch is retried with backoff, within a bound,
and what still fails goes to a spool on disk that the next run replays.

A ``DeliverySink`` (webhook, MQTT) buffers a source's records and delivers them at each ``flush``:
up to ``1 + retries`` attempts, waiting ``backoff_s``, then twice that, ... between them. A batch that
fails every attempt is appended to ``OUT/.spool/<sink>.jsonl`` (one ``{"key", "record"}`` per line,
mode 0600) and the sink pauses for ``pause_s``: records go straight to the spool, without holding the
run up, until it is tried again. Without an output folder there is no spool and such records are lost,
but counted like the spooled ones. The pipeline does not mark a source done while any of its records
is undelivered, and the run's summary and exit code say how many were.

At the start of a run each sink replays its spool (in order, with the same retries); the records it
delivers leave the spool. A file source that is labelled again supersedes its spooled records (they
would be made again); a live source's are kept until delivered (they cannot be).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.redact import credentials
from avfuse.stream.run.outputs import OutputDir, write_atomic
from avfuse.stream.run.sinks.base import Sink

log = logging.getLogger(__name__)
SPOOL_DIR = ".spool"
_REPLAY_CHUNK = 64  # spooled records delivered per batch on replay

Entry = tuple[str, dict]  # (source key, record)


@dataclass(frozen=True, kw_only=True)
class DeliveryConfig:
    timeout_s: float = 5.0  # one attempt: a webhook POST, or waiting for MQTT acknowledgements
    retries: int = 3  # attempts after the first, per batch
    backoff_s: float = 0.5  # before the first retry; doubled before each next one
    pause_s: float = 30.0  # after a batch fails every attempt: records are spooled at once for this long

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"sink timeout must be > 0 s, got {self.timeout_s}")
        if self.retries < 0 or self.backoff_s < 0 or self.pause_s < 0:
            raise ConfigError(f"sink retries, backoff and pause must be >= 0, got {self.retries}, "
                              f"{self.backoff_s}, {self.pause_s}")

    def delays(self) -> list[float]:
        """The waits before each retry."""
        return [self.backoff_s * 2**n for n in range(self.retries)]


def spool_path(out: OutputDir, kind: str, url: str) -> Path:
    """``OUT/.spool/KIND-HOST_PORT_PATH.jsonl``: named from the URL without credentials or query."""
    bare = re.split(r"[?#]", credentials(url)[0].partition("://")[2], maxsplit=1)[0]
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", bare).strip("_") or "sink"
    return out.root / SPOOL_DIR / f"{kind}-{name}.jsonl"


class Spool:
    """Undelivered records of one sink, appended and fsynced as they fail."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.counts = Counter(key for key, _ in self.entries())

    def entries(self) -> list[Entry]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(lines, 1):
            try:
                item = json.loads(line)
                out.append((item["key"], item["record"]))
            except (json.JSONDecodeError, KeyError, TypeError):  # a line cut short by a crash
                log.warning("%s:%d: not a spooled record; skipped", self.path, n)
        return out

    def add(self, entries: Iterable[Entry]) -> None:
        entries = list(entries)
        text = "".join(json.dumps({"key": k, "record": r}) + "\n" for k, r in entries)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.counts.update(key for key, _ in entries)

    def replace(self, entries: list[Entry]) -> None:
        """Keep only ``entries`` (the file goes when none are left)."""
        if entries:
            write_atomic(self.path, "".join(json.dumps({"key": k, "record": r}) + "\n" for k, r in entries))
        else:
            self.path.unlink(missing_ok=True)
        self.counts = Counter(key for key, _ in entries)


def spooled_keys(out: OutputDir) -> set[str]:
    """Sources with records in any sink's spool (of this run's sinks or not)."""
    return {key for path in (out.root / SPOOL_DIR).glob("*.jsonl") for key, _ in Spool(path).entries()}


class DeliverySink(Sink):
    """What the webhook and MQTT sinks share. A subclass sets ``shown`` (its redacted URL) and
    implements ``_send``: one attempt at delivering records in order, returning those not delivered
    (from the first failure on) and keeping the reason in ``self.reason``."""

    shown = ""

    def __init__(self, config: DeliveryConfig, spool: Spool | None) -> None:
        self.config, self.spool = config, spool
        self.reason = ""
        self.delivered = 0
        self.undelivered: Counter[str] = Counter()  # per source key, this run
        self._batch: list[Entry] = []
        self._paused_until = 0.0

    def __str__(self) -> str:
        return f"{self.name} {self.shown}"

    def _send(self, entries: list[Entry]) -> list[Entry]:
        raise NotImplementedError

    def _deliver(self, entries: list[Entry]) -> list[Entry]:
        """Every attempt the config allows, with backoff; what is left failed them all."""
        left = self._send(entries)
        for delay in self.config.delays():
            if not left:
                break
            log.debug("%s %s: %d record(s) not delivered (%s); retrying in %g s", self.name, self.shown,
                      len(left), self.reason, delay)
            time.sleep(delay)
            left = self._send(left)
        self.delivered += len(entries) - len(left)
        return left

    def pending(self, key: str | None = None) -> int:
        return self.undelivered.total() if key is None else self.undelivered[key]

    def write(self, key: str, record: dict) -> None:
        self._batch.append((key, record))

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        if time.monotonic() < self._paused_until:
            failed, why = batch, f"not tried: paused after {self.reason}"
        else:
            failed = self._deliver(batch)
            why = f"{1 + self.config.retries} attempt(s): {self.reason}"
            if failed:
                self._paused_until = time.monotonic() + self.config.pause_s
        if not failed:
            return
        self.undelivered.update(key for key, _ in failed)
        where = f"spooled to {self.spool.path}" if self.spool is not None else "lost (no -o OUT to spool them in)"
        log.warning("%s %s: %d record(s) not delivered (%s); %s", self.name, self.shown, len(failed), why, where)
        if self.spool is not None:
            self.spool.add(failed)

    def close_source(self, key: str, *, finished: bool) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()

    def forget(self, key: str) -> None:
        if self.spool is not None and self.spool.counts[key]:
            self.spool.replace([e for e in self.spool.entries() if e[0] != key])

    def replay(self) -> int:
        if self.spool is None or not self.spool.counts:
            return 0
        entries, done = self.spool.entries(), 0
        while done < len(entries):
            chunk = entries[done:done + _REPLAY_CHUNK]
            left = self._deliver(chunk)
            done += len(chunk) - len(left)
            if left:
                self._paused_until = time.monotonic() + self.config.pause_s
                break
        self.spool.replace(entries[done:])
        log.info("%s %s: replayed %d spooled record(s)%s", self.name, self.shown, done,
                 f"; {len(entries) - done} still undelivered ({self.reason})" if done < len(entries) else "")
        return done
