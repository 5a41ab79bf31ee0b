"""The ``avfuse`` command: argparse and the command modules. The one room that may name ``models`` and
``export`` modules, and only by string (they need the train extra)."""
