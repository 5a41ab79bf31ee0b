"""The default training recipe lives in one torch-free place (avfuse.models.recipe): ``avfuse train`` with no
tuning flags trains exactly it, and its parser (which shows those defaults) builds without torch."""

from __future__ import annotations

import argparse
import subprocess
import sys

from avfuse.models import train_cmd
from avfuse.models.recipe import TRAIN_FPS, TRAIN_SIZE, TRAIN_WINDOW_S, TrainConfig


def test_avfuse_train_without_tuning_flags_trains_the_default_recipe(tmp_path):
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    args = parser.parse_args(["--manifest", str(tmp_path / "m.csv"), "-o", str(tmp_path / "run")])
    assert train_cmd.train_config(args) == TrainConfig()
    assert (args.fps, tuple(args.size), args.window) == (TRAIN_FPS, TRAIN_SIZE, TRAIN_WINDOW_S)


def test_a_flag_changes_only_its_own_field(tmp_path):
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    args = parser.parse_args(["--manifest", "m.csv", "-o", "run", "--epochs", "3", "--no-class-weights"])
    got, want = train_cmd.train_config(args), TrainConfig()
    assert (got.epochs, got.class_weights) == (3, False)
    assert {k: v for k, v in vars(got).items() if k not in ("epochs", "class_weights")} == \
        {k: v for k, v in vars(want).items() if k not in ("epochs", "class_weights")}


def test_the_recipe_and_the_train_help_need_no_torch():
    code = ("import sys\nclass B:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, B())\n"
            "from avfuse.stream.cli.main import main\nrc = main(['train', '--help'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"default {TrainConfig.stage_epochs}" in r.stdout and "--schedule" in r.stdout
