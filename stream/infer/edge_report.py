"""The edge report: where ``make edge`` ran a model file besides this machine and how it agreed.

``make edge`` runs ``avfuse run`` with a model on generated media on this machine and on ARM64 (an emulated
Debian userland with the base install), compares every record, and writes ``MODEL.edge.json`` beside
``MODEL.onnx``. ``avfuse inspect`` shows it, so this module needs only the standard library.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from avfuse.stream.infer.modelspec import file_sha256

REPORT_VERSION = 1
SUFFIX = ".edge.json"
# The goals a report is judged by (issue 18): fp32 on ARM64 as on the host; int8 as fp32 on ARM64.
FP32_MAX_DPROBS = 1e-4
FP32_LABEL_AGREEMENT = 1.0
INT8_TOP1_VS_FP32 = 0.99


def report_path(model: Path) -> Path:
    """``model.onnx`` -> ``model.edge.json``; ``model.int8.onnx`` -> ``model.int8.edge.json``."""
    return model.with_name(model.name.removesuffix(".onnx") + SUFFIX)


@dataclass(frozen=True, kw_only=True)
class Target:
    """One machine a file ran on: ``cpu`` as the emulator names it (``cortex-a72``) or the board's."""

    arch: str
    cpu: str
    features: tuple[str, ...]  # the integer features onnxruntime picks kernels by (asimddp, i8mm, sve)
    emulator: str  # e.g. "qemu-aarch64 7.2.22"; "" on real hardware
    python: str
    glibc: str
    onnxruntime: str

    def describe(self) -> str:
        features = ", ".join(self.features) or "no dot product"
        how = f"emulated by {self.emulator}" if self.emulator else "hardware"
        return f"{self.arch} {self.cpu} ({features}; {how})"


@dataclass(frozen=True, kw_only=True)
class Check:
    """One file on one target, against the same run on the host."""

    target: Target
    records: int
    label_agreement: float  # share of records whose label is the host's
    max_dprobs: float  # over every probability of every record
    top1_vs_fp32: float | None  # int8 files: share of segments with the fp32 file's top-1 on this target
    wall_s: float  # the whole run; under emulation not a speed figure
    install_bytes: int  # what the base install adds on the target

    def __post_init__(self) -> None:
        if self.records < 0 or not 0.0 <= self.label_agreement <= 1.0 or self.max_dprobs < 0:
            raise ValueError(f"edge check out of range: records={self.records} "
                             f"label_agreement={self.label_agreement} max_dprobs={self.max_dprobs}")

    def failures(self, precision: str) -> list[str]:
        """What misses the goals, in words (empty: the check passed)."""
        where = self.target.describe()
        if self.records == 0:
            return [f"{precision} on {where}: no records"]
        if precision == "int8":
            if self.top1_vs_fp32 is None or self.top1_vs_fp32 < INT8_TOP1_VS_FP32:
                return [f"int8 on {where}: same top-1 as fp32 on {_pct(self.top1_vs_fp32)} of segments "
                        f"(goal >= {_pct(INT8_TOP1_VS_FP32)})"]
            return []
        bad = []
        if self.label_agreement < FP32_LABEL_AGREEMENT:
            bad.append(f"{precision} on {where}: labels as on the host for {_pct(self.label_agreement)} of records")
        if self.max_dprobs > FP32_MAX_DPROBS:
            bad.append(f"{precision} on {where}: max |dprobs| {self.max_dprobs:.2e} > {FP32_MAX_DPROBS:g}")
        return bad


@dataclass(frozen=True, kw_only=True)
class EdgeReport:
    model: str  # the file's name
    sha256: str
    precision: str  # fp32 or int8
    host: str  # the machine the records were compared with, e.g. "x86_64 AMD EPYC (avx2, no VNNI)"
    avfuse: str
    created: str  # ISO 8601, UTC
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not any(c.failures(self.precision) for c in self.checks)

    def to_json(self) -> str:
        data = {"version": REPORT_VERSION, **asdict(self), "passed": self.passed}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EdgeReport:
        """Parse a report, raising ``ValueError`` naming what is missing or of the wrong type."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != REPORT_VERSION:
            raise ValueError(f"not a version {REPORT_VERSION} edge report")
        try:
            checks = tuple(Check(**{**c, "target": Target(**{**c["target"],
                                                             "features": tuple(c["target"]["features"])})})
                           for c in data["checks"])
            return cls(**{k: data[k] for k in ("model", "sha256", "precision", "host", "avfuse", "created")},
                       checks=checks)
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed edge report ({type(e).__name__}: {e})") from e


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{100 * share:.1f}%"


def read_report(model: Path) -> EdgeReport | None:
    """The report beside ``model``, or None where there is none."""
    path = report_path(model)
    if not path.exists():
        return None
    return EdgeReport.from_json(path.read_text())


def write_report(model: Path, report: EdgeReport) -> Path:
    path = report_path(model)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(report.to_json())
    tmp.replace(path)
    return path


def describe(model: Path) -> dict | None:
    """What ``inspect --json`` shows: the report as data, whether it is about this very file, or the reason
    it cannot be read."""
    try:
        report = read_report(model)
    except (OSError, ValueError) as e:
        return {"error": f"{report_path(model).name}: {e}"}
    if report is None:
        return None
    return {**asdict(report), "passed": report.passed, "current": report.sha256 == file_sha256(model)}


def edge_lines(info: dict | None) -> list[str]:
    """The lines ``inspect`` prints for a report (``describe``'s data): one per target, with its figures."""
    if info is None:
        return []
    if "error" in info:
        return [f"unreadable edge report: {info['error']}"]
    verdict = "passed" if info["passed"] else "FAILED"
    head = f"{verdict} on {len(info['checks'])} target(s), against {info['host']} ({info['created'][:10]})"
    if not info["current"]:
        head += "; the file changed since: run make edge again"
    lines = [head]
    for check in info["checks"]:
        target = Target(**{**check["target"], "features": tuple(check["target"]["features"])})
        line = (f"{target.describe()}: {check['records']} records, labels as on the host "
                f"{_pct(check['label_agreement'])}, max |dprobs| {check['max_dprobs']:.1e}")
        if check["top1_vs_fp32"] is not None:
            line += f", top-1 as fp32 {_pct(check['top1_vs_fp32'])}"
        lines.append(line + f"; onnxruntime {target.onnxruntime}, glibc {target.glibc}")
    return lines
