"""What every sink does. The pipeline calls a sink from one thread only (the sink stage), in order:
``open_source``, ``write`` for each of that source's records, ``close_source``; ``close`` at the end.
``key`` names the source in the run: its file-name stem for per-source output files."""

from __future__ import annotations


class Sink:
    name = "sink"

    def __str__(self) -> str:
        """The sink as the summary names it (a URL only ever redacted)."""
        return self.name

    def open_source(self, key: str) -> None:
        """A source starts."""

    def open_live(self, key: str) -> None:
        """A live source starts (it never finishes: file sinks append under the final name)."""
        self.open_source(key)

    def write(self, key: str, record: dict) -> None:
        raise NotImplementedError

    def close_source(self, key: str, *, finished: bool) -> None:
        """A source ends. ``finished`` is False when the run was interrupted before its end."""

    def flush(self) -> None:
        """Push buffered records out (called after each batch)."""

    def close(self) -> None:
        """The run ends: release connections and files."""

    def pending(self, key: str | None = None) -> int:
        """Records of source ``key`` (of every source: None) this sink did not deliver in this run:
        spooled for a later run, or lost where there is no spool. A file sink always writes."""
        return 0

    def forget(self, key: str) -> None:
        """Source ``key`` is labelled again from the start: drop what earlier runs left undelivered."""

    def replay(self) -> int:
        """The run starts: deliver what earlier runs left undelivered; return how many records."""
        return 0
