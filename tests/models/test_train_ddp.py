"""``avfuse train --nproc 2``: two gloo ranks on CPU learn what one process learns, only rank 0 writes, a
rank that dies ends the run with one error, and a bad ``--nproc`` is refused before any rank starts."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from avfuse.stream.cli.main import main

FAST = ["--fps", "1", "--size", "32x32", "--cross-fit-folds", "0"]  # default epochs and patience: learnt by epoch 12
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """16 + 16 generated videos in which every window has video, audio and a caption (any two decide the
    label), so that a model that trains right gets the held-out set right."""
    from avfuse.models.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("full"), videos=16, test_videos=16, seed=3, width=64, height=64,
                      caption_drop=0.0, no_audio=0.0)


def _held_out_accuracy(run: Path, manifest: Path) -> float:
    """The saved checkpoint scored on the held-out videos, decoded again."""
    from avfuse.models import data
    from avfuse.models.checkpoint import load_checkpoint
    from avfuse.models.evaluate import evaluate, to_tensors
    from avfuse.stream.media.config import DecodeConfig, SegmentConfig

    model, ckpt = load_checkpoint(run / "model.pt")
    test = data.load_manifest(manifest, decode=DecodeConfig(fps=1, width=32, height=32),
                              segment=SegmentConfig(window_s=2.0), labels=ckpt.config.labels)
    return evaluate(model, to_tensors(test, ckpt.tokenizer))["accuracy"]


@pytest.mark.slow
def test_two_ranks_learn_what_one_process_learns(full, tmp_path, capfd):
    one, two = tmp_path / "one", tmp_path / "two"
    train = ["train", "--manifest", str(full.manifest), "--test-manifest", str(full.test_manifest), *FAST]
    assert main([*train, "-o", str(one), "--threads", "1"]) == 0
    capfd.readouterr()
    assert main([*train, "-o", str(two), "--nproc", "2"]) == 0
    out = capfd.readouterr().out  # the ranks' stdout too
    accuracy = {run.name: _held_out_accuracy(run, full.test_manifest) for run in (one, two)}
    assert abs(accuracy["one"] - accuracy["two"]) <= 0.02, accuracy
    assert accuracy["two"] >= 0.9, accuracy  # both learnt the set, not both failed alike
    metrics = {run.name: json.loads((run / "metrics.json").read_text()) for run in (one, two)}
    assert metrics["two"]["test"]["accuracy"] == accuracy["two"]
    assert metrics["two"]["distributed"] == {"world_size": 2, "backend": "gloo", "batch_per_rank": 8}
    assert "distributed" not in metrics["one"]
    # rank 0 alone writes and prints: one checkpoint, one metrics.json, one summary
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert out.count("last epoch") == 1 and out.count(f"wrote {two / 'model.pt'}") == 1, out
    assert "trained on 2 ranks (gloo), 8 segments a rank per step" in out


@pytest.mark.parametrize("value, message", [("0", "--nproc must be >= 1, got 0"),
                                            ("two", "--nproc must be a whole number of processes >= 1, got 'two'")])
def test_bad_nproc_is_refused(value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--manifest", str(tmp_path / "m.csv"), "-o", str(tmp_path / "run"), "--nproc", value])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_more_ranks_than_training_segments_is_one_error(synth, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(synth.manifest), "-o", str(run), "--nproc", "500", *FAST]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--nproc 500 is more than the" in err[0] and "training segments" in err[0], err
    assert not run.exists()  # refused before any rank started


def test_the_ranks_get_the_same_arguments():
    from avfuse.models.launch import argv_of
    from avfuse.models.train_cmd import RANK_FORMATS, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    line = ["--data", "videos", "-o", "run", "--modalities", "audio,text", "--size", "48x32", "--no-class-weights",
            "--ablate", "--lr", "0.003", "--val-split", "0.3", "--nproc", "2", "--cache-dir", "c"]
    args = parser.parse_args(line)
    assert vars(parser.parse_args(argv_of(parser, args, RANK_FORMATS))) == vars(args)
    assert "--nproc" not in argv_of(parser, args, RANK_FORMATS, skip={"nproc"})


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the process below ``parent`` that torchrun started as ``rank``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_run_with_one_error(synth, tmp_path):
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "avfuse", "train", "--manifest", str(synth.manifest),
                                 "-o", str(run), "--nproc", "2", *FAST, "--epochs", "200", "--patience", "200"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while b"epoch 1/200" not in log.read_bytes():  # rank 0 is training
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        pid = _rank_pid(proc.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 1, text
    assert text.strip().splitlines()[-1].startswith("avfuse train: error: rank 1 of 2 was killed by SIGKILL"), text
    assert not (run / "model.pt").exists()
