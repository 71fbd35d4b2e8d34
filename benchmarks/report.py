"""How a benchmark script hands over its report: indented JSON on stdout and, if asked, in a file.

emit_json(report, path)   stdout always (so a pipe or a test reads it), ``path`` too when given
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def emit_json(report: dict[str, Any], path: Path | None) -> None:
    """Write ``report`` as indented JSON to stdout and to ``path`` (its folder made) when given."""
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
