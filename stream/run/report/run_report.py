"""The report of a run's output folder: one self-contained HTML file (``template.html`` beside this module).

Each source's JSON-lines records (finished ``STEM.jsonl`` and unfinished ``STEM.jsonl.partial`` alike) become
compact columns embedded in the page as JSON; the page's own script draws them (a timeline of segments, events,
gates, present flags and gaps) with SVG. Thumbnails written by ``run --thumbnails`` are embedded as data URIs.
Nothing is fetched when the page is viewed.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from avfuse.stream.errors import DataError
from avfuse.stream.media.segment import MODALITIES
from avfuse.stream.run.outputs import PARTIAL
from avfuse.stream.run.report.page import embed_json, fill
from avfuse.stream.run.report.thumbs import thumb_path

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).with_name("template.html")


@dataclass(kw_only=True)
class SourceRecords:
    """One output file's records, split by type."""

    name: str  # the source as the records show it
    stem: str  # the output file's stem (the run's key for the source)
    finished: bool
    segments: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    unreadable: int = 0  # lines that were not JSON records


def output_files(folder: Path) -> list[tuple[Path, str, bool]]:
    """(path, stem, finished) of each source's JSON-lines output in ``folder``; a finished file wins over a
    ``.partial`` one of the same stem."""
    found: dict[str, tuple[Path, str, bool]] = {}
    for path in sorted(folder.glob("*.jsonl" + PARTIAL)):
        stem = path.name.removesuffix(".jsonl" + PARTIAL)
        found[stem] = (path, stem, False)
    for path in sorted(folder.glob("*.jsonl")):
        found[path.stem] = (path, path.stem, True)
    return [found[k] for k in sorted(found)]


def read_records(path: Path, stem: str, finished: bool) -> SourceRecords:
    src = SourceRecords(name=stem, stem=stem, finished=finished)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from e
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            src.unreadable += 1
            continue
        kind = rec.get("type") if isinstance(rec, dict) else None
        if kind == "segment" and _is_segment(rec):
            src.segments.append(rec)
        elif kind == "event":
            src.events.append(rec)
        elif kind == "gap":
            src.gaps.append(rec)
        elif kind == "error":
            src.errors.append(rec)
        else:
            src.unreadable += 1
    named = src.segments or src.events or src.errors or src.gaps
    if named and isinstance(named[0].get("source"), str):
        src.name = named[0]["source"]
    src.segments.sort(key=lambda r: (r["start"], r.get("index", 0)))
    return src


def _num(v: object) -> float:
    """A finite number from a record field, else 0 (a page cannot draw NaN)."""
    return round(float(v), 3) if isinstance(v, int | float) and math.isfinite(v) else 0.0


def _label(rec: dict) -> str:
    return rec["label"] if isinstance(rec.get("label"), str) else "?"


def _is_segment(rec: dict) -> bool:
    return (isinstance(rec.get("start"), int | float) and isinstance(rec.get("end"), int | float)
            and isinstance(rec.get("label"), str) and isinstance(rec.get("score"), int | float))


def _gap_times(src: SourceRecords) -> list[list]:
    """Gaps (wall clock) placed on the media-time axis: after the last segment that closed before the gap,
    for as long as the gap lasted (a live source's media time goes on by exactly that much)."""
    closes = [(r["wallclock"], r["end"]) for r in src.segments if isinstance(r.get("wallclock"), int | float)]
    out = []
    for g in src.gaps:
        a, b = g.get("start_wallclock"), g.get("end_wallclock")
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            continue
        start = max((end for wall, end in closes if wall <= a + 1e-3), default=0.0)
        out.append([round(start, 3), round(start + max(b - a, 0.0), 3), str(g.get("reason", ""))])
    return out


def _thumbs(folder: Path, src: SourceRecords) -> list[str | None]:
    out: list[str | None] = []
    for r in src.segments:
        index = r.get("index")
        path = thumb_path(folder, src.stem, index) if isinstance(index, int) else None
        try:
            out.append(base64.b64encode(path.read_bytes()).decode("ascii") if path is not None else None)
        except OSError:
            out.append(None)
    return out if any(out) else []


def source_data(folder: Path, src: SourceRecords, labels: dict[str, int]) -> dict:
    """One source as the page's script reads it: columns of numbers, labels as indices into ``labels``."""
    segs = src.segments
    for r in segs + src.events:
        labels.setdefault(_label(r), len(labels))

    def gate(r: dict, m: str) -> float:
        gates = r.get("gates")
        return _num(gates.get(m)) if isinstance(gates, dict) else 0.0

    def present(r: dict) -> int:
        p = r.get("present")
        p = p if isinstance(p, dict) else {}
        return sum(1 << i for i, m in enumerate(MODALITIES) if p.get(m, True))

    return {
        "name": src.name, "stem": src.stem, "finished": src.finished,
        "start": [_num(r["start"]) for r in segs], "end": [_num(r["end"]) for r in segs],
        "index": [r.get("index") if isinstance(r.get("index"), int) else n for n, r in enumerate(segs)],
        "label": [labels[r["label"]] for r in segs], "score": [_num(r["score"]) for r in segs],
        "gates": [[gate(r, m) for m in MODALITIES] for r in segs], "present": [present(r) for r in segs],
        "events": [[_num(e.get("start")), _num(e.get("end")), labels[_label(e)], _num(e.get("score"))]
                   for e in src.events],
        "gaps": _gap_times(src),
        "errors": [f"{e.get('error', 'error')}: {e.get('detail', '')}" for e in src.errors],
        "thumbs": _thumbs(folder, src),
    }


def _index_html(sources: list[SourceRecords], labels: list[str]) -> str:
    """The table of sources with their counts per label (server-side, every string escaped)."""
    head = "".join(f"<th>{escape(label)}</th>" for label in labels)
    rows = []
    for n, s in enumerate(sources):
        counts = Counter(r["label"] for r in s.segments)
        cells = "".join(f"<td>{counts.get(label, 0)}</td>" for label in labels)
        state = "" if s.finished else " <em>(unfinished)</em>"
        rows.append(f'<tr><td><a href="#src-{n}">{escape(s.name)}</a>{state}</td><td>{len(s.segments)}</td>'
                    f"<td>{len(s.events)}</td><td>{len(s.errors)}</td>{cells}</tr>")
    total = Counter(r["label"] for s in sources for r in s.segments)
    foot = "".join(f"<td>{total.get(label, 0)}</td>" for label in labels)
    return (f'<table id="index"><thead><tr><th>source</th><th>segments</th><th>events</th><th>errors</th>{head}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody><tfoot><tr><td>all {len(sources)} sources</td>"
            f"<td>{sum(len(s.segments) for s in sources)}</td><td>{sum(len(s.events) for s in sources)}</td>"
            f"<td>{sum(len(s.errors) for s in sources)}</td>{foot}</tr></tfoot></table>")


def run_report(folder: Path) -> str:
    """The HTML report of the run whose output folder is ``folder``."""
    files = output_files(folder)
    if not files:
        raise DataError(f"{folder}: no .jsonl outputs here (a run writes them with -o {folder} --sink jsonl)")
    sources = [read_records(*f) for f in files]
    bad = sum(s.unreadable for s in sources)
    if bad:
        log.warning("%s: %d line(s) that are not avfuse records were left out", folder, bad)
    labels: dict[str, int] = {}
    data = [source_data(folder, s, labels) for s in sources]
    page = {"labels": list(labels), "modalities": list(MODALITIES), "sources": data}
    segments = sum(len(s.segments) for s in sources)
    return fill(TEMPLATE.read_text(encoding="utf-8"), title=escape(f"avfuse report: {folder.name}"),
                summary=escape(f"{len(sources)} source(s), {segments} segment(s), "
                               f"{sum(len(s.events) for s in sources)} event(s)"),
                index=_index_html(sources, list(labels)) if len(sources) > 1 else "",
                data=embed_json(page))
