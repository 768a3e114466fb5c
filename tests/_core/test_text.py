"""Tests for wheelbarrow._core.text: counts and sizes in messages read as English."""

from __future__ import annotations

import pytest

from wheelbarrow._core.text import agree, human_size, plural


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


class TestHumanSize:
    @pytest.mark.parametrize(
        ("n", "text"),
        [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1.0 kB"),
            (1536, "1.5 kB"),
            (63_200_000, "63.2 MB"),
            (999_960, "1.0 MB"),
            (2_500_000_000, "2.5 GB"),
            (3_000_000_000_000, "3000.0 GB"),
        ],
    )
    def test_human_size(self, n: int, text: str) -> None:
        """Sizes read in decimal units with one decimal."""
        assert human_size(n) == text
