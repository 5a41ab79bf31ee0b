"""``avfuse bench quality``: the default training recipe on the generalisation suite (:mod:`avfuse.models.suite`), data
sets made by another program than ``avfuse synth`` and unlike its default in size, rate, sound, picture, class
count and structure.

For each set: generate it (or reuse it under ``--out``), train ``avfuse train``'s defaults with gated fusion,
then the same recipe with concat and sequential fusion and with each modality alone, score every model on the
set's held-out videos, export the gated one to ONNX (fp32 and int8) and score both files with onnxruntime.
One table: set, held-out segments, accuracy per head and per single modality, the int8 change in points, and
the gated model's training seconds. Goals: >= 90% held-out with the defaults on every set, gated fusion at
least as good as concat and sequential. Training uses the very code of ``avfuse train`` (train_once).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from avfuse.stream.errors import ConfigError

log = logging.getLogger(__name__)

GOAL = 0.90
HEADS = ("gated", "concat", "sequential")
SINGLES = ("video", "audio", "text")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path(".avfuse-cache/suite"),
                        help="where the suite's data sets and results go (reused when there)")
    parser.add_argument("--sets", default="", help="comma list of set names (default: all)")
    parser.add_argument("--heads", action=argparse.BooleanOptionalAction, default=True,
                        help="also train concat and sequential fusion (default on)")
    parser.add_argument("--singles", action=argparse.BooleanOptionalAction, default=True,
                        help="also train each modality alone (default on)")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                        help="export the gated model and score its int8 file against fp32 (default on)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-args", default="", help="extra 'avfuse train' arguments to try against the defaults, "
                        "e.g. \"--backbone tiny --epochs 40\" (the table then is not of the defaults)")


def _selected(names: str):
    from avfuse.models.suite import SUITE

    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(wanted) - {s.name for s in SUITE})
    if unknown:
        raise ConfigError(f"unknown suite sets {unknown}; the suite has {[s.name for s in SUITE]}")
    return [s for s in SUITE if not wanted or s.name in wanted]


def _default_args(manifest: Path, test: Path, out: Path, threads: int, seed: int, extra: str = ""
                  ) -> argparse.Namespace:
    """The arguments ``avfuse train --manifest M --test-manifest T -o OUT [extra]`` gets: the recipe's defaults
    unless ``extra`` changes them."""
    import shlex

    from avfuse.models import train_cmd

    parser = argparse.ArgumentParser(prog="avfuse bench quality --train-args")
    train_cmd.add_arguments(parser)
    return parser.parse_args(["--manifest", str(manifest), "--test-manifest", str(test), "-o", str(out),
                              "--threads", str(threads), "--seed", str(seed), *shlex.split(extra)])


def _onnx_accuracy(checkpoint: Path, onnx_path: Path, test_manifest: Path, calib_manifest: Path,
                   int8: bool) -> dict:
    from avfuse.export.export_cmd import ExportConfig, export

    # verify off: the int8 file is written (and its agreement with fp32 reported) even below export's 99% gate
    result = export(ExportConfig(checkpoint=checkpoint, output=onnx_path, int8=int8, calib=calib_manifest,
                                 held_out=test_manifest, verify=False, portability=False))
    fp32 = result.by_precision("fp32").held_out_accuracy
    out = {"onnx_fp32": fp32}
    if int8:
        v = result.by_precision("int8")
        out.update(onnx_int8=v.held_out_accuracy, int8_agreement=v.held_out_agreement)
    return out


def _reused(suite_set, out: Path, seed: int):
    """The set as an earlier run wrote it under ``out``, if it was made from the same fields and seed."""
    from dataclasses import asdict

    from avfuse.models.suite import SuiteData

    try:
        info = json.loads((out / "info.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("seed") != seed or any(info.get(k) != v for k, v in asdict(suite_set).items()):
        return None
    log.info("%s: reusing the data set in %s", suite_set.name, out)
    return SuiteData(name=suite_set.name, out_dir=out, train_manifest=out / "train.csv",
                     test_manifest=out / "test.csv", labels=tuple(info["labels"]), seconds_taken=0.0)


def bench_set(suite_set, root: Path, args: argparse.Namespace) -> dict:
    from avfuse.models import data
    from avfuse.models.suite import generate
    from avfuse.models.train_cmd import train_config, train_once
    from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata

    began = time.perf_counter()
    made = _reused(suite_set, root / suite_set.name / "data", args.seed) or generate(
        suite_set, root / suite_set.name / "data", seed=args.seed)
    generated = time.perf_counter() - began
    runs = root / suite_set.name / "runs"
    base = _default_args(made.train_manifest, made.test_manifest, runs / "gated", args.threads, args.seed,
                         args.train_args)
    width, height = base.size
    decode, segment = DecodeConfig(fps=base.fps, height=height, width=width), SegmentConfig(window_s=base.window)
    ds = data.load_manifest(made.train_manifest, decode=decode, segment=segment)
    test = data.load_manifest(made.test_manifest, decode=decode, segment=segment, labels=ds.label_names)
    train_idx, val_idx = data.split_by_source(ds, base.val_split, base.seed)
    meta = decode_metadata(decode, segment)
    config = replace(train_config(base), progress=False)
    row: dict = {"set": suite_set.name, "classes": suite_set.classes, "rule": suite_set.rule,
                 "train_segments": len(ds), "test_segments": len(test), "generate_seconds": round(generated, 1)}
    variants = [("gated", config)]
    if args.heads:
        variants += [(h, replace(config, fusion=h)) for h in HEADS[1:]]
    if args.singles:
        variants += [(m, replace(config, modalities=(m,))) for m in SINGLES]
    for name, cfg in variants:
        out = runs / name / "model.pt" if name == "gated" else None
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
        result, metrics = train_once(ds, train_idx, val_idx, test, config=cfg, decode=meta, out=out,
                                     train_args={"bench": "quality", "variant": name})
        (runs / name).mkdir(parents=True, exist_ok=True)
        (runs / name / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        row[name] = metrics["test"]["accuracy"]
        if name == "gated":
            row["train_seconds"] = round(result.seconds, 1)
            row["val"] = metrics["val"]["accuracy"]
            row["factors"] = _factors(result, test)
            log.info("%s / gated: held-out accuracy per factor (%s) of the fused head and of each modality's own "
                     "classifier: %s", suite_set.name, suite_set.rule, row["factors"])
        log.info("%s / %s: held-out accuracy %.3f (%.0f s)", suite_set.name, name, row[name], result.seconds)
    if args.int8:
        row.update(_onnx_accuracy(runs / "gated" / "model.pt", runs / "gated" / "model.onnx", made.test_manifest,
                                  made.train_manifest, int8=True))
    return row


def _factors(result, test) -> dict:
    """Held-out accuracy on each factor of the class (video, audio, text; the pair rule's labels name two)."""
    from avfuse.models.factor_report import factor_accuracy, head_predictions
    from avfuse.models.train import held_out_tensors

    tensors = held_out_tensors(result, test)
    return factor_accuracy(result.config.labels, tensors.labels.numpy(), head_predictions(result.model, tensors))


def table(rows: list[dict]) -> str:
    cols = [("gated", "gated"), ("concat", "concat"), ("sequential", "seq"), ("video", "video"),
            ("audio", "audio"), ("text", "text")]
    shown = [(k, h) for k, h in cols if any(k in r for r in rows)]
    head = f"{'set':<11} {'classes':>9} {'segments':>8} " + " ".join(f"{h:>6}" for _, h in shown)
    head += f" {'int8':>7} {'train s':>7}"
    lines = [head]
    for r in rows:
        cells = " ".join(f"{100 * r[k]:>5.1f}%" if k in r else f"{'-':>6}" for k, _ in shown)
        int8 = (f"{100 * (r['onnx_int8'] - r['onnx_fp32']):>+6.1f}p" if r.get("onnx_int8") is not None
                else f"{'-':>7}")
        lines.append(f"{r['set']:<11} {r['classes']:>3} {r['rule']:<6}{r['test_segments']:>8} {cells} {int8} "
                     f"{r['train_seconds']:>7.0f}")
    held = [r for r in rows if r["gated"] >= GOAL]
    compared = [r for r in rows if all(h in r for h in HEADS[1:])]
    beats = [r for r in compared if all(r["gated"] >= r[h] for h in HEADS[1:])]
    versus = (f"gated >= concat and sequential on {len(beats)}/{len(compared)}" if compared
              else "concat and sequential not trained (--no-heads)")
    lines.append(f"gated >= {100 * GOAL:.0f}% held-out on {len(held)}/{len(rows)} sets; {versus} (accuracy: held-out "
                 "segments; int8: points against the fp32 ONNX file)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from avfuse.export.export_cmd import require_train_extra

    require_train_extra("avfuse bench quality")
    sets = _selected(args.sets)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for suite_set in sets:
        rows.append(bench_set(suite_set, args.out, args))
        (args.out / "quality.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(table(rows[-1:]).splitlines()[1], flush=True)
    print(table(rows))
    print(f"wrote {args.out / 'quality.json'}")
    return 0 if all(r["gated"] >= GOAL for r in rows) else 1
