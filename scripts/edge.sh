#!/usr/bin/env bash
# make edge: run a model's fp32 (and int8) file on ARM64 as an edge board would, and compare with this machine.
#   scripts/edge.sh MODEL.onnx [MODEL.int8.onnx]
# 1. emulation: qemu-user-static + binfmt_misc (installed and enabled here where missing, as root);
# 2. a Debian ARM64 userland (debootstrap --foreign, second stage under qemu), cached in $EDGE_CACHE;
# 3. the base install there from wheels fetched on this machine (pip download --platform ...aarch64), offline;
# 4. generated media, avfuse run on both sides for each emulated CPU, one table, MODEL.edge.json beside each file.
# Settings: EDGE_CPUS (qemu CPU models), EDGE_CACHE, EDGE_SUITE, EDGE_MIRROR, EDGE_SETUP=0 (only check, never
# install packages or mount binfmt_misc).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${1:?usage: scripts/edge.sh MODEL.onnx [MODEL.int8.onnx]}
INT8=${2:-}
CACHE=${EDGE_CACHE:-.edge-cache}
SUITE=${EDGE_SUITE:-bookworm}
MIRROR=${EDGE_MIRROR:-http://deb.debian.org/debian}
# three ARM64 integer-kernel paths of onnxruntime: plain NEON (Raspberry Pi 4), dot product (Pi 5),
# dot product + i8mm + SVE (qemu's "max": Graviton 3 class)
CPUS=${EDGE_CPUS:-cortex-a72 cortex-a76 max}
ROOTFS=$CACHE/arm64-$SUITE
PY=.venv/bin/python
BINFMT=/proc/sys/fs/binfmt_misc
CHROOT=scripts/edge-chroot.sh

SETUP_HELP="to set up emulation on Debian/Ubuntu, as root:
    apt-get install -y qemu-user-static binfmt-support debootstrap
    mount -t binfmt_misc binfmt_misc $BINFMT    # where it is not mounted yet
    update-binfmts --enable qemu-aarch64
  in a container the host's kernel decides: run it privileged (docker run --privileged), or on the host
  run 'docker run --privileged --rm tonistiigi/binfmt --install arm64' once."

die() { echo "make edge: $*" >&2; exit 1; }
cannot_emulate() { die "this machine cannot run ARM64 binaries: $1
  $SETUP_HELP"; }
step() { echo "== $*"; }

[ -f "$MODEL" ] || die "no model file $MODEL"
[ -z "$INT8" ] || [ -f "$INT8" ] || die "no int8 file $INT8"
[ -x "$PY" ] || die "no $PY: run 'make test' or 'make demo' first"
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, a mount namespace): run 'sudo make edge'
  $SETUP_HELP"
[ "$(uname -s)" = Linux ] || die "needs Linux (binfmt_misc); this is $(uname -s)"

# -- 1. emulation ------------------------------------------------------------------------------------------
QEMU=""
for q in /usr/libexec/qemu-binfmt/aarch64-binfmt-P /usr/bin/qemu-aarch64-static; do
  [ -x "$q" ] && { QEMU=$q; break; }
done
need=()
[ -n "$QEMU" ] || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v unshare >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  [ "${EDGE_SETUP:-1}" != 0 ] && command -v apt-get >/dev/null \
    || cannot_emulate "missing ${need[*]}"
  step "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || cannot_emulate "apt-get could not install ${need[*]}"
  for q in /usr/libexec/qemu-binfmt/aarch64-binfmt-P /usr/bin/qemu-aarch64-static; do
    [ -x "$q" ] && { QEMU=$q; break; }
  done
fi
if [ ! -e "$BINFMT/status" ]; then
  [ "${EDGE_SETUP:-1}" != 0 ] || cannot_emulate "binfmt_misc is not mounted at $BINFMT"
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
    || cannot_emulate "binfmt_misc cannot be mounted at $BINFMT (no kernel support, or a container without the right)"
fi
[ "$(cat "$BINFMT/status")" = enabled ] || cannot_emulate "binfmt_misc is disabled ($BINFMT/status)"
if ! grep -qx enabled "$BINFMT/qemu-aarch64" 2>/dev/null; then
  [ "${EDGE_SETUP:-1}" != 0 ] || cannot_emulate "no enabled qemu-aarch64 entry in $BINFMT"
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  grep -qx enabled "$BINFMT/qemu-aarch64" 2>/dev/null || cannot_emulate "qemu-aarch64 cannot be registered in $BINFMT"
fi
INTERP=$(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")
FIXED=$(sed -n 's/^flags: //p' "$BINFMT/qemu-aarch64" | grep -c F || true)
QEMU_VERSION=$( { qemu-aarch64-static --version || qemu-aarch64 --version; } 2>/dev/null \
  | sed -n '1s/.*version \([0-9.]*\).*/\1/p' || true)
EMULATOR="qemu-aarch64 ${QEMU_VERSION:-?}"

# -- 2. the userland ---------------------------------------------------------------------------------------
mkdir -p "$CACHE"
t0=$(date +%s)
if [ -e "$ROOTFS/.complete" ]; then
  step "reusing the ARM64 userland $ROOTFS (Debian $SUITE; delete it to build a new one)"
else
  step "building an ARM64 Debian $SUITE userland in $ROOTFS (minutes, once)"
  rm -rf "$ROOTFS.part"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv \
    "$SUITE" "$ROOTFS.part" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap (first stage) failed: see $CACHE/debootstrap.log"
  if [ "$FIXED" -eq 0 ]; then  # the kernel opens the interpreter inside the chroot: put it there
    mkdir -p "$ROOTFS.part$(dirname "$INTERP")" && cp "$INTERP" "$ROOTFS.part$INTERP"
  fi
  chroot "$ROOTFS.part" /bin/true 2>/dev/null || cannot_emulate "an ARM64 binary does not start under $INTERP"
  chroot "$ROOTFS.part" /debootstrap/debootstrap --second-stage >> "$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap's second stage (under qemu) failed: see $CACHE/debootstrap.log"
  "$CHROOT" "$ROOTFS.part" max python3 -m venv /opt/venv-base
  touch "$ROOTFS.part/.complete"
  mv "$ROOTFS.part" "$ROOTFS"
  echo "   built in $(( $(date +%s) - t0 )) s"
fi
"$CHROOT" "$ROOTFS" max /bin/true 2>/dev/null || cannot_emulate "the cached userland's /bin/true does not run"
ARM_PY=$("$CHROOT" "$ROOTFS" max python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# -- 3. the base install, offline ---------------------------------------------------------------------------
WHEELS=$ROOTFS/edge/wheels
mkdir -p "$WHEELS"
step "fetching the ARM64 wheels for CPython $ARM_PY on this machine (the ARM64 side has no network)"
rm -f "$WHEELS"/avfuse-*.whl
"$PY" -m pip wheel -q --no-deps --wheel-dir "$WHEELS" . 2> "$CACHE/wheel.log" || die "pip wheel . failed: see $CACHE/wheel.log"
# both sides run the same versions of numpy, av, onnxruntime...: what differs is the machine
"$PY" -m pip freeze --exclude-editable | grep -E '^[A-Za-z0-9_.-]+==' > "$CACHE/constraints.txt"
"$PY" scripts/edge_wheels.py download --python "$ARM_PY" --dest "$WHEELS" --constraints "$CACHE/constraints.txt" \
  "$(ls "$WHEELS"/avfuse-*.whl)" 2> "$CACHE/download.log" \
  || die "the base install has no complete ARM64 wheel set for CPython $ARM_PY: see $CACHE/download.log"
step "installing the base wheel on ARM64 (pip --no-index, no network)"
rm -rf "$ROOTFS/opt/avfuse"
cp -a "$ROOTFS/opt/venv-base" "$ROOTFS/opt/avfuse"
before=$(du -sb "$ROOTFS/opt/avfuse" | cut -f1)
"$CHROOT" "$ROOTFS" max /opt/avfuse/bin/python -m pip install -q --disable-pip-version-check --no-index \
  --find-links /edge/wheels avfuse > "$CACHE/install.log" 2>&1 || die "pip install on ARM64 failed: see $CACHE/install.log"
INSTALL_BYTES=$(( $(du -sb "$ROOTFS/opt/avfuse" | cut -f1) - before ))
"$CHROOT" "$ROOTFS" max /opt/avfuse/bin/python -m pip list --format=freeze 2>/dev/null | grep -qi '^torch==' \
  && die "the base install pulled in torch on ARM64"
echo "   $(( INSTALL_BYTES / 1000000 )) MB installed: $(ls "$WHEELS" | sed 's/-.*//' | sort | tr '\n' ' ')"

# -- 4. media, runs, comparison ---------------------------------------------------------------------------
MEDIA=$ROOTFS/edge/media
if [ ! -e "$MEDIA/.complete" ]; then
  step "generating test media in $MEDIA"
  rm -rf "$MEDIA.part"
  # 13 videos of 16 s: 104 segments, so one int8 disagreement in a hundred is visible
  .venv/bin/avfuse synth "$MEDIA.part" --videos 12 --test-videos 1 --seconds 16 --seed 18 > "$CACHE/synth.log" 2>&1 \
    || die "avfuse synth failed: see $CACHE/synth.log"
  touch "$MEDIA.part/.complete"
  mv "$MEDIA.part" "$MEDIA"
fi
rm -rf "$ROOTFS/edge/models" && mkdir -p "$ROOTFS/edge/models"
cp "$MODEL" ${INT8:+"$INT8"} "$ROOTFS/edge/models/"
step "avfuse run on this machine and on ARM64 ($CPUS; emulated)"
"$PY" scripts/edge_compare.py --rootfs "$ROOTFS" --emulator "$EMULATOR" --install-bytes "$INSTALL_BYTES" \
  --cpus "$CPUS" --host-out "$CACHE/host" --fp32 "$MODEL" ${INT8:+--int8 "$INT8"}
echo "make edge took $(( $(date +%s) - t0 )) s"
