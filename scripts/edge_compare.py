"""make edge, second half: run ``avfuse run`` with the fp32 (and int8) file on this machine and on each
emulated ARM64 CPU, compare every record with the host's, print one table and write MODEL.edge.json.

Called by scripts/edge.sh once the userland has the base install (/opt/avfuse) and the media (/edge/media):
    python scripts/edge_compare.py --rootfs DIR --emulator "qemu-aarch64 7.2" --install-bytes N \
        --cpus "cortex-a72 max" --fp32 model.onnx [--int8 model.int8.onnx]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import onnxruntime as ort

from avfuse import __version__
from avfuse.stream.infer.cpu import cpu_info
from avfuse.stream.infer.edge_report import (
    FP32_MAX_DPROBS,
    INT8_TOP1_VS_FP32,
    Check,
    EdgeReport,
    Target,
    file_sha256,
    write_report,
)
from avfuse.stream.infer.modelspec import read_spec

log = logging.getLogger("edge")
SCRIPTS = Path(__file__).resolve().parent
CHROOT = SCRIPTS / "edge-chroot.sh"
ARM_VENV = "/opt/avfuse"
ARM_MEDIA, ARM_MODELS, ARM_OUT = "/edge/media", "/edge/models", "/edge/out"


@dataclass(frozen=True, kw_only=True)
class Records:
    """One run's records, keyed by (source relative to the media folder, position among its records)."""

    by_key: dict[tuple[str, int], dict]
    wall_s: float


@dataclass(frozen=True, kw_only=True)
class Agreement:
    records: int
    same_label: int
    max_dprobs: float


def _probs(record: dict) -> dict[str, float]:
    if record.get("type") == "segment":
        return {label: p for label, p in record["top"]}
    return {record["label"]: record["score"]} if "score" in record else {}


def read_records(out: Path, media_root: str, wall_s: float) -> Records:
    by_key: dict[tuple[str, int], dict] = {}
    for path in sorted(out.rglob("*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for i, record in enumerate(lines):
            source = str(record.get("source", path.name)).removeprefix(media_root).lstrip("/")
            by_key[(source, i)] = record
    return Records(by_key=by_key, wall_s=wall_s)


def agreement(a: Records, b: Records) -> Agreement:
    """How b's records agree with a's, record by record; a record only one side has counts as disagreeing."""
    same, worst = 0, 0.0
    for key in a.by_key.keys() | b.by_key.keys():
        ra, rb = a.by_key.get(key), b.by_key.get(key)
        if ra is None or rb is None or ra.get("type") != rb.get("type"):
            worst = max(worst, 1.0)
            continue
        same += ra.get("label") == rb.get("label")
        pa, pb = _probs(ra), _probs(rb)
        for label in pa.keys() | pb.keys():
            worst = max(worst, abs(pa.get(label, 0.0) - pb.get(label, 0.0)))
    return Agreement(records=len(a.by_key.keys() | b.by_key.keys()), same_label=same, max_dprobs=worst)


def top1_agreement(fp32: Records, int8: Records) -> float | None:
    segments = [k for k, r in fp32.by_key.items() if r.get("type") == "segment"]
    if not segments:
        return None
    same = sum(int8.by_key.get(k, {}).get("label") == fp32.by_key[k]["label"] for k in segments)
    return same / len(segments)


def _run(cmd: list[str], log_path: Path) -> float:
    """Run ``cmd`` with its output in ``log_path``; its wall time in seconds, or SystemExit naming the log."""
    start = time.perf_counter()
    with open(log_path, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"make edge: {' '.join(cmd[:6])} ... failed (exit {r.returncode}); {log_path}:\n{tail}")
    return wall


def _avfuse_args(model: str, media: str, out: str, top_k: int) -> list[str]:
    # every label's probability (top-k = all labels), no optimised-model cache: the file itself runs
    return ["run", model, media, "-o", out, "--sink", "jsonl", "--top-k", str(top_k), "--no-cache"]


def run_host(model: Path, media: Path, out: Path, top_k: int) -> Records:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    avfuse = str(Path(sys.executable).with_name("avfuse"))
    wall = _run([avfuse, *_avfuse_args(str(model), str(media), str(out), top_k)], out.with_suffix(".log"))
    return read_records(out, str(media), wall)


def run_arm(rootfs: Path, cpu: str, model: Path, out_rel: str, top_k: int) -> Records:
    out = rootfs / out_rel.lstrip("/")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [str(CHROOT), str(rootfs), cpu, f"{ARM_VENV}/bin/avfuse",
           *_avfuse_args(f"{ARM_MODELS}/{model.name}", ARM_MEDIA, out_rel, top_k)]
    wall = _run(cmd, out.with_suffix(".log"))
    return read_records(out, ARM_MEDIA, wall)


def probe(rootfs: Path, cpu: str, emulator: str) -> Target:
    shutil.copy(SCRIPTS / "edge_probe.py", rootfs / "edge" / "edge_probe.py")
    r = subprocess.run([str(CHROOT), str(rootfs), cpu, f"{ARM_VENV}/bin/python", "/edge/edge_probe.py"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"make edge: the ARM64 side cannot import onnxruntime on {cpu}:\n{r.stderr[-2000:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    if info["torch"]:
        raise SystemExit("make edge: torch is installed on the ARM64 side; the base install must not pull it in")
    if info["arch"] != "aarch64":
        raise SystemExit(f"make edge: the userland reports {info['arch']}, not aarch64")
    return Target(arch=info["arch"], cpu=cpu, features=tuple(info["features"]), emulator=emulator,
                  python=info["python"], glibc=info["glibc"], onnxruntime=info["onnxruntime"])


def _fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def print_table(rows: list[tuple[str, Check]], install_bytes: int) -> None:
    head = ["file", "ARM64 CPU (features)", "records", "labels = host", "max |dprobs|", "top-1 = fp32",
            "install", "wall (emulated*)"]
    cells = [[kind, f"{c.target.cpu} ({', '.join(c.target.features) or 'no dot product'})", str(c.records),
              f"{100 * c.label_agreement:.1f}%", f"{c.max_dprobs:.1e}",
              "-" if c.top1_vs_fp32 is None else f"{100 * c.top1_vs_fp32:.1f}%",
              f"{install_bytes / 1e6:.0f} MB", f"{c.wall_s:.0f} s"] for kind, c in rows]
    widths = [max(len(r[i]) for r in [head, *cells]) for i in range(len(head))]
    print(_fmt_row(head, widths))
    for row in cells:
        print(_fmt_row(row, widths))
    print("* under qemu-user emulation: a check that it runs, not a speed figure")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rootfs", type=Path, required=True)
    parser.add_argument("--emulator", required=True, help="e.g. 'qemu-aarch64 7.2.22'")
    parser.add_argument("--install-bytes", type=int, required=True)
    parser.add_argument("--cpus", required=True, help="qemu CPU models, space-separated")
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--int8", type=Path)
    parser.add_argument("--host-out", type=Path, required=True, help="where the host's records go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    models = {"fp32": args.fp32, **({"int8": args.int8} if args.int8 else {})}
    top_k = len(read_spec(args.fp32).labels)
    host_cpu = cpu_info()
    host_name = f"{host_cpu.describe()}, onnxruntime {ort.__version__}"
    media = args.rootfs / ARM_MEDIA.lstrip("/")
    host: dict[str, Records] = {}
    for kind, model in models.items():
        log.info("host %s: %s", kind, model)
        host[kind] = run_host(model, media, args.host_out / kind, top_k)

    rows: list[tuple[str, Check]] = []
    for cpu in args.cpus.split():
        target = probe(args.rootfs, cpu, args.emulator)
        arm: dict[str, Records] = {}
        for kind, model in models.items():
            log.info("ARM64 %s %s (emulated): %s", cpu, kind, model.name)
            arm[kind] = run_arm(args.rootfs, cpu, model, f"{ARM_OUT}/{cpu}/{kind}", top_k)
            agree = agreement(host[kind], arm[kind])
            rows.append((kind, Check(
                target=target, records=agree.records,
                label_agreement=agree.same_label / agree.records if agree.records else 0.0,
                max_dprobs=agree.max_dprobs,
                top1_vs_fp32=top1_agreement(arm["fp32"], arm[kind]) if kind == "int8" else None,
                wall_s=round(arm[kind].wall_s, 1), install_bytes=args.install_bytes)))

    print()
    print(f"make edge: {' and '.join(str(m) for m in models.values())} on ARM64 ({target.python}, glibc "
          f"{target.glibc}, onnxruntime {target.onnxruntime}; {args.emulator}) against this machine: {host_name}")
    print_table(rows, args.install_bytes)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    failures = []
    for kind, model in models.items():
        checks = tuple(c for k, c in rows if k == kind)
        report = EdgeReport(model=model.name, sha256=file_sha256(model), precision=kind, host=host_name,
                            avfuse=__version__, created=created, checks=checks)
        print(f"report: {write_report(model, report)}")
        failures += [f for c in checks for f in c.failures(kind)]
    if failures:
        print("make edge: goals not met:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"goals met: fp32 labels as on the host and max |dprobs| <= {FP32_MAX_DPROBS:g}; "
          f"int8 top-1 as fp32 on >= {100 * INT8_TOP1_VS_FP32:g}% of segments, on every ARM64 CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
