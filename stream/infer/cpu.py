"""What this machine's CPU offers for integer arithmetic: the facts that decide whether onnxruntime's
uint8 x int8 kernels saturate (x86-64 without VNNI) and which CPUs an int8 file was checked on."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
X86_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True, kw_only=True)
class CpuInfo:
    arch: str  # platform.machine(): x86_64, aarch64, ...
    model: str
    flags: frozenset[str]

    @property
    def x86(self) -> bool:
        return self.arch.lower() in ("x86_64", "amd64", "i686", "x86")

    @property
    def vnni(self) -> bool:
        return bool(self.flags & set(X86_VNNI_FLAGS))

    @property
    def u8s8_saturates(self) -> bool:
        """True where onnxruntime's u8s8 kernels sum byte pairs into a saturating int16 (x86 without VNNI)."""
        return self.x86 and not self.vnni

    def describe(self) -> str:
        """One line: the model and the integer features that matter, e.g. ``AMD EPYC (x86_64: avx2, no VNNI)``."""
        if self.x86:
            simd = "avx512" if "avx512f" in self.flags else "avx2" if "avx2" in self.flags else "sse"
            vnni = ", ".join(f for f in X86_VNNI_FLAGS if f in self.flags) or "no VNNI"
            return f"{self.model} ({self.arch}: {simd}, {vnni})"
        dot = "dot product" if {"asimddp", "dotprod"} & self.flags else "no dot product"
        return f"{self.model} ({self.arch}: {dot})"


def cpu_info(cpuinfo: Path = CPUINFO) -> CpuInfo:
    """This machine's CPU, from ``/proc/cpuinfo`` where there is one."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return CpuInfo(arch=platform.machine() or "unknown", model=model, flags=frozenset(flags))
