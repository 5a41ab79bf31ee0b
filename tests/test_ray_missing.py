"""``avfuse run --engine ray`` where Ray is not installed: one line naming the extra, exit status 2."""

from __future__ import annotations

import subprocess
import sys

from onnx_models import colour_model, colour_video

BLOCK_RAY = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'ray':
            raise ModuleNotFoundError('No module named ' + repr(name), name=name)
        return None
sys.meta_path.insert(0, _Block())
from stream.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_engine_ray_without_ray_names_the_extra(tmp_path):
    model = colour_model(tmp_path / "colour.onnx")
    clip = colour_video(tmp_path / "clip.mp4", ["red"])
    r = subprocess.run([sys.executable, "-c", BLOCK_RAY, "run", str(model), str(clip), "-o", str(tmp_path / "out"),
                        "--engine", "ray"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "pip install 'avfuse[ray]'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists()  # nothing was started


def test_unknown_engine_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "stream.cli", "run", "m.onnx", "x.mp4", "--engine", "spark"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--engine" in r.stderr
