"""``avfuse report OUT`` on the outputs of a real run (the colour model on PyAV-made videos), opened in headless
Chromium: one drawn segment per record, the label under the pointer is that record's, names stay text."""

from __future__ import annotations

import bisect
import json
import time
from pathlib import Path

import pytest
from browser import browser, needs_chromium, wait_until  # noqa: F401
from onnx_models import colour_model, colour_video
from selenium.webdriver.common.action_chains import ActionChains

from avfuse.stream.cli.main import main

pytestmark = [needs_chromium, pytest.mark.timeout(180)]
HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'  # a file name is user data


THE_TIP = """const t = document.getElementById('tip'), img = document.getElementById('tip-img');
let rgb = null;
if (!img.hidden && img.complete && img.naturalWidth) {  // the thumbnail's middle pixel, as drawn
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  rgb = Array.from(g.getImageData(c.width >> 1, c.height >> 1, 1, 1).data.slice(0, 3));
}
return {hidden: t.hidden, label: document.getElementById('tip-label').textContent, index: t.dataset.index, rgb};"""
CHANNEL = {"red": 0, "green": 1, "blue": 2}


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    d = tmp_path_factory.mktemp("report-run")
    clips = d / "clips"
    clips.mkdir()
    colour_video(clips / "a.mp4", ["red", "red", "green", "blue", "blue", "red"])
    colour_video(clips / f"{HOSTILE}.mp4", ["blue", "green"], audio=False)
    model = colour_model(d / "colour.onnx", hop_s=0.5)  # overlapping windows: each is drawn up to the next
    out = d / "out"
    assert main(["run", str(model), str(clips), "-o", str(out), "--no-cache", "--thumbnails"]) == 0
    return out


def open_report(browser, out: Path, html: Path) -> None:  # noqa: F811
    assert main(["report", str(out), "-o", str(html)]) == 0
    browser.get(html.as_uri())
    wait_until(lambda: browser.execute_script("return document.body.dataset.ready"), what="report drawn")


def point_at(browser, section: str, t: float, span: float) -> dict:  # noqa: F811
    """Move the pointer over media time ``t`` of the source's timeline; the tooltip as the user sees it."""
    svg = browser.find_element("css selector", f"{section} svg.timeline")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", svg)
    box = browser.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width,"
                                 " r.height]", svg)
    x, y = box[0] + box[2] * t / span, box[1] + 28  # the labels row
    actions = ActionChains(browser)
    actions.w3c_actions.pointer_action.move_to_location(round(x), round(y))
    actions.perform()
    return browser.execute_script(THE_TIP)


def test_report_draws_each_segment_and_the_pointer_reads_its_record(run_out, browser, tmp_path):  # noqa: F811
    html = tmp_path / "report.html"
    open_report(browser, run_out, html)
    by_name = {}
    for path in sorted(run_out.glob("*.jsonl")):
        recs = records(path)
        by_name[recs[0]["source"]] = [r for r in recs if r["type"] == "segment"]
    sections = browser.find_elements("css selector", "section.source")
    assert [s.find_element("css selector", "h2").text for s in sections] == sorted(by_name, key=lambda n: (
        Path(n).name.removesuffix(".mp4") + ".mp4"))
    for n, sec in enumerate(sections):
        segs = by_name[sec.find_element("css selector", "h2").text]
        assert len(sec.find_elements("css selector", "rect.seg")) == len(segs)
        span = max(r["end"] for r in segs)
        for k in range(len(segs)):  # the middle of what is drawn of segment k: up to where k + 1 starts
            stop = segs[k + 1]["start"] if k + 1 < len(segs) else segs[k]["end"]
            tip = point_at(browser, f"#src-{n}", (segs[k]["start"] + stop) / 2, span)
            assert not tip["hidden"]
            assert (tip["label"], tip["index"]) == (segs[k]["label"], str(segs[k]["index"]))
            # --thumbnails: the segment's own middle frame is shown with it; a window inside one colour's second
            # shows that colour (one that straddles two is labelled by their mean, its middle frame is one of them)
            assert tip["rgb"] is not None
            if float(segs[k]["start"]).is_integer():
                assert max(range(3), key=tip["rgb"].__getitem__) == CHANNEL[tip["label"]]
    a = by_name[next(n for n in by_name if n.endswith("a.mp4"))]
    assert [r["label"] for r in a][::2] == ["red", "red", "green", "blue", "blue", "red"]  # what the test relies on
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_report_index_counts_labels_and_keeps_names_as_text(run_out, browser, tmp_path):  # noqa: F811
    open_report(browser, run_out, tmp_path / "report.html")
    assert browser.title.startswith("avfuse report")  # the hostile name's onerror never ran
    assert not browser.find_elements("css selector", "img[src=x]")
    rows = browser.find_elements("css selector", "#index tbody tr")
    head = [th.text for th in browser.find_elements("css selector", "#index thead th")]
    table = {r.find_element("css selector", "a").text: dict(zip(head, (td.text for td in r.find_elements(
        "css selector", "td")), strict=True)) for r in rows}
    for path in run_out.glob("*.jsonl"):
        segs = [r for r in records(path) if r["type"] == "segment"]
        row = table[segs[0]["source"]]
        assert row["segments"] == str(len(segs))
        for label in ("red", "green", "blue"):
            assert row.get(label, "0") == str(sum(r["label"] == label for r in segs))
    link = next(r for r in rows if HOSTILE in r.text).find_element("css selector", "a")
    link.click()
    target = browser.find_element("id", link.get_attribute("href").split("#", 1)[1])
    assert HOSTILE in target.find_element("css selector", "h2").text
    # no captions anywhere, and one video without audio: each missing modality is one red band, all along
    rows = {"84": "video", "91": "audio", "98": "text"}
    plain = next(x for x in browser.find_elements("css selector", "section.source")
                 if x.find_element("css selector", "h2").text.endswith("/a.mp4"))
    for sec, missing in ((target, {"audio", "text"}), (plain, {"text"})):
        absent = sec.find_elements("css selector", "rect.absent")
        assert {rows[r.get_attribute("y")] for r in absent} == missing and len(absent) == len(missing)
        full = sec.find_element("css selector", "svg.timeline").size["width"]
        assert all(r.size["width"] > 0.95 * full for r in absent)


def test_thumbnails_need_an_output_folder(run_out, capsys):
    model = run_out.parent / "colour.onnx"
    assert main(["run", str(model), str(run_out.parent / "clips" / "a.mp4"), "--thumbnails", "--no-cache"]) == 1
    assert "--thumbnails needs -o OUT" in capsys.readouterr().err
    assert len(list((run_out / "thumbs").glob("*/*.jpg"))) == sum(
        r["type"] == "segment" for p in run_out.glob("*.jsonl") for r in records(p))


@pytest.mark.slow
def test_report_of_10000_segments_opens_fast(tmp_path, browser):  # noqa: F811
    model = colour_model(tmp_path / "colour.onnx", fps=2, window_s=1.0, hop_s=0.1)
    colour_video(tmp_path / "long.mp4", ["red", "green", "blue"] * 334, fps=2, audio=False)
    out = tmp_path / "out"
    assert main(["run", str(model), str(tmp_path / "long.mp4"), "-o", str(out), "--no-cache", "--batch", "64"]) == 0
    segs = [r for r in records(out / "long.mp4.jsonl") if r["type"] == "segment"]
    assert len(segs) >= 10_000
    html = tmp_path / "report.html"
    assert main(["report", str(out), "-o", str(html)]) == 0
    t0 = time.perf_counter()
    browser.get(html.as_uri())
    wait_until(lambda: browser.execute_script("return document.body.dataset.ready"), what="report drawn")
    opened = time.perf_counter() - t0
    assert browser.find_element("css selector", "svg.timeline").get_attribute("data-segments") == str(len(segs))
    assert opened < 5.0, f"{len(segs)} segments took {opened:.1f} s to open"
    # a segment is under a pixel here: the pointer at whole pixels, the record at that pixel's media time
    span = max(r["end"] for r in segs)
    width = browser.find_element("css selector", "svg.timeline").size["width"]
    starts = [r["start"] for r in segs]
    for px in (width // 3, width // 2, width - 3):
        tip = point_at(browser, "#src-0", span * px / width, span)
        k = bisect.bisect_right(starts, span * px / width) - 1
        assert (tip["label"], tip["index"]) == (segs[k]["label"], str(segs[k]["index"]))
    browser.save_screenshot(str(tmp_path / "report-10000.png"))
