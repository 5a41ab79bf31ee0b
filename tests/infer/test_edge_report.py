"""make edge's report beside a model (MODEL.edge.json): judged by the issue's goals, read back exactly, and
shown by ``avfuse inspect`` with each target's figures, marked when the file changed since."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avfuse.stream.cli.main import main
from avfuse.stream.infer.edge_report import (
    Check,
    EdgeReport,
    Target,
    file_sha256,
    read_report,
    report_path,
    write_report,
)
from tests.onnx_models import colour_model

A72 = Target(arch="aarch64", cpu="cortex-a72", features=(), emulator="qemu-aarch64 7.2.22", python="3.11.2",
             glibc="2.36", onnxruntime="1.32.0")


def _check(**kw) -> Check:
    base = dict(target=A72, records=120, label_agreement=1.0, max_dprobs=2e-7, top1_vs_fp32=None, wall_s=40.0,
                install_bytes=250_000_000)
    return Check(**{**base, **kw})


def _report(model: Path, precision: str = "fp32", *checks: Check) -> EdgeReport:
    return EdgeReport(model=model.name, sha256=file_sha256(model), precision=precision, host="x86_64 test CPU",
                      avfuse="0.1.0", created="2025-01-02T03:04:05Z", checks=checks or (_check(),))


def test_report_sits_beside_the_model():
    assert report_path(Path("d/model.onnx")) == Path("d/model.edge.json")
    assert report_path(Path("d/model.int8.onnx")) == Path("d/model.int8.edge.json")


def test_goals():
    assert _check().failures("fp32") == []
    assert "max |dprobs| 2.00e-04" in _check(max_dprobs=2e-4).failures("fp32")[0]
    assert "labels as on the host for 99.2%" in _check(label_agreement=119 / 120).failures("fp32")[0]
    # int8 is judged by its top-1 against fp32 on the same target, not by its distance from the host
    assert _check(max_dprobs=5e-3, label_agreement=0.99, top1_vs_fp32=0.99).failures("int8") == []
    assert "98.0% of segments" in _check(top1_vs_fp32=0.98).failures("int8")[0]
    assert _check(records=0).failures("fp32") == ["fp32 on aarch64 cortex-a72 (no dot product; emulated by "
                                                  "qemu-aarch64 7.2.22): no records"]
    with pytest.raises(ValueError, match=r"label_agreement=1.5"):
        _check(label_agreement=1.5)


def test_round_trip_and_inspect(tmp_path, capsys):
    model = colour_model(tmp_path / "model.onnx")
    dot = Target(**{**A72.__dict__, "cpu": "max", "features": ("asimddp", "i8mm")})
    report = _report(model, "fp32", _check(), _check(target=dot, max_dprobs=3e-7))
    write_report(model, report)
    assert read_report(model) == report
    assert json.loads(report_path(model).read_text())["passed"] is True

    assert main(["inspect", str(model)]) == 0
    out = capsys.readouterr().out
    assert "edge       passed on 2 target(s), against x86_64 test CPU (2025-01-02)" in out
    assert "aarch64 cortex-a72 (no dot product; emulated by qemu-aarch64 7.2.22): 120 records" in out
    assert "aarch64 max (asimddp, i8mm; emulated by qemu-aarch64 7.2.22)" in out and "3.0e-07" in out

    write_report(model, EdgeReport(**{**report.__dict__, "sha256": "0" * 64}))  # made for another file
    assert main(["inspect", str(model)]) == 0
    assert "the file changed since: run make edge again" in capsys.readouterr().out


def test_inspect_without_a_report_or_with_a_broken_one(tmp_path, capsys):
    model = colour_model(tmp_path / "model.onnx")
    assert main(["inspect", str(model)]) == 0
    assert "edge " not in capsys.readouterr().out
    report_path(model).write_text('{"version": 1, "model": "model.onnx"}')
    assert main(["inspect", str(model)]) == 0
    assert "unreadable edge report: model.edge.json: malformed edge report (KeyError" in capsys.readouterr().out
