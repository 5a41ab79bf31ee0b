"""The edge install has no torch: every runtime module must import and work without it."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import avfuse.stream

BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'torchvision', 'torchaudio'}:
            raise ImportError('blocked for this test: ' + name)
        return None
sys.meta_path.insert(0, _Block())
"""


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True,
                          timeout=120)


def test_every_stream_module_imports_without_torch():
    names = [m.name for m in pkgutil.walk_packages(avfuse.stream.__path__, "avfuse.stream.")]
    assert "avfuse.stream.cli.main" in names
    code = "import importlib\n" + "".join(f"importlib.import_module({n!r})\n" for n in names)
    code += "print('torch' in sys.modules)"
    r = run_without_torch(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_blocker_really_blocks_torch():
    r = run_without_torch("import torch")
    assert r.returncode != 0 and "blocked for this test" in r.stderr


def test_avfuse_run_labels_a_video_without_torch(tmp_path):
    from onnx_models import colour_model, colour_video

    model = colour_model(tmp_path / "colour.onnx")
    clip = colour_video(tmp_path / "clip.mp4", ["blue", "red"])
    code = ("import sys\nfrom avfuse.stream.cli.main import main\n"
            f"rc = main(['run', {str(model)!r}, {str(clip)!r}, '-o', {str(tmp_path / 'out')!r}, '--no-cache'])\n"
            "print('torch' in sys.modules, rc)")
    r = run_without_torch(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["False", "0"]
    records = [json.loads(x) for x in (tmp_path / "out" / "clip.mp4.jsonl").read_text().splitlines()]
    assert [x["label"] for x in records if x["type"] == "segment"][:2] == ["blue", "red"]
