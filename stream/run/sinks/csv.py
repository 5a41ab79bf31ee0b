"""CSV: one file per source (``STEM.csv``) or one stream on stdout; every record type shares one set of
columns, made from the record fields (:data:`avfuse.stream.records.CSV_COLUMNS`): ``top`` is JSON, gates and
present one column per modality, and a key no record declares goes into ``extra`` as JSON, never dropped.

A text cell a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return: a label, a file name, an error message) gets a leading single quote, OWASP's rule
against CSV injection; numbers, and text that is only a number, are written as they are."""

from __future__ import annotations

import csv
import re
from typing import TextIO

from avfuse.stream.records import CSV_COLUMNS, flat
from avfuse.stream.run.sinks.files import FileSink

COLUMNS = CSV_COLUMNS
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def cell(value: object) -> object:
    """``value`` as a spreadsheet may safely read it: formula-like text quoted, anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def row(record: dict) -> dict:
    return {k: cell(v) for k, v in flat(record).items()}


def _writer(f: TextIO, *, quote_all: bool = False) -> csv.DictWriter:
    return csv.DictWriter(f, COLUMNS, lineterminator="\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)


class CsvSink(FileSink):
    name = ext = "csv"
    newline = ""

    def begin(self, f: TextIO) -> None:
        _writer(f).writeheader()

    def write(self, key: str, record: dict) -> None:
        cells = row(record)
        # csv quotes a cell holding "\n" but not one holding a bare "\r", which readers take as a line break:
        # a new row, whose first cell could be a formula. A row with one is quoted throughout.
        carriage_return = any(isinstance(v, str) and "\r" in v for v in cells.values())
        _writer(self.file(key), quote_all=carriage_return).writerow(cells)
