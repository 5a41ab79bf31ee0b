"""``avfuse run --engine ray`` refusing what it cannot do, in one line and at once: Ray not installed
(naming the extra, exit status 2), an address nobody answers at, an address that is not one."""

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
from avfuse.stream.cli.main import main
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


def test_unknown_engine_and_ray_options_without_it_are_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "avfuse", "run", "m.onnx", "x.mp4", "--engine", "spark"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--engine" in r.stderr
    r = subprocess.run([sys.executable, "-m", "avfuse", "run", "m.onnx", "x.mp4", "--workers", "4"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--engine ray" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_an_address_nobody_answers_at_is_one_line_at_once(tmp_path):
    import socket

    model = colour_model(tmp_path / "colour.onnx")
    clip = colour_video(tmp_path / "clip.mp4", ["red"])
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, why in ((f"127.0.0.1:{port}", "no Ray head answers there"), ("ray://head:10001", "auto or HOST:PORT")):
        r = subprocess.run([sys.executable, "-m", "avfuse", "run", str(model), str(clip), "--engine", "ray",
                            "--address", address], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and why in r.stderr and address in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
