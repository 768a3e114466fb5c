"""Damage that disks and stray writes do, for the tests that must catch it."""

from __future__ import annotations

from pathlib import Path


def flip_a_byte(path: Path) -> None:
    """Change one byte in place, as a failing disk or a stray write would."""
    with path.open("r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
