"""TOML reading shared by the Poetry modules: files, tables, markers, the malformed-file error."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.managers import POETRY_LOCK

__all__ = ["as_mapping", "load_toml", "malformed", "parse_marker", "require_table"]


def load_toml(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """``path`` parsed (or ``data``, its bytes already read); InputError saying what to fix."""
    try:
        raw = path.read_bytes() if data is None else data
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            f"{path}: not found", hint="add it, or deploy from another directory"
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        fix = (
            "lock again with `poetry lock`: poetry.lock is written by Poetry, not by hand"
            if path.name == POETRY_LOCK
            else f"fix the TOML syntax of {path.name}"
        )
        raise InputError(f"{path}: not valid TOML: {exc}", hint=fix) from exc


def require_table(data: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise malformed(path, f"no [{key}] table")
    return value


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a table, else an empty one."""
    return value if isinstance(value, dict) else {}


def parse_marker(text: str, path: Path, where: str) -> Marker:
    try:
        return Marker(text)
    except InvalidMarker as exc:
        raise malformed(path, f"{where}: {text!r} is not a marker: {exc}") from exc


def malformed(path: Path, detail: str) -> InputError:
    """The error for a malformed ``path``, with the hint that fits the file."""
    hint = (
        "lock again with `poetry lock`: poetry.lock is written by Poetry, not by hand"
        if path.name == POETRY_LOCK
        else f"fix {path.name} (`poetry check` says what Poetry makes of it)"
    )
    return InputError(f"{path}: {detail}", hint=hint)
