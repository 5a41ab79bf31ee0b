"""The base install resolves to ARM64 wheels on PyPI (glibc >= 2.28), for each CPython it supports, so a
dependency without an aarch64 wheel fails here before it fails on a user's board. Resolved from PyPI's
metadata without downloading the wheels; skipped only when PyPI cannot be reached."""

from __future__ import annotations

import importlib.util
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "edge_wheels.py"
# av 18 ships cp311-abi3 wheels only (no Python 3.10 build on any platform), so 3.11 is the oldest.
PYTHONS = ("3.11", "3.12", "3.13")
ARM64_OR_PURE = re.compile(r"-(?:none-any|[^-]*manylinux[^-]*aarch64[^-]*)\.whl$")


def _edge_wheels():
    spec = importlib.util.spec_from_file_location("edge_wheels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


edge_wheels = _edge_wheels()


def _skip_unless_pypi_reachable() -> None:
    try:
        with urllib.request.urlopen(edge_wheels.PYPI + "/pip/", timeout=10) as r:
            r.read(1)
    except (urllib.error.URLError, OSError) as e:
        pytest.skip(f"PyPI ({edge_wheels.PYPI}) cannot be reached from here: {e}")


def test_platform_tags_stop_at_glibc_2_28():
    glibc = [int(m) for m in re.findall(r"manylinux_2_(\d+)_", " ".join(edge_wheels.PLATFORMS))]
    assert max(glibc) == 28
    assert all(tag.endswith("_aarch64") for tag in edge_wheels.PLATFORMS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("python", PYTHONS)
def test_base_install_resolves_to_aarch64_wheels(python):
    requirements = edge_wheels.base_requirements()
    rc, wheels, stderr = edge_wheels.resolve(requirements, python=python, timeout=50)
    if rc != 0:
        _skip_unless_pypi_reachable()
        pytest.fail(f"the base install does not resolve to ARM64 wheels for CPython {python}:\n{stderr}")
    names = {re.split(r"-", w, maxsplit=1)[0].lower().replace("_", "-") for w in wheels}
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower().replace("_", "-")
        assert name in names, f"{requirement} is not in the ARM64 wheel set {sorted(wheels)}"
    assert "torch" not in names
    not_arm = [w for w in wheels if not ARM64_OR_PURE.search(w)]
    assert not not_arm, f"not ARM64 wheels: {not_arm}"
