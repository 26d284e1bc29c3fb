"""Versioned JSON files: every file draftforge writes carries `schema: draftforge.<kind>/<n>`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from draftforge.errors import DraftforgeError


def write_json(path: str | os.PathLike, obj: dict[str, Any]) -> Path:
    """Write `obj` as indented JSON atomically (a temp file renamed over the target)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_versioned(path: str | os.PathLike, schema: str) -> dict[str, Any]:
    """Read a draftforge JSON file and check its `schema` key equals `schema` exactly.

    Raises DraftforgeError for a missing file, invalid JSON, or a file of another schema.
    """
    path = Path(path)
    if not path.is_file():
        raise DraftforgeError(f"file not found: {path}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DraftforgeError(f"{path} is not valid JSON ({exc}); is it corrupt?") from None
    if not isinstance(obj, dict) or "schema" not in obj:
        raise DraftforgeError(f"{path} has no 'schema' key; it is not a draftforge file (expected {schema})")
    if obj["schema"] != schema:
        raise DraftforgeError(f"{path} has schema {obj['schema']!r}, expected {schema!r}")
    return obj


def ensure_new_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create an output folder; refuse an existing non-empty one unless `overwrite`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DraftforgeError(f"{path} exists and is not a folder; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise DraftforgeError(f"{path} exists and is not empty; choose another --out or pass --overwrite")
    path.mkdir(parents=True, exist_ok=True)
    return path
