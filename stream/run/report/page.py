"""What the report pages share: templates with ``{{name}}`` slots, and JSON that is safe inside a page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from avfuse.stream.errors import ConfigError

_SLOT = re.compile(r"\{\{(\w+)\}\}")
HELPERS = Path(__file__).with_name("helpers.js")  # the script functions the pages share: the ``helpers`` slot


def embed_json(value: object) -> str:
    """``value`` as JSON that can sit inside ``<script type="application/json">``: no ``<``, ``>`` or ``&``
    survives, so a label such as ``</script><script>...`` stays text."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fill(template: str, **slots: str) -> str:
    """Put each slot's (already escaped) HTML in place of ``{{slot}}``; every slot must be given but
    ``helpers``, which is the pages' shared script (``helpers.js``)."""
    if "{{helpers}}" in template and "helpers" not in slots:
        slots = {**slots, "helpers": HELPERS.read_text(encoding="utf-8")}
    missing = set(_SLOT.findall(template)) - slots.keys()
    if missing:
        raise ConfigError(f"report template slots without a value: {', '.join(sorted(missing))}")
    return _SLOT.sub(lambda m: slots[m.group(1)], template)
