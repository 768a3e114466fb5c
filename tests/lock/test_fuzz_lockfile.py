"""Fuzz tests of wheelbarrow.lock.lockfile: any pylock.toml is read and selected from, or refused.

A valid lock (wheels, an sdist, a directory, a VCS source, wheelbarrow's tool
table) has one node replaced by a value of another type, removed, or given an
unknown sibling; random bytes and random TOML documents are tried as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import (
    WHEEL,
    at,
    fuzz_settings,
    mutated,
    nasty_bytes,
    nasty_text,
    toml_values,
    valid_lock,
)

from wheelbarrow._core.errors import InputError, NoCompatibleWheelError
from wheelbarrow.app.config import BuildConfig
from wheelbarrow.app.target import Target
from wheelbarrow.lock.lockfile import read_lock, select_artefacts
from wheelbarrow.lock.target_choice import recorded_target

TARGET = Target.parse(python="3.12", platform="manylinux_2_28_x86_64", python_source="test")


def dumps(data: dict[str, Any]) -> bytes:
    """The TOML text of ``data``, or a junk document when ``data`` cannot be written as TOML."""
    try:
        return tomli_w.dumps(data).encode("utf-8")
    except (TypeError, ValueError):
        return b"not = [toml"


def check(root: Path, data: bytes) -> None:
    """Read the lock and select for the target: artefacts, or an error that names the file."""
    path = root / "pylock.toml"
    path.write_bytes(data)
    (root / "pkg").mkdir(exist_ok=True)
    recorded = recorded_target(path)
    assert all(isinstance(v, str) for v in recorded.values())
    try:
        lock = read_lock(path)
        select_artefacts(lock, TARGET, BuildConfig())
    except NoCompatibleWheelError as exc:
        assert exc.packages, "the error lists the packages without a wheel"
    except InputError as exc:
        assert exc.message.startswith(f"{path}: "), exc.message


class TestLockFuzz:
    """read_lock, select_artefacts and recorded_target on generated pylock.toml files."""

    @fuzz_settings(1500)
    @given(data=mutated(valid_lock()))
    def test_mutated_locks_are_read_or_refused_by_name(
        self, tmp_path: Path, data: dict[str, Any]
    ) -> None:
        """A valid lock with broken nodes gives artefacts or an error that names pylock.toml."""
        check(tmp_path, dumps(data))

    @fuzz_settings(300)
    @given(data=st.dictionaries(nasty_text, toml_values, max_size=5))
    def test_random_documents_are_refused_by_name(
        self, tmp_path: Path, data: dict[str, Any]
    ) -> None:
        """A random TOML document is refused with an error naming the file."""
        check(tmp_path, dumps(data))

    @fuzz_settings(200)
    @given(data=nasty_bytes)
    def test_random_bytes_are_refused_by_name(self, tmp_path: Path, data: bytes) -> None:
        """Random bytes (bad UTF-8 included) are refused with an error naming the file."""
        check(tmp_path, data)

    @pytest.mark.parametrize(
        ("where", "value", "fragment"),
        [
            (("packages", 1, "directory", "path"), "pk\0g", "NUL byte"),
            (("packages", 1, "directory", "path"), "x" * 300, "cannot be read"),
            (("packages", 0, "wheels", 1, "path"), "wh\0eels/" + WHEEL, "NUL byte"),
            (("packages", 2, "vcs", "path"), "a\0", "NUL byte"),
        ],
    )
    def test_cases_that_crashed(
        self, tmp_path: Path, where: tuple[Any, ...], value: str, fragment: str
    ) -> None:
        """A local path no file can have is an error naming the lock and the package."""
        data = valid_lock()
        at(data, where[:-1])[where[-1]] = value
        path = tmp_path / "pylock.toml"
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
        (tmp_path / "pkg").mkdir()
        with pytest.raises(InputError) as info:
            select_artefacts(read_lock(path), TARGET, BuildConfig())
        assert info.value.message.startswith(f"{path}: "), info.value.message
        assert fragment in info.value.message

    @pytest.mark.parametrize("tool", [True, [], "x"])
    def test_tool_that_is_not_a_table(self, tmp_path: Path, tool: object) -> None:
        """A ``tool`` that is not a table is refused by name, and gives no recorded target."""
        data = valid_lock()
        data["tool"] = tool
        path = tmp_path / "pylock.toml"
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
        assert recorded_target(path) == {}
        with pytest.raises(InputError) as info:
            read_lock(path)
        assert info.value.message.startswith(f"{path}: not a valid PEP 751 lock: ")

    @pytest.mark.parametrize("table", [[], 1, "x"])
    def test_wheelbarrow_table_that_is_not_a_table(self, tmp_path: Path, table: object) -> None:
        """A ``tool.wheelbarrow`` that is not a table marks a lock wheelbarrow did not write."""
        data = valid_lock()
        data["tool"] = {"wheelbarrow": table}
        path = tmp_path / "pylock.toml"
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
        assert recorded_target(path) == {}
        lock = read_lock(path)
        assert (lock.inputs, lock.tool) == (None, {})
