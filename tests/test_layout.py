"""The house rules, read from the source: which room may import which, and one top-level package."""

from __future__ import annotations

import ast
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("media", "infer", "run", "cli")  # each may import only the rooms before it
HEAVY = {"torch", "torchvision", "torchaudio", "onnx", "onnxscript"}


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = "avfuse." + ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{a.name}" if a.name != "*" else base) for a in node.names]
    return found


def strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def room_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[:2] == ["avfuse", "stream"] and len(parts) > 2 and parts[2] in ROOMS:
        return parts[2]
    return None


def test_stream_never_imports_torch_onnx_models_or_export():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in modules("stream") for line, name in imports(p)
           if name.split(".")[0] in HEAVY or name.split(".")[:2] in (["avfuse", "models"], ["avfuse", "export"])]
    assert not bad, "\n".join(bad)


def test_only_the_cli_names_models_or_export_and_only_by_string():
    bad = [f"{p.relative_to(ROOT)}:{line} names {text}" for p in modules("stream") for line, text in strings(p)
           if text.startswith(("avfuse.models.", "avfuse.export.")) and p.parent.name != "cli"]
    assert not bad, "\n".join(bad)


def test_models_never_import_export():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in modules("models") for line, name in imports(p)
           if name.split(".")[:2] == ["avfuse", "export"]]
    assert not bad, "\n".join(bad)


def test_each_room_imports_only_the_rooms_before_it():
    bad = []
    for p in modules("stream"):
        here = room_of("avfuse." + ".".join(p.relative_to(ROOT).with_suffix("").parts))
        if here is None:
            continue
        for line, name in imports(p):
            there = room_of(name)
            if there is not None and ROOMS.index(there) > ROOMS.index(here):
                bad.append(f"{p.relative_to(ROOT)}:{line} ({here}) imports {name} ({there})")
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_bare_folders():
    """Everything goes through ``avfuse``: a bare ``stream``, ``models`` or ``export`` would load a second copy."""
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for folder in ("stream", "models", "export", "tests", "scripts", "avfuse") for p in modules(folder)
           for line, name in imports(p) if name.split(".")[0] in ("stream", "models", "export")]
    assert not bad, "\n".join(bad)


def test_the_runtime_does_not_depend_on_the_tests_folder():
    bad = [f"{p.relative_to(ROOT)}:{line}" for p in modules("stream") for line, text in strings(p)
           if "tests/" in text or text.startswith("tests.")]
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_the_wheel_has_one_top_level_package(tmp_path):
    import shutil
    import subprocess
    tree = tmp_path / "tree"  # a copy: setuptools leaves build/ in the tree it builds
    shutil.copytree(ROOT, tree, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".edge-cache", "build", "demo-out", "*.egg-info", "__pycache__", ".*_cache"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(tmp_path), str(tree)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("avfuse-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"avfuse"}
    for part in ("stream/media/decode.py", "stream/infer/engine.py", "stream/run/pipeline.py",
                 "stream/cli/main.py", "models/train.py", "export/onnx.py", "stream/run/report/template.html"):
        assert f"avfuse/{part}" in names
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "avfuse = avfuse.stream.cli.main:entry" in zipfile.ZipFile(wheel).read(meta).decode()
    # the wheel installs and runs outside the source tree: python -m avfuse, the version from one place
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import os
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-m", "avfuse", "--version"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    import avfuse
    assert r.returncode == 0, r.stderr
    assert avfuse.__version__ in r.stdout
    assert f"version = {avfuse.__version__}" not in (ROOT / "pyproject.toml").read_text()
