"""Timestamp discontinuities: where a stream's timestamps jump back (two MPEG-TS files concatenated, pts
that wrapped). The decoder follows them rather than dropping what comes after: from the jump on, the
stream's times are offset so media time keeps rising, and each jump becomes a warning record."""

from __future__ import annotations

from dataclasses import dataclass

from avfuse.stream.records import WarningRecord, as_dict

JUMP_BACK_S = 1.0  # a timestamp this far before the previous one is a discontinuity, not a frame out of order


@dataclass(frozen=True, kw_only=True)
class Discontinuity:
    """``stream``'s timestamps went back ``back_s`` seconds; media time continues at ``at`` seconds."""

    source: str  # as shown (redacted)
    stream: str  # "video" or "audio"
    at: float
    back_s: float

    @property
    def text(self) -> str:
        return (f"{self.source}: {self.stream} timestamps jump back {self.back_s:.3f} s at {self.at:.3f} s of "
                "media time (concatenated files or wrapped pts); followed: what comes after is labelled from there on")

    def as_record(self) -> dict:
        return as_dict(WarningRecord(source=self.source, warning="discontinuity", stream=self.stream,
                                     start=round(self.at, 6), end=round(self.at, 6), back_s=round(self.back_s, 6),
                                     detail=self.text))
