"""``avfuse report RUN`` on a real (tiny, short) training run, opened in headless Chromium: one point per epoch on
each learning curve, the confusion matrix and per-class table of metrics.json, the mean gate per class."""

from __future__ import annotations

import json

import pytest
from browser import browser, needs_chromium  # noqa: F401

from avfuse.stream.cli.main import main

pytestmark = [needs_chromium, pytest.mark.slow, pytest.mark.timeout(300)]
FAST = ["--epochs", "3", "--threads", "1", "--fps", "1", "--size", "32x32", "--batch-size", "8", "--backbone", "tiny",
        "--schedule", "staged", "--cross-fit-folds", "0"]


@pytest.fixture(scope="module")
def run(synth, tmp_path_factory):
    run = tmp_path_factory.mktemp("train-report") / "run"
    assert main(["train", "--manifest", str(synth.manifest), "--test-manifest", str(synth.test_manifest),
                 "-o", str(run), *FAST]) == 0
    return run


def test_training_report_shows_curves_confusion_and_gates(run, browser, tmp_path):  # noqa: F811
    metrics = json.loads((run / "metrics.json").read_text())
    assert main(["report", str(run)]) == 0  # default: RUN/report.html
    browser.get((run / "report.html").as_uri())
    epochs = len(metrics["history"])
    assert f"{epochs} epoch(s), last epoch {epochs} kept" in browser.find_element("id", "summary").text
    for key in ("loss", "train_accuracy", "val_accuracy", "val_macro_f1"):
        points = browser.find_elements("css selector", f"#summary ~ .charts circle.point[data-key={key}]")
        assert len(points) == epochs + (len(metrics["unimodal_stage"]) if key == "loss" else 0)
    for split in ("val", "test"):
        m = metrics[split]
        sec = browser.find_element("id", split)
        assert f"accuracy {m['accuracy']:.3f}" in sec.find_element("css selector", "h2").text
        labels = m["confusion"]["labels"]
        cells = [int(td.text) for td in sec.find_elements("css selector", "table.confusion td.cell")]
        assert cells == [v for row in m["confusion"]["matrix"] for v in row] and len(cells) == len(labels) ** 2
        rows = {r.find_element("css selector", "th").text: [td.text for td in r.find_elements("css selector", "td")]
                for r in sec.find_elements("css selector", "table.per-class tr.class-row")}
        assert rows == {label: [f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"])]
                        for label, r in m["per_class"].items()}
        gates = {r.find_element("css selector", "th").text: [float(td.text) for td in r.find_elements(
            "css selector", "td.gate")] for r in sec.find_elements("css selector", "table.gates tbody tr")}
        assert gates == {label: [round(g[x], 3) for x in ("video", "audio", "text")]
                         for label, g in m["gates_per_class"].items()}
    browser.set_window_size(1280, 1600)
    browser.save_screenshot(str(tmp_path / "training-report.png"))
