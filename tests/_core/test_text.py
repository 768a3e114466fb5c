"""Tests for wheelbarrow._core.text: counts in messages read as English."""

from __future__ import annotations

import pytest

from wheelbarrow._core.text import agree, plural


class TestPlural:
    @pytest.mark.parametrize(
        ("count", "expected"),
        [(0, "0 packages"), (1, "1 package"), (2, "2 packages"), (12, "12 packages")],
    )
    def test_singular_only_for_one(self, count: int, expected: str) -> None:
        """One takes the singular; zero and more take the plural."""
        assert plural(count, "package") == expected

    def test_irregular_plural_is_given(self) -> None:
        """A word whose plural is not word + s names its plural form."""
        assert (plural(1, "patch", "patches"), plural(3, "patch", "patches")) == (
            "1 patch",
            "3 patches",
        )


class TestAgree:
    def test_verb_agrees_with_the_count(self) -> None:
        """The verb after a count is singular only for one."""
        assert [agree(n, "has", "have") for n in (0, 1, 2)] == ["have", "has", "have"]
