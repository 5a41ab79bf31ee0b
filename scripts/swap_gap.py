"""How long a model swap holds a live stream's records back: ``avfuse run MODEL clip.mp4 --loop`` runs
while the model file is renamed over N times (A, B, A, ...); each record's arrival in OUT/STEM.jsonl is
timed by polling it. Prints the longest interval between two records around a swap against the median
interval away from swaps (the hop), as a ratio, and the same for latency from window close.

    python scripts/swap_gap.py [--swaps 6] [--every 2.0]

The models and the clip are made here (tests/onnx_models.py): the colour model loads in milliseconds, so
this measures the swap itself (the hand-over between batches), not the load of a big file, which runs on
the watcher's thread while the old model goes on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from onnx_models import colour_model, colour_video  # noqa: E402

from avfuse.stream.run.model_swap import model_version  # noqa: E402

POLL_S = 0.002
AROUND_S = 1.0  # records this close to a swap (by arrival) count as "during" it


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--swaps", type=int, default=6)
    p.add_argument("--every", type=float, default=4.0,
                   help=f"seconds between swaps (records within {AROUND_S:g} s of one count as during it)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        video = colour_video(d / "cam.mp4", ["red"] * 2)
        files = [colour_model(d / "a.onnx", fps=2, window_s=0.5).read_bytes(),
                 colour_model(d / "b.onnx", fps=2, window_s=0.5, labels=("rouge", "vert", "bleu")).read_bytes()]
        model = d / "model.onnx"
        model.write_bytes(files[0])
        out = d / "out"
        proc = subprocess.Popen([sys.executable, "-m", "avfuse", "run", str(model), str(video), "--loop", "-o",
                                 str(out), "--no-cache", "--watch-model", "0.1"], cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE, text=True)
        arrivals: list[tuple[float, dict]] = []
        swaps: list[float] = []
        try:
            deadline = time.monotonic() + 60
            while len(arrivals) < 4 and time.monotonic() < deadline and proc.poll() is None:  # started, settled
                _tail(out / "cam.mp4.jsonl", arrivals, until=time.monotonic() + 0.5, proc=proc)
            for n in range(args.swaps):
                tmp = d / "model.onnx.new"
                tmp.write_bytes(files[(n + 1) % 2])
                swaps.append(time.monotonic())
                os.replace(tmp, model)
                _tail(out / "cam.mp4.jsonl", arrivals, until=time.monotonic() + args.every, proc=proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        versions = {model_version(d / "a.onnx"), model_version(d / "b.onnx")}
    return _report(arrivals, swaps, versions, err)


def _tail(path: Path, arrivals: list, *, until: float, proc: subprocess.Popen) -> None:
    seen = len(arrivals)
    while time.monotonic() < until and proc.poll() is None:
        if path.exists():
            lines = [ln for ln in path.read_text().splitlines() if ln.endswith("}")]
            now = time.monotonic()
            for line in lines[seen:]:
                rec = json.loads(line)
                arrivals.append((now, rec, time.time()))
            seen = len(lines)
        time.sleep(POLL_S)


def _report(arrivals: list, swaps: list[float], versions: set[str], err: str) -> int:
    segs = [(t, r, wall) for t, r, wall in arrivals if r["type"] == "segment"]
    if len(segs) < 10:
        print(f"too few records ({len(segs)}); stderr:\n{err[-2000:]}", file=sys.stderr)
        return 1
    indices = [r["index"] for _, r, _ in segs]
    switches = sum(a[1]["model"] != b[1]["model"] for a, b in itertools.pairwise(segs))
    near = [any(abs(t - s) <= AROUND_S or (s <= t <= s + AROUND_S) for s in swaps) for t, _, _ in segs]
    gaps = [(b[0] - a[0], near[i + 1]) for i, (a, b) in enumerate(itertools.pairwise(segs))]
    normal = statistics.median(g for g, n in gaps if not n)
    during = max(g for g, n in gaps if n)
    lat = [(wall - r["wallclock"], near[i]) for i, (_, r, wall) in enumerate(segs)]
    lat_normal = statistics.median(v for v, n in lat if not n)
    lat_during = max(v for v, n in lat if n)
    print(f"swaps requested {len(swaps)}, model switches seen in records {switches}, "
          f"models {sorted({r['model'] for _, r, _ in segs})} (of {sorted(versions)})")
    print(f"segments {len(segs)}, index contiguous: {indices == list(range(indices[0], indices[0] + len(indices)))}")
    away, lat_away = max(g for g, n in gaps if not n), max(v for v, n in lat if not n)
    print(f"interval between records: normal (median) {normal * 1000:.0f} ms, longest around a swap "
          f"{during * 1000:.0f} ms: ratio {during / normal:.2f} (longest away from swaps {away * 1000:.0f} ms)")
    print(f"latency from window close: normal (median) {lat_normal * 1000:.0f} ms, longest around a swap "
          f"{lat_during * 1000:.0f} ms: ratio {lat_during / lat_normal:.2f} (longest away from swaps "
          f"{lat_away * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
