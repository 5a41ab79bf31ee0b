"""``python -m avfuse`` is the ``avfuse`` command."""

from avfuse.stream.cli.main import entry

raise SystemExit(entry())
