"""The marker wheelbarrow leaves in the environments it made: their key, wheelhouse and wheels."""

from __future__ import annotations

import json
from pathlib import Path

MARKER = ".wheelbarrow-env.json"


def read_marker(path: Path) -> dict[str, object] | None:
    """The marker wheelbarrow leaves in environments it made, or None."""
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
