"""The ARM64 wheel set of the base install, resolved on this machine from PyPI for another platform.

``make edge`` fetches the wheels here (``download``) so the emulated ARM64 side installs with no network
(``pip install --no-index --find-links``); ``tests/test_edge_wheels.py`` resolves the same set without
downloading the wheels (``resolve``) so a dependency without an ARM64 wheel fails ``make test``.

Only manylinux tags up to glibc 2.28 are accepted: what resolves here installs on any ARM64 board with
glibc >= 2.28 (Debian 10+, Ubuntu 20.04+, Raspberry Pi OS bookworm, JetPack 5+).

    python scripts/edge_wheels.py download --python 3.11 --dest DIR [--constraints FILE] REQUIREMENT...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPI = "https://pypi.org/simple"
GLIBC_MINOR = range(28, 16, -1)  # manylinux_2_28 down to manylinux_2_17 (= manylinux2014)
PLATFORMS = (*(f"manylinux_2_{m}_aarch64" for m in GLIBC_MINOR), "manylinux2014_aarch64")


def base_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The base install's dependencies (``[project].dependencies``), as the wheel declares them."""
    with open(pyproject, "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def pip_env() -> dict[str, str]:
    """The environment for pip: PyPI only, not this machine's own wheel folders or mirrors (which hold
    x86-64 builds); certificates and proxies as configured."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_NO_INDEX")}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no configuration file at all
    return env


def _platform_args(python: str) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--index-url", PYPI]
    for tag in PLATFORMS:
        args += ["--platform", tag]
    return args


def _pip(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=pip_env(), timeout=timeout)


def resolve(requirements: list[str], *, python: str, timeout: float = 120) -> tuple[int, list[str], str]:
    """Resolve ``requirements`` for ARM64 Linux and CPython ``python`` (e.g. ``"3.11"``) without
    downloading the wheels (PyPI's metadata files suffice). Returns pip's exit status, the wheel file
    names it chose, and its stderr."""
    with tempfile.TemporaryDirectory(prefix="avfuse-aarch64-") as tmp:
        report = Path(tmp) / "report.json"
        r = _pip(["install", "--dry-run", "--ignore-installed", "--retries", "1", "--target", str(Path(tmp) / "target"),
                  "--report", str(report), "-q", *_platform_args(python), *requirements], timeout)
        if r.returncode != 0 or not report.exists():
            return r.returncode or 1, [], r.stderr
        chosen = json.loads(report.read_text())["install"]
        return 0, [item["download_info"]["url"].rsplit("/", 1)[-1] for item in chosen], r.stderr


def download(requirements: list[str], *, python: str, dest: Path, constraints: Path | None) -> int:
    """Fetch the ARM64 wheels of ``requirements`` and everything they need into ``dest``."""
    args = ["download", "-q", "--dest", str(dest), *_platform_args(python), *requirements]
    if constraints is not None:
        args += ["--constraint", str(constraints)]
    r = _pip(args, timeout=900)
    sys.stderr.write(r.stderr)
    return r.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="fetch the ARM64 wheels into DEST")
    get.add_argument("--python", required=True, help="the target's CPython version, e.g. 3.11")
    get.add_argument("--dest", type=Path, required=True)
    get.add_argument("--constraints", type=Path, help="pins (the host's versions, so both sides run the same)")
    get.add_argument("requirements", nargs="+")
    args = parser.parse_args()
    return download(args.requirements, python=args.python, dest=args.dest, constraints=args.constraints)


if __name__ == "__main__":
    sys.exit(main())
