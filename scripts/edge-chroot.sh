#!/usr/bin/env bash
# Runs one command in make edge's ARM64 userland, as a board would: its own mount namespace (a /proc of
# its own, gone when the command ends: nothing to unmount), no network at all, a clean environment, and
# qemu emulating the CPU named (a `qemu-aarch64 -cpu help` name: cortex-a72, cortex-a76, max, ...).
#   scripts/edge-chroot.sh ROOTFS CPU COMMAND [ARG...]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 ROOTFS CPU COMMAND [ARG...]" >&2; exit 2; }
root=$(realpath "$1") cpu=$2
shift 2
exec unshare --mount --net sh -c '
  root=$0 cpu=$1; shift
  mount -t proc proc "$root/proc"
  exec chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU="$cpu" "$@"
' "$root" "$cpu" "$@"
