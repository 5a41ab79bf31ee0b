"""Run on the ARM64 side by make edge: what this machine is, as onnxruntime sees it, in one JSON line.

The integer features come from the kernel's hardware capabilities (``getauxval``), which is what
onnxruntime picks its ARM64 kernels by; under qemu-user ``/proc/cpuinfo`` is the host's and says nothing.
"""

import ctypes
import importlib.util
import json
import os
import platform
import sys

AT_HWCAP, AT_HWCAP2 = 16, 26
HWCAP = {"asimddp": (AT_HWCAP, 1 << 20), "sve": (AT_HWCAP, 1 << 22), "i8mm": (AT_HWCAP2, 1 << 13)}


def main() -> int:
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    import onnxruntime

    print(json.dumps({
        "arch": platform.machine(),
        "cpu": os.environ.get("QEMU_CPU", "unknown"),
        "features": [name for name, (at, bit) in HWCAP.items() if libc.getauxval(at) & bit],
        "python": platform.python_version(),
        "glibc": platform.libc_ver()[1],
        "onnxruntime": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
        "torch": importlib.util.find_spec("torch") is not None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
