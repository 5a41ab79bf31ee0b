#!/usr/bin/env bash
# Remakes the README's screenshots (docs/*.png) with the page tests' own code: each test saves its screenshot in
# its temporary folder; this runs them with a known base folder and copies the pictures.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(mktemp -d)
.venv/bin/python -m pytest -q -p no:cacheprovider --basetemp="$base" \
  "tests/run/test_report_run.py::test_report_draws_each_segment_and_the_pointer_reads_its_record" \
  tests/run/test_report_train.py tests/run/test_live_view.py
mkdir -p docs
cp "$(find "$base" -name report.png | head -1)" docs/report.png
cp "$(find "$base" -name training-report.png | head -1)" docs/training-report.png
cp "$(find "$base" -name live-blue.png | head -1)" docs/live-view.png
rm -rf "$base"
ls -l docs/*.png
