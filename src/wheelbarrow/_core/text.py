"""Counted words for messages: "1 package", "2 packages", never "package(s)"."""

from __future__ import annotations

__all__ = ["agree", "plural"]


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, in the plural unless ``count`` is 1.

    >>> plural(1, "package"), plural(2, "package"), plural(0, "match", "matches")
    ('1 package', '2 packages', '0 matches')
    """
    return f"{count} {agree(count, word, many or word + 's')}"


def agree(count: int, one: str, many: str) -> str:
    """The form of a word that agrees with ``count``: ``agree(n, "has", "have")``."""
    return one if count == 1 else many
