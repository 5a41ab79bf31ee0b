"""The ``ray`` extra: one import that names it when Ray is missing."""

from __future__ import annotations

import importlib

from avfuse.stream.errors import DependencyError

EXTRA = "pip install 'avfuse[ray]'"
EXIT_MISSING = 2  # avfuse run --engine ray without Ray: a usage error, as argparse's


def import_ray_module(module: str, *, who: str):
    """Import ``module`` (one of avfuse's Ray modules); DependencyError naming the extra if Ray is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("ray", "pyarrow", "pandas"):
            raise DependencyError(f"{who}: needs Ray ({e.name} is not installed): {EXTRA}") from e
        raise
