"""Fuzz tests of wheelbarrow.lockfile: any pylock.toml is read and selected from, or refused.

A valid lock (wheels, an sdist, a directory, a VCS source, wheelbarrow's tool
table) has one node replaced by a value of another type, removed, or given an
unknown sibling; random bytes and random TOML documents are tried as well.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import fuzz_settings, nasty_bytes, nasty_text

from wheelbarrow.config import BuildConfig
from wheelbarrow.errors import InputError, NoCompatibleWheelError
from wheelbarrow.lockfile import read_lock, select_artefacts
from wheelbarrow.plan import recorded_target
from wheelbarrow.target import Target

SHA = "58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f"
WHEEL = "six-1.16.0-cp312-cp312-manylinux_2_28_x86_64.whl"
TARGET = Target.parse(python="3.12", platform="manylinux_2_28_x86_64", python_source="test")


def valid_lock() -> dict[str, Any]:
    """A lock of each kind of package wheelbarrow selects from."""
    url = "http://127.0.0.1:9/files"
    return {
        "lock-version": "1.0",
        "created-by": "uv",
        "requires-python": ">=3.11",
        "environments": ["sys_platform == 'linux'"],
        "packages": [
            {
                "name": "six",
                "version": "1.16.0",
                "marker": "python_version >= '3'",
                "requires-python": ">=3.8",
                "wheels": [
                    {
                        "url": f"{url}/six-1.16.0-py2.py3-none-any.whl",
                        "size": 11053,
                        "hashes": {"sha256": SHA},
                    },
                    {"name": WHEEL, "path": f"wheels/{WHEEL}", "hashes": {"sha256": SHA}},
                ],
                "sdist": {"url": f"{url}/six-1.16.0.tar.gz", "hashes": {"sha256": SHA}},
            },
            {
                "name": "local",
                "version": "0.1",
                "directory": {"path": "pkg", "editable": False},
            },
            {
                "name": "fromgit",
                "vcs": {"type": "git", "url": "https://127.0.0.1:9/r.git", "commit-id": "a" * 40},
            },
            {
                "name": "tarball",
                "version": "2.0",
                "archive": {"url": f"{url}/tarball-2.0.tar.gz", "hashes": {"sha256": SHA}},
            },
        ],
        "tool": {
            "wheelbarrow": {
                "inputs": "sha256:" + SHA,
                "index": "sha256:" + SHA,
                "python": "3.12",
                "platform": "manylinux_2_28_x86_64",
            }
        },
    }  # fmt: skip


toml_scalars = st.one_of(
    nasty_text,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.sampled_from(
        [
            "",
            "1.0",
            "../x",
            "/abs",
            "http://[::1",
            SHA,
            "six-1.0-py3-none-any.whl",
            "a\0",
            "x" * 300,
        ]
    ),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(nasty_text, inner, max_size=3)
    ),
    max_leaves=6,
)


def nodes(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``data``: dict keys and list indexes."""
    found = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            found += nodes(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += nodes(value, (*path, index))
    return found


def at(data: Any, path: tuple[Any, ...]) -> Any:
    """The node of ``data`` at ``path``."""
    for step in path:
        data = data[step]
    return data


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one to three nodes replaced, removed or given an unknown sibling."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        every = nodes(data)[1:]
        leaves = [p for p in every if isinstance(at(data, p), str)]
        # Mostly one string leaf: the lock then often stays valid PEP 751.
        path = draw(
            st.sampled_from(leaves or every) if draw(st.booleans()) else st.sampled_from(every)
        )
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["same-type", "same-type", "replace", "remove", "add"]))
        old = parent[path[-1]]
        if how == "same-type" and isinstance(old, str):
            # Still a string, so the lock stays valid PEP 751 more often and the
            # checks behind validation (file names, paths, markers) are reached.
            parent[path[-1]] = draw(st.one_of(nasty_text, strings_like(old)))
        elif how == "same-type" and isinstance(old, int):
            parent[path[-1]] = draw(st.integers(-(2**63), 2**63 - 1))
        elif how in ("replace", "same-type"):
            parent[path[-1]] = draw(toml_values)
        elif how == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(nasty_text)] = draw(toml_values)
        else:
            parent.append(draw(toml_values))
        if not nodes(data)[1:]:
            break
    return data


def strings_like(old: str) -> st.SearchStrategy[str]:
    """``old`` with a part cut out or a character that matters to parsers put in."""
    inserts = st.one_of(nasty_text, st.sampled_from(["\0", "x" * 300, "/", "..", "%00", "\\"]))
    return st.tuples(st.integers(0, len(old)), st.integers(0, len(old)), inserts).map(
        lambda t: old[: t[0]] + t[2] + old[max(t[0], t[1]) :]
    )


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
