"""What a Prometheus server makes of a scraped ``--metrics-port`` page: Debian's ``promtool check metrics`` (the
exposition format parsed and linted by Prometheus's own code) and the values read by prometheus_client's parser."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

PROMTOOL = shutil.which("promtool")


def checked_values(page: str) -> dict[str, float]:
    """The page's samples by name (with their labels, as written), after ``promtool`` accepted the page."""
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (scripts/system-deps.sh installs Debian's prometheus)")
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=page, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr
    values = {}
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return values
