# The CPU runtime image (docker/Dockerfile) for x86-64 servers and ARM64 boards (Raspberry Pi 4/5 on a
# 64-bit OS, Jetson without its GPU, Graviton): python:3.11-slim-bookworm is multi-arch and every wheel of
# the base install exists for aarch64 (tests/test_edge_wheels.py). From the repository root:
#   docker buildx create --use --name avfuse-multi   # once: the default "docker" driver builds one platform
#   docker buildx bake -f docker/docker-bake.hcl --push --set runtime.tags=REGISTRY/avfuse:TAG
#   docker buildx bake -f docker/docker-bake.hcl --set runtime.platform=linux/arm64 --load   # arm64 only, local
# On an x86-64 builder the arm64 half runs under qemu; register it once with
#   docker run --privileged --rm tonistiigi/binfmt --install arm64
# (docker/compose.yaml builds for the local platform only, which works with any builder.)
group "default" {
  targets = ["runtime"]
}

target "runtime" {
  context    = "."
  dockerfile = "docker/Dockerfile"
  platforms  = ["linux/amd64", "linux/arm64"]
  tags       = ["avfuse:latest"]
}
