"""The Ray image and the KubeRay job (no Docker engine or Kubernetes here): the Dockerfile passes hadolint
and installs the Ray that pyproject.toml pins; the RayJob runs that image on every pod, mounts the paths its
command uses on every pod, and its command is one ``avfuse run`` accepts, on the Ray engine."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess

import tomllib
import yaml
from test_docker import DOCKER, ROOT, _hadolint, _stage

from avfuse.stream.cli import run_cmd

DOCKERFILE = DOCKER / "Dockerfile.ray"


def _ray_pin() -> str:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    pins = [re.fullmatch(r"ray\[data\]==(\d+\.\d+)\.\*", d) for d in extra]
    assert any(pins), extra
    return next(p for p in pins if p).group(1)


def test_the_ray_dockerfile_passes_hadolint():
    r = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


def test_the_ray_image_is_rays_own_with_the_pinned_version_and_runs_avfuse_unprivileged():
    final = _stage(DOCKERFILE.read_text())
    pin = _ray_pin()
    assert re.search(rf"^rayproject/ray:{re.escape(pin)}\.\d+-py311-cpu", final, re.M)
    assert re.search(rf'"ray\[data\]=={re.escape(pin)}\.\d+"', final)
    users = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["avfuse"]' in final


def _pods(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def test_the_rayjob_runs_avfuse_on_the_ray_engine_with_the_data_on_every_pod():
    job = yaml.safe_load((DOCKER / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["rayClusterSpec"]["rayVersion"].startswith(_ray_pin() + ".")
    command = shlex.split(job["spec"]["entrypoint"])
    assert command[:2] == ["avfuse", "run"]
    parser = argparse.ArgumentParser()
    run_cmd.add_arguments(parser)
    args = parser.parse_args(command[2:])  # the real avfuse run parser accepts the job's command
    assert args.engine == "ray" and args.address == "auto" and args.resume
    paths = [args.model, *args.sources, str(args.out)]
    for pod in _pods(job):
        (container,) = pod["containers"]
        assert container["image"].startswith("avfuse-ray")
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        mounts = {m["mountPath"]: claims[m["name"]] for m in container["volumeMounts"]}
        for p in paths:  # every pod sees the model, the videos and the outputs at the same paths
            assert any(p.startswith(m.rstrip("/") + "/") for m in mounts), (p, mounts)
    assert len({c for pod in _pods(job) for c in (v["persistentVolumeClaim"]["claimName"]
                                                  for v in pod["volumes"])}) == 1
