"""The report of a training run, from its ``metrics.json``: learning curves (loss, train and validation accuracy,
validation macro-F1 per epoch, and the loss of the unimodal stage), then for validation and test the confusion
matrix, per-class precision / recall / F1 and the mean gate per class and modality.

Drawn here as inline SVG and tables (``train.html`` beside this module), so the page has no script at all; every
label is escaped.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

from avfuse.stream.errors import DataError
from avfuse.stream.media.segment import MODALITIES
from avfuse.stream.run.report.page import fill

TEMPLATE = Path(__file__).with_name("train.html")
CURVES = (("loss", "#d62728"), ("train_accuracy", "#1f77b4"), ("val_accuracy", "#2ca02c"),
          ("val_macro_f1", "#9467bd"))
CHART_W, CHART_H, PAD = 640, 220, 36
SPLITS = ("val", "test")


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _chart(title: str, rows: list[dict], keys: tuple[tuple[str, str], ...], *, unit_max: float | None) -> str:
    """One line chart of ``keys`` over the epochs of ``rows``; y from 0 to ``unit_max`` (None: the data's max)."""
    raw = [(k, c, [(_num(r.get("epoch")), _num(r.get(k))) for r in rows]) for k, c in keys]
    series = [(k, c, [(x, y) for x, y in pts if x is not None and y is not None]) for k, c, pts in raw]
    series = [s for s in series if s[2]]
    if not series:
        return ""
    xs = [x for _, _, pts in series for x, _ in pts]
    top = unit_max or max(y for _, _, pts in series for _, y in pts) or 1.0
    x0, x1 = min(xs), max(xs)
    sx = (lambda x: PAD + (x - x0) / (x1 - x0) * (CHART_W - 2 * PAD)) if x1 > x0 else (lambda x: CHART_W / 2)
    sy = lambda y: CHART_H - PAD + -(y / top) * (CHART_H - 2 * PAD)  # noqa: E731
    parts = [f'<line x1="{PAD}" y1="{CHART_H - PAD}" x2="{CHART_W - PAD}" y2="{CHART_H - PAD}" stroke="#999"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{CHART_H - PAD}" stroke="#999"/>',
             f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{top:.3g}</text>',
             f'<text x="{PAD - 4}" y="{CHART_H - PAD + 4}" text-anchor="end">0</text>',
             f'<text x="{PAD}" y="{CHART_H - PAD + 16}">epoch {x0:g}</text>',
             f'<text x="{CHART_W - PAD}" y="{CHART_H - PAD + 16}" text-anchor="end">{x1:g}</text>']
    legend = []
    for key, colour, pts in series:
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline class="curve" data-key="{escape(key)}" points="{d}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle class="point" data-key="{escape(key)}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" '
                  f'fill="{colour}"><title>{escape(key)} epoch {x:g}: {y:g}</title></circle>' for x, y in pts]
        legend.append(f'<span><i style="background:{colour}"></i>{escape(key)}</span>')
    return (f'<figure class="chart"><figcaption>{escape(title)}</figcaption><div class="legend">{"".join(legend)}'
            f'</div><svg viewBox="0 0 {CHART_W} {CHART_H}" width="{CHART_W}" height="{CHART_H}">{"".join(parts)}'
            "</svg></figure>")


def _shade(value: float, top: float, rgb: tuple[int, int, int] = (31, 119, 180)) -> str:
    a = 0.0 if top <= 0 else max(0.0, min(1.0, value / top))
    return f"background: rgba({rgb[0]},{rgb[1]},{rgb[2]},{a * 0.85:.3f}); color: {'#fff' if a > 0.55 else '#222'}"


def _confusion(c: object) -> str:
    if not isinstance(c, dict) or not isinstance(c.get("labels"), list) or not isinstance(c.get("matrix"), list):
        return "<p>no confusion matrix in these metrics</p>"
    labels, matrix = [str(x) for x in c["labels"]], c["matrix"]
    top = max((v for row in matrix for v in row if isinstance(v, int | float)), default=0)
    head = "".join(f'<th class="pred">{escape(label)}</th>' for label in labels)
    rows = []
    for label, row in zip(labels, matrix, strict=False):
        cells = "".join(f'<td class="cell" style="{_shade(v, top)}">{v}</td>' for v in row)
        rows.append(f"<tr><th>{escape(label)}</th>{cells}</tr>")
    return (f'<table class="confusion"><caption>confusion (rows: true class, columns: predicted)</caption>'
            f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _bar(value: float | None, colour: str) -> str:
    if value is None:
        return "<td>–</td>"
    return (f'<td class="bar"><span style="width:{max(0.0, min(1.0, value)) * 100:.1f}%;background:{colour}">'
            f"</span><b>{value:.3f}</b></td>")


def _per_class(per_class: object) -> str:
    if not isinstance(per_class, dict) or not per_class:
        return "<p>no per-class metrics</p>"
    rows = []
    for label, r in per_class.items():
        r = r if isinstance(r, dict) else {}
        rows.append(f'<tr class="class-row"><th>{escape(str(label))}</th>{_bar(_num(r.get("precision")), "#1f77b4")}'
                    f'{_bar(_num(r.get("recall")), "#ff7f0e")}{_bar(_num(r.get("f1")), "#2ca02c")}'
                    f"<td>{escape(str(r.get('support', '')))}</td></tr>")
    return ('<table class="per-class"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>'
            f"<th>support</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _gates(per_class: object, mean: object) -> str:
    if not isinstance(per_class, dict) or not per_class:
        note = "" if not isinstance(mean, dict) else " (mean over all: " + ", ".join(
            f"{escape(str(m))} {v}" for m, v in mean.items()) + ")"
        return f"<p>no gates per class in these metrics{note}</p>"
    head = "".join(f"<th>{m}</th>" for m in MODALITIES)
    rows = []
    for label, g in per_class.items():
        g = g if isinstance(g, dict) else {}
        cells = "".join(f'<td class="gate" style="{_shade(_num(g.get(m)) or 0.0, 1.0, (89, 161, 79))}">'
                        f"{(_num(g.get(m)) or 0.0):.3f}</td>" for m in MODALITIES)
        rows.append(f"<tr><th>{escape(str(label))}</th>{cells}</tr>")
    return (f'<table class="gates"><caption>mean gate per class (true class) and modality</caption><thead><tr>'
            f"<th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _split(name: str, m: object) -> str:
    if not isinstance(m, dict):
        return ""
    acc, f1 = _num(m.get("accuracy")), _num(m.get("macro_f1"))
    head = (f"accuracy {acc:.3f}" if acc is not None else "") + (f", macro-F1 {f1:.3f}" if f1 is not None else "")
    return (f'<section class="split" id="{name}"><h2>{name}: {escape(head)} on {escape(str(m.get("segments", "?")))}'
            f" segments</h2><div class=\"grid\">{_per_class(m.get('per_class'))}{_confusion(m.get('confusion'))}"
            f"{_gates(m.get('gates_per_class'), m.get('mean_gates'))}</div></section>")


def train_report(path: Path) -> str:
    """The HTML report of the training run whose ``metrics.json`` is ``path``."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read the training metrics ({e})") from e
    if not isinstance(metrics, dict):
        raise DataError(f"{path}: not an avfuse training run's metrics (expected a JSON object)")
    history = [r for r in metrics.get("history") or [] if isinstance(r, dict)]
    stage = [r for r in metrics.get("unimodal_stage") or [] if isinstance(r, dict)]
    curves = (_chart("loss per epoch", history, CURVES[:1], unit_max=None)
              + _chart("accuracy and macro-F1 per epoch", history, CURVES[1:], unit_max=1.0)
              + _chart("unimodal stage: loss per epoch", stage, CURVES[:1], unit_max=None))
    best = metrics.get("best_epoch")
    config = metrics.get("train_config")
    keep = config.get("keep", "best") if isinstance(config, dict) else "best"  # before --keep: the best epoch
    summary = f"{len(history)} epoch(s)" + (f", {keep} epoch {best} kept" if isinstance(best, int) else "")
    return fill(TEMPLATE.read_text(encoding="utf-8"), title=escape(f"avfuse training: {path.parent.name}"),
                summary=escape(summary), curves=curves or "<p>no history in these metrics</p>",
                splits="".join(_split(s, metrics.get(s)) for s in SPLITS))
