"""``avfuse train (--manifest CSV | --data DIR) -o RUN``: train, select on validation, write RUN/model.pt,
RUN/config.json and RUN/metrics.json. ``--folds K`` adds K-fold cross-validation by source file;
``--test-manifest`` evaluates on held-out videos (also with each modality removed); ``--ablate``
trains every fusion head and modality set and prints a table (RUN/ablation.json).

The defaults are what held up on data avfuse never generated (``avfuse bench quality``'s suite): the
``tiny`` image CNN trained from scratch with the joint schedule, class-weighted loss and strong
augmentation (shifts, colour gains, noise, shuffled and dropped caption words), then cross-fitting: three more
models each hold out another quarter of the training files, and the saved model reads its classifiers through
their confusions on the files they did not see (:mod:`avfuse.models.cross_fit`). mobilenet_v3_small from
scratch got 31% held-out on the suite's ``webcam`` set where ``tiny`` got 50-73%; it, resnet18 and
efficientnet_b0 stay selectable, for ``--pretrained`` ImageNet weights on a machine that can fetch them. With
the decode defaults (2 fps, 64x64 frames, 2 s windows) 40 videos of 8 s train in under two minutes on two
idle CPU cores, cross-fitting's four trainings included. On a busy or small CPU, ``--threads 1`` is often
faster than torch's default of one thread per core: these convolutions are too small to split. torch is
imported only inside ``run``, so ``avfuse train -h`` works on the edge install.

``--nproc N`` trains on N DistributedDataParallel ranks (:mod:`avfuse.models.launch` starts them through
torch.distributed.run; :mod:`avfuse.models.distributed` is what changes in training); ``torchrun --nproc_per_node N -m
avfuse.models.train_cmd ARGS`` is the same run. Only rank 0 writes and prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from avfuse.models.launch import nproc_arg
from avfuse.models.recipe import (
    BACKBONES,
    FUSIONS,
    KEEPS,
    OPTIMIZERS,
    POOLINGS,
    SCHEDULES,
    TEXTURES,
    TRAIN_FPS,
    TRAIN_SIZE,
    TRAIN_WINDOW_S,
    TrainConfig,
)
from avfuse.stream.cli.main import size_arg
from avfuse.stream.errors import ConfigError
from avfuse.stream.media.segment import MODALITIES
from avfuse.stream.run.outputs import write_atomic

log = logging.getLogger(__name__)
D = TrainConfig()  # the default recipe: every flag's default is its field here

# how the ranks get the options whose values are not their own text (avfuse.models.launch.argv_of)
RANK_FORMATS = {"modalities": ",".join, "size": lambda size: f"{size[0]}x{size[1]}"}


def _modalities(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    bad = [m for m in names if m not in MODALITIES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"modalities must be a comma list of {', '.join(MODALITIES)}, got {text!r}")
    return names



def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", type=Path, help="CSV with path,start,end,label (paths relative to the CSV)")
    src.add_argument("--data", type=Path, help="folder with one sub-folder of videos per label")
    parser.add_argument("-o", "--out", type=Path, required=True, help="run folder for model.pt and metrics.json")
    parser.add_argument("--fusion", choices=FUSIONS, default=D.fusion)
    parser.add_argument("--modalities", type=_modalities, default=D.modalities, help="comma list (default all three)")
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation by source file (K >= 2)")
    parser.add_argument("--val-split", type=float, default=0.25, help="fraction of source files for validation")
    parser.add_argument("--test-manifest", type=Path, help="held-out videos to report test metrics on")
    parser.add_argument("--ablate", action="store_true",
                        help="train every fusion head and modality set; print a table, write ablation.json")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=D.device)
    parser.add_argument("--epochs", type=int, default=D.epochs)
    parser.add_argument("--keep", choices=KEEPS, default=D.keep,
                        help="which epoch's weights to keep: the last (default) or the best on validation macro-F1, "
                             "stopping early")
    parser.add_argument("--patience", type=int, default=D.patience,
                        help="with --keep best, early stopping: epochs without a better val F1")
    parser.add_argument("--modality-dropout", type=float, default=D.modality_dropout,
                        help="training only: chance to hide each present modality of a segment (default %(default)s)")
    parser.add_argument("--colour-orders", type=float, default=D.colour_orders, metavar="SHARE",
                        help="training only: share of segments whose colour channels are shuffled, for data whose "
                             "colours belong to each file rather than to its class (default %(default)s)")
    parser.add_argument("--cross-fit-folds", type=int, default=D.cross_fit_folds, metavar="K",
                        help="after training, K - 1 more models each hold out another share of the training files, "
                             "and the model reads its classifiers through their confusions on files they did not "
                             "see (default %(default)s; 0: off, the fused head alone)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=D.schedule,
                        help="joint (default): everything from the start; staged: each modality's encoder learns "
                             "alone first, then all are fused")
    parser.add_argument("--stage-epochs", type=int, default=D.stage_epochs,
                        help=f"staged: epochs of the unimodal stage (default {D.stage_epochs})")
    parser.add_argument("--class-weights", action=argparse.BooleanOptionalAction, default=D.class_weights,
                        help="weight the loss by inverse class frequency (default on)")
    parser.add_argument("--lr", type=float, default=D.lr)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer)
    parser.add_argument("--batch-size", type=int, default=D.batch_size)
    parser.add_argument("--seed", type=int, default=D.seed)
    parser.add_argument("--backbone", choices=BACKBONES, default=D.backbone,
                        help="image backbone (default tiny: a small CNN that learns from scratch, offline; the "
                             "torchvision ones want --pretrained ImageNet weights)")
    parser.add_argument("--pooling", choices=POOLINGS, default=D.pooling, help="over the frames")
    parser.add_argument("--texture", choices=TEXTURES, default=D.texture,
                        help="fixed Gabor texture energies of each frame beside the backbone's features: invariant "
                             "(sorted over orientations, so they do not turn with the texture; the default), "
                             "oriented (one per orientation) or none")
    parser.add_argument("--pretrained", action="store_true", help="torchvision ImageNet weights (needs internet once)")
    parser.add_argument("--threads", type=int, default=D.threads, help="CPU threads for torch (default: one per core)")
    parser.add_argument("--nproc", type=nproc_arg, default=1,
                        help="train on N processes with DistributedDataParallel (gloo on CPU, nccl with --device "
                             "cuda: a GPU each); --batch-size stays the global batch (default 1)")
    parser.add_argument("--fps", type=float, default=TRAIN_FPS,
                        help=f"frames sampled per second (default {TRAIN_FPS:g})")
    parser.add_argument("--size", type=size_arg, default=TRAIN_SIZE, metavar="WxH",
                        help="frame size (default {}x{})".format(*TRAIN_SIZE))
    parser.add_argument("--window", type=float, default=TRAIN_WINDOW_S,
                        help=f"segment length in seconds (default {TRAIN_WINDOW_S:g})")
    parser.add_argument("--cache-dir", type=Path, default=None, help="decoded segment cache (default $AVFUSE_CACHE)")


def train_config(args: argparse.Namespace, **overrides) -> TrainConfig:
    fields = dict(fusion=args.fusion, modalities=args.modalities, backbone=args.backbone, pooling=args.pooling,
                  pretrained=args.pretrained, epochs=args.epochs, keep=args.keep, patience=args.patience,
                  batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, seed=args.seed, device=args.device,
                  threads=args.threads, modality_dropout=args.modality_dropout, schedule=args.schedule,
                  stage_epochs=args.stage_epochs, class_weights=args.class_weights,
                  colour_orders=args.colour_orders, cross_fit_folds=args.cross_fit_folds, texture=args.texture)
    return TrainConfig(**{**fields, **overrides})


def _summary(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("segments", "accuracy", "macro_f1")}


def train_once(ds, train_idx, val_idx, test, *, config, decode: dict, out: Path | None, train_args: dict):
    """Train one model; evaluate on the test set (also with each modality removed); save the checkpoint."""
    from avfuse.models.checkpoint import save_checkpoint
    from avfuse.models.evaluate import evaluate, without_each_modality
    from avfuse.models.train import held_out_tensors, train

    result = train(ds.subset(train_idx), ds.subset(val_idx), config=config, decode=decode)
    crossed = None
    if config.cross_fit_folds > 1 and len(val_idx):
        from avfuse.models.cross_fit import cross_fit

        result, crossed = cross_fit(result, ds, train_idx, val_idx, config=config, decode=decode,
                                    folds=config.cross_fit_folds)
    metrics = {"val": result.metrics, "best_epoch": result.best_epoch, "seconds": round(result.seconds, 2),
               "history": result.history, "unimodal_stage": result.stage_history, "train_config": config.as_dict(),
               "model": result.model.describe()}
    if crossed is not None:
        metrics["cross_fit"] = crossed
    if test is not None:
        tensors = held_out_tensors(result, test)
        metrics["test"] = evaluate(result.model, tensors)
        metrics["test"]["without"] = without_each_modality(result.model, tensors)
    if out is not None:
        short = {"val": _summary(result.metrics), "best_epoch": result.best_epoch}
        if "test" in metrics:
            short["test"] = {**_summary(metrics["test"]), "without": metrics["test"]["without"]}
        save_checkpoint(out, result.model, config=result.config, decode=decode, tokenizer=result.tokenizer,
                        metrics=short, train_args=train_args)
    return result, metrics


def cross_fit_line(report: dict) -> str:
    """The summary's line on cross-fitting (models/cross_fit.py)."""
    if "skipped" in report:
        return f"cross-fitting skipped ({report['skipped']}): the model serves its fused head alone"
    acc = report["held_out_accuracy"]
    alone = ", ".join(f"{name} {acc[name]:.3f}" for name in ("video", "audio", "text") if acc.get(name) is not None)
    return (f"cross-fitting: {report['folds']} shares of the training files, each held out once "
            f"({report['held_out_segments']} segments): fused head {acc['fused']:.3f}, read through the held-out "
            f"confusions {acc['combined']:.3f} (counted on these segments: optimistic); each alone {alone}"
            + groups_line(report.get("groups", {})))


def groups_line(groups: dict) -> str:
    """How many groups of classes each classifier told apart on held-out files (models/class_groups.py)."""
    if not groups:
        return ""
    classes = sum(len(g) for g in next(iter(groups.values())))
    told = ", ".join(f"{name} {len(g)}" for name, g in groups.items())
    return f"; groups of classes each tells apart (of {classes}): {told}"


def cross_validate(ds, folds, *, config, decode: dict) -> dict:
    """Train one model per fold; mean and standard deviation of validation accuracy and macro-F1."""
    import numpy as np

    from avfuse.models.train import train

    per_fold = []
    for k, (train_idx, val_idx) in enumerate(folds, start=1):
        result = train(ds.subset(train_idx), ds.subset(val_idx), config=config, decode=decode)
        per_fold.append({"fold": k, **_summary(result.metrics), "best_epoch": result.best_epoch})
        log.info("fold %d/%d: accuracy %.3f, macro-F1 %.3f", k, len(folds), result.metrics["accuracy"],
                 result.metrics["macro_f1"])
    acc = np.array([f["accuracy"] for f in per_fold])
    f1 = np.array([f["macro_f1"] for f in per_fold])
    return {"k": len(folds), "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
            "macro_f1_mean": float(f1.mean()), "macro_f1_std": float(f1.std()), "per_fold": per_fold}


ABLATION = (  # (modalities, fusion): single modalities, pairs, then all three with each fusion head
    (("video",), "gated"), (("audio",), "gated"), (("text",), "gated"),
    (("video", "audio"), "gated"), (("video", "text"), "gated"), (("audio", "text"), "gated"),
    (MODALITIES, "gated"), (MODALITIES, "concat"), (MODALITIES, "sequential"),
)


def ablate(ds, train_idx, val_idx, test, *, base, decode: dict) -> dict:
    """Every row of ABLATION trained on the same split; scored on ``test`` (or validation when None)."""
    from dataclasses import replace

    rows, correct, kept = [], {}, None
    for modalities, fusion in ABLATION:
        config = replace(base, modalities=modalities, fusion=fusion, progress=False)
        result, metrics = train_once(ds, train_idx, val_idx, test, config=config, decode=decode, out=None,
                                     train_args={})
        if test is not None:
            correct.update(_correct_per_segment(result, test, f"{'+'.join(modalities)}/{fusion}"))
            if modalities == MODALITIES and kept is None:
                kept = _keeping_the_others(result, test)
        scored = metrics.get("test", metrics["val"])
        rows.append({"modalities": list(modalities), "fusion": fusion, "val_accuracy": metrics["val"]["accuracy"],
                     "accuracy": scored["accuracy"], "macro_f1": scored["macro_f1"],
                     "without": scored.get("without", {}), "seconds": metrics["seconds"]})
    on = "held-out test" if test is not None else "validation"
    lines = [f"ablation ({on} set, {len(test) if test is not None else len(val_idx)} segments)",
             f"{'modalities':<20} {'fusion':<11} {'accuracy':>8} {'macro-F1':>8} {'seconds':>7}  "
             "accuracy with one modality removed"]
    for r in rows:
        removed = ", ".join(f"no {m} {a:.3f}" for m, a in r["without"].items()) if len(r["modalities"]) > 1 else ""
        lines.append(f"{'+'.join(r['modalities']):<20} {r['fusion']:<11} {r['accuracy']:>8.3f} "
                     f"{r['macro_f1']:>8.3f} {r['seconds']:>7.1f}  {removed}")
    checks = comparisons(rows, correct, kept)
    if checks:
        lines += ["", "gated fusion on all three against the other heads, and with a modality removed at test time "
                  "against the model trained without it:"]
        lines += [line for c in checks for line in _comparison_lines(c)]
    return {"scored_on": on, "rows": rows, "comparisons": checks, "text": "\n".join(lines)}


def _keeping_the_others(result, test) -> dict:
    """{modality m: which held-out segments have every modality but m, as the model sees them (a caption
    with no words, such as "♪ ♪", is no text)}: removing m leaves these with two modalities. A segment that
    already lacks another one would be left with a single modality."""
    from avfuse.models.train import held_out_tensors

    tensors = held_out_tensors(result, test)
    seen = result.model.present_mask(tensors.tokens, tensors.present).numpy() > 0
    return {m: seen[:, [i for i, x in enumerate(MODALITIES) if x != m]].all(axis=1) for m in MODALITIES}


def _comparison_lines(c: dict) -> list[str]:
    if "kept_segments" not in c:
        return [f"  {c['gated']} {c['gated_accuracy']:.3f} {'>=' if c['holds'] else '< '} {c['other']} "
                f"{c['other_accuracy']:.3f}{_paired(c)}"]
    on = f"on the {c['kept_segments']} segments that keep {c['kept']}"
    line = [f"  {c['gated']}: {c['kept_gated_accuracy']:.3f} {'>=' if c['holds'] else '< '} {c['other']} "
            f"{c['kept_other_accuracy']:.3f} {on}{_paired(c, 'kept_')}"]
    if c["rest_segments"]:
        line.append(f"      on the other {c['rest_segments']}, left with one modality: "
                    f"{c['rest_gated_accuracy']:.3f} vs {c['rest_other_accuracy']:.3f}{_paired(c, 'rest_')}; "
                    f"on all: {c['gated_accuracy']:.3f} vs {c['other_accuracy']:.3f}")
    return line


def _correct_per_segment(result, test, key: str) -> dict:
    """{key/drop: which held-out segments the model gets right}, drop "" (none) or each of its modalities."""
    from avfuse.models.evaluate import predict
    from avfuse.models.train import held_out_tensors

    tensors = held_out_tensors(result, test)
    labels = tensors.labels.numpy()
    modalities = result.model.config.modalities
    return {f"{key}/{drop or ''}": predict(result.model, tensors, drop=drop)[0].argmax(axis=1) == labels
            for drop in (None, *(modalities if len(modalities) > 1 else ()))}


def sign_test(a: int, b: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven of a + b segments on which two
    models disagree, were each equally likely to be the one that is right."""
    n, k = a + b, min(a, b)
    return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def _paired(c: dict, prefix: str = "") -> str:
    if f"{prefix}only_gated_right" not in c:
        return ""
    a, b = c[f"{prefix}only_gated_right"], c[f"{prefix}only_other_right"]
    return f"  (they differ on {a + b} segments: {a} vs {b}, sign test p = {c[f'{prefix}sign_test_p']:.2f})"


def _disagreements(mine, theirs, prefix: str = "") -> dict:
    only_a, only_b = int((mine & ~theirs).sum()), int((theirs & ~mine).sum())
    return {f"{prefix}only_gated_right": only_a, f"{prefix}only_other_right": only_b,
            f"{prefix}sign_test_p": round(sign_test(only_a, only_b), 4)}


def comparisons(rows: list[dict], correct: dict | None = None, kept: dict | None = None) -> list[dict]:
    """The all-three gated row against concat and sequential, and without each modality against the gated
    model trained on the two others (rows missing from ``rows`` are skipped). With ``correct`` (from
    ``_correct_per_segment``), each comparison also counts the segments only one side gets right, and
    gives the sign test's p: how likely so uneven a split is between two equally good models.

    With ``kept`` too (from ``_keeping_the_others``), a modality-removed comparison ``holds`` on the
    segments that keep both other modalities, which is what both models then see (the claim: one modality
    gone, the two others there). A segment that already lacked one of them is left with a single modality,
    and under a rule where one modality leaves two labels open both models guess; those segments are
    reported apart (``rest_*``) and still counted in ``gated_accuracy``, ``other_accuracy`` and
    ``holds_on_all``."""
    by = {("+".join(r["modalities"]), r["fusion"]): r for r in rows}
    full = by.get(("+".join(MODALITIES), "gated"))
    if full is None:
        return []
    three = "+".join(MODALITIES)
    pairs = [(None, "gated", full["accuracy"], f"{three}/gated/", other, by[(three, other)]["accuracy"],
              f"{three}/{other}/") for other in ("concat", "sequential") if (three, other) in by]
    for m, acc in full.get("without", {}).items():
        rest = "+".join(x for x in MODALITIES if x != m)
        if (rest, "gated") in by:
            pairs.append((m, f"gated without {m}", acc, f"{three}/gated/{m}", f"trained on {rest}",
                          by[(rest, "gated")]["accuracy"], f"{rest}/gated/"))
    out = []
    for m, a, x, key_a, b, y, key_b in pairs:
        check = {"gated": a, "gated_accuracy": x, "other": b, "other_accuracy": y, "holds": x >= y}
        if correct and key_a in correct and key_b in correct:
            mine, theirs = correct[key_a], correct[key_b]
            check.update(_disagreements(mine, theirs))
            if m is not None and kept and m in kept and kept[m].any():
                check.update(holds_on_all=check["holds"], kept=" and ".join(x for x in MODALITIES if x != m))
                for prefix, on in (("kept_", kept[m]), ("rest_", ~kept[m])):
                    check.update({f"{prefix}segments": int(on.sum()),
                                  f"{prefix}gated_accuracy": float(mine[on].mean()) if on.any() else None,
                                  f"{prefix}other_accuracy": float(theirs[on].mean()) if on.any() else None},
                                 **_disagreements(mine[on], theirs[on], prefix))
                check["holds"] = check["kept_gated_accuracy"] >= check["kept_other_accuracy"]
        out.append(check)
    return out


def _load(args: argparse.Namespace, *, test: bool = True):
    """-> (the data set, the held-out set or None, the decode metadata, train and validation indices)."""
    from avfuse.models import data
    from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata

    width, height = args.size
    decode = DecodeConfig(fps=args.fps, height=height, width=width)
    segment = SegmentConfig(window_s=args.window)
    meta = decode_metadata(decode, segment)
    if args.manifest:
        ds = data.load_manifest(args.manifest, decode=decode, segment=segment, cache_dir=args.cache_dir)
    else:
        ds = data.load_folder(args.data, decode=decode, segment=segment, cache_dir=args.cache_dir)
    log.info("loaded %d segments from %d files: %s", len(ds), len(set(ds.sources)), ds.counts())
    held_out = None
    if test and args.test_manifest:
        held_out = data.load_manifest(args.test_manifest, decode=decode, segment=segment, cache_dir=args.cache_dir,
                                      labels=ds.label_names)
    train_idx, val_idx = data.split_by_source(ds, args.val_split, args.seed)
    return ds, held_out, meta, train_idx, val_idx


def _launch(args: argparse.Namespace) -> int:
    """--nproc N: decode into the segment cache here (a bad manifest or too few segments stops the run before
    any rank starts), then start the ranks on the same arguments."""
    from avfuse.models.distributed import check_segments
    from avfuse.models.launch import argv_of, launch

    ds, _, _, train_idx, _ = _load(args)
    check_segments(len(train_idx), args.nproc)
    del ds
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = argv_of(parser, args, RANK_FORMATS, skip={"nproc"})  # a rank learns the world size from torchrun
    launch([*argv, *(["-v"] if getattr(args, "verbose", False) else [])], args.nproc)
    return 0


def run(args: argparse.Namespace) -> int:
    from avfuse.models import distributed

    if args.folds == 1 or args.folds < 0:
        raise ConfigError(f"--folds must be 0 (off) or >= 2, got {args.folds}")
    if not 0 < args.val_split < 1:
        raise ConfigError(f"--val-split must be between 0 and 1, got {args.val_split}")
    world = distributed.launched().world
    if world > 1 and args.nproc not in (1, world):
        raise ConfigError(f"--nproc {args.nproc} but torchrun started {world} ranks")
    if args.nproc > 1 and world == 1:
        return _launch(args)
    ranks = distributed.start(args.device)
    try:
        return _run(args, ranks)
    finally:
        distributed.stop()


def _run(args: argparse.Namespace, ranks) -> int:
    import numpy as np

    from avfuse.models import data, distributed
    from avfuse.models.class_report import class_table, data_warnings

    if not ranks.main:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 tells the story
    with distributed.main_first():
        ds, test, meta, train_idx, val_idx = _load(args, test=ranks.main)
    distributed.check_segments(len(train_idx), ranks.world)
    out: Path = args.out
    quiet = {} if ranks.main else {"progress": False}
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        labels = np.asarray(ds.labels)
        for warning in data_warnings(ds.label_names, labels[train_idx], labels[val_idx] if len(val_idx) else None):
            log.warning("%s", warning)
    skip = {"verbose"} | ({"nproc"} if args.nproc == 1 else set())
    train_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in skip}

    if args.ablate:
        table = ablate(ds, train_idx, val_idx, test, base=train_config(args, **quiet), decode=meta)
        if ranks.main:
            write_atomic(out / "ablation.json", json.dumps(table, indent=2) + "\n")
            print(table["text"])
            print(f"wrote {out / 'ablation.json'}")
        return 0

    metrics: dict = {}
    if args.folds:
        metrics["folds"] = cross_validate(ds, data.kfold_by_source(ds, args.folds, args.seed),
                                          config=train_config(args, progress=False), decode=meta)
        f = metrics["folds"]
        if ranks.main:
            print(f"{args.folds}-fold cross-validation: accuracy {f['accuracy_mean']:.3f} ± {f['accuracy_std']:.3f}, "
                  f"macro-F1 {f['macro_f1_mean']:.3f} ± {f['macro_f1_std']:.3f}")
    result, run_metrics = train_once(ds, train_idx, val_idx, test, config=train_config(args, **quiet), decode=meta,
                                     out=out if ranks.main else None, train_args=train_args)
    if not ranks.main:
        return 0
    metrics.update(run_metrics)
    if ranks.world > 1:
        metrics["distributed"] = {"world_size": ranks.world, "backend": ranks.backend,
                                  "batch_per_rank": distributed.batching(len(train_idx), args.batch_size)[0]}
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    val = metrics["val"]
    print(f"{args.keep} epoch {result.best_epoch}: validation accuracy {val['accuracy']:.3f}, "
          f"macro-F1 {val['macro_f1']:.3f} ({val['segments']} segments) in {result.seconds:.1f} s")
    if "cross_fit" in metrics:
        print(cross_fit_line(metrics["cross_fit"]))
    print("\n".join(class_table(val, "validation")))
    if "test" in metrics:
        t = metrics["test"]
        print("\n".join(class_table(t, "held-out test")))
        print("test accuracy with one modality removed: "
              + ", ".join(f"no {m} {acc:.3f}" for m, acc in t["without"].items()))
    if ranks.world > 1:
        d = metrics["distributed"]
        print(f"trained on {d['world_size']} ranks ({d['backend']}), {d['batch_per_rank']} segments a rank per step")
    print(f"wrote {out / 'model.pt'}, {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":  # the ranks' entry: torchrun --nproc_per_node N -m avfuse.models.train_cmd ARGS
    import sys

    from avfuse.stream.cli.main import main

    sys.exit(main(["train", *sys.argv[1:]]))

