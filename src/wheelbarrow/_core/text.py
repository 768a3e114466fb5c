"""Words for messages: counted ("1 package", never "package(s)") and sizes ("63.2 MB")."""

from __future__ import annotations

__all__ = ["agree", "human_size", "plural"]


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, in the plural unless ``count`` is 1.

    >>> plural(1, "package"), plural(2, "package"), plural(0, "match", "matches")
    ('1 package', '2 packages', '0 matches')
    """
    return f"{count} {agree(count, word, many or word + 's')}"


def agree(count: int, one: str, many: str) -> str:
    """The form of a word that agrees with ``count``: ``agree(n, "has", "have")``."""
    return one if count == 1 else many


def human_size(n: float) -> str:
    """A size for people, in decimal units: ``512 B``, ``1.5 kB``, ``63.2 MB``.

    >>> human_size(999_960), human_size(61_234_567)
    ('1.0 MB', '61.2 MB')
    """
    if abs(n) < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        # Rounded, 999.96 kB would read "1000.0 kB": it is 1.0 MB.
        if abs(round(n, 1)) < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"
