"""What every sink does. The pipeline calls a sink from one thread only (the sink stage), in order:
``open_source``, ``write`` for each of that source's records, ``close_source``; ``close`` at the end.
``key`` names the source in the run: its file-name stem for per-source output files."""

from __future__ import annotations


class Sink:
    name = "sink"

    def open_source(self, key: str) -> None:
        """A source starts."""

    def write(self, key: str, record: dict) -> None:
        raise NotImplementedError

    def close_source(self, key: str, *, finished: bool) -> None:
        """A source ends. ``finished`` is False when the run was interrupted before its end."""

    def flush(self) -> None:
        """Push buffered records out (called after each batch)."""

    def close(self) -> None:
        """The run ends: release connections and files."""
