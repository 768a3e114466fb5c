"""Hypothesis settings and strategies of the fuzz tests (tests/test_fuzz_*.py): inputs, broken."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# WHEELBARROW_FUZZ_SCALE=10 runs ten times the examples (for a long local hunt);
# CI runs the default, derandomized so that every run tries the same cases.
SCALE = float(os.environ.get("WHEELBARROW_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Deterministic settings for ``examples`` cases: no database, no deadline, fixed seeds."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # each case rewrites the files it uses
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# Characters that matter to the parsers (separators, quotes, escapes, NUL,
# non-ASCII) are drawn far more often than uniform text would draw them.
NASTY = "=<>!~;@#/\\.:-_[](){}$,'\"*? \t\x00\x0c\r\u00e9\u2028\ufeff%+^|"
nasty_text = st.text(
    alphabet=st.one_of(st.sampled_from(NASTY), st.characters(codec="utf-8")),
    max_size=40,
)
nasty_bytes = st.one_of(
    st.binary(max_size=200),
    nasty_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    # Invalid UTF-8 in the middle of otherwise good text.
    st.tuples(nasty_text, st.binary(min_size=1, max_size=4), nasty_text).map(
        lambda t: t[0].encode() + b"\xff" + t[1] + t[2].encode()
    ),
)


# -- shared values ---------------------------------------------------------------

SHA = "58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f"
WHEEL = "six-1.16.0-cp312-cp312-manylinux_2_28_x86_64.whl"
# Nothing listens on port 9 of 127.0.0.1: no case can reach a real host.
HOST = "127.0.0.1:9"


# -- requirements files ----------------------------------------------------------


def part(good: list[str]) -> st.SearchStrategy[str]:
    """One of ``good``; now and then one with a nasty character inserted, or junk in its place."""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), damaged(good), nasty_text)


def damaged(good: list[str]) -> st.SearchStrategy[str]:
    """One of ``good`` with a character that matters to parsers inserted somewhere."""
    return st.tuples(st.sampled_from(good), st.integers(0, 40), st.sampled_from(NASTY)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )


names = part(["six", "Flask", "zope.interface", "a_b-c", "x1"])
extras = part(["", "", "[security]", "[a,b]", "[", "[]"])
specifiers = part(["", "==1.0", ">=1,<2", "~=1.4.2", "===weird", " == 2.*", "=>1", "=1", "!=3"])
markers = part(
    ["", "", "; python_version < '3.12'", ";sys_platform=='linux'", "; extra == 'x'", "; os_name"]
)
hashes = part(["", f" --hash=sha256:{SHA}", " --hash=md5:00", " --hash sha256:zz", " --hash"])
hosts = part([HOST, f"user:pw@{HOST}", "[::1", "127.0.0.1:99999", "%zz", "", "[::1]:9"])
url_paths = part(
    ["/six-1.0.tar.gz", "/pkg.zip", "/a/b-1.0-py3-none-any.whl", "/r.git", "/", "/%00x"]
)
fragments = part(
    [
        "",
        "#egg=six",
        "#egg=six[x]",
        "#sha256=" + SHA,
        "#egg=",
        "#egg=bad name",
        "#subdirectory=a",
    ]
)
schemes = part(["https", "http", "file", "git+https", "hg+http", "svn+ssh", "ftp", "git+"])
local_paths = part(["./pkg", "../pkg", "./pkg[x]", "./dist/six-1.0.tar.gz", ".", "./a\\b", "./"])
include_targets = part(["inc.txt", "./inc.txt", "sub/../inc.txt", "missing.txt", ".", "inc.txt\\"])
values = part(["six", ":all:", ":none:", "a,b", f"https://{HOST}/simple", "./wheels", ""])
options = part(
    [
        "-r",
        "-c",
        "-e",
        "-i",
        "-f",
        "--index-url",
        "--extra-index-url",
        "--find-links",
        "--no-binary",
        "--only-binary",
        "--trusted-host",
        "--no-index",
        "--pre",
        "--prefer-binary",
        "--require-hashes",
        "--hash",
        "--unknown",
        "-x",
    ]
)
variables = part(["${VAR}", "${MISSING}", "${lower}", "$VAR", "${", "${VAR"])


@st.composite
def url(draw: st.DrawFn) -> str:
    """A URL with one part possibly broken: scheme, host, path, query or fragment."""
    query = draw(st.sampled_from(["", "?a=b", "?", "?a=%"]))
    return (
        f"{draw(schemes)}://{draw(hosts)}{draw(url_paths)}{query}{draw(fragments)}"
        f"{draw(st.sampled_from(['', '@v1', '@']))}"
    )


@st.composite
def requirement_line(draw: st.DrawFn) -> str:
    """A line of a requirements file, built from parts of which some may be broken."""
    kind = draw(st.sampled_from(["pep508", "url", "direct", "path", "option", "include", "var"]))
    if kind == "pep508":
        line = draw(names) + draw(extras) + draw(specifiers) + draw(markers)
    elif kind == "url":
        line = draw(url()) + draw(st.sampled_from(["", " ; python_version > '3'", ";x"]))
    elif kind == "direct":
        line = f"{draw(names)}{draw(extras)} @ {draw(st.one_of(url(), local_paths))}{draw(markers)}"
    elif kind == "path":
        line = draw(local_paths) + draw(fragments) + draw(markers)
    elif kind == "option":
        sep = draw(st.sampled_from([" ", "=", "", "  "]))
        line = draw(options) + sep + draw(st.one_of(values, url(), local_paths))
    elif kind == "include":
        line = f"{draw(st.sampled_from(['-r', '-c', '--requirement', '-rinc.txt']))} "
        line += draw(include_targets)
    else:
        line = draw(variables) + draw(st.sampled_from(["", "==1", " @ ./x", "/simple"]))
    line += draw(hashes)
    line += draw(st.sampled_from(["", "", "  # a comment", " #", "\\", "'", '"']))
    return line


@st.composite
def requirements_file(draw: st.DrawFn) -> bytes:
    """A whole file: structured lines, sometimes with raw bytes or a broken encoding in between."""
    lines = draw(
        st.lists(
            st.one_of(requirement_line(), requirement_line(), nasty_text),
            max_size=8,
        )
    )
    newline = draw(st.sampled_from(["\n", "\r\n", "\\\n", "\r"]))
    text = newline.join(lines).encode("utf-8")
    if draw(st.booleans()):
        text = draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + text
    if draw(st.integers(0, 9)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(nasty_bytes) + text[cut:]
    return text


# -- TOML documents and pylock.toml ----------------------------------------------


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


# -- app directories -------------------------------------------------------------

FILES = (
    "pyproject.toml",
    "wheelbarrow.toml",
    ".python-version",
    "runtime.txt",
    "requirements.txt",
    "patches/fix.patch",
)


def settings_table() -> dict[str, Any]:
    """Build settings using every key, as in the README."""
    return {
        "no-binary": ["markupsafe"],
        "only-binary": ":all:",
        "repair": "auto",
        "build-jobs": 2,
        "packages": {
            "scipy": {
                "env": {"OPENBLAS_NUM_THREADS": "1"},
                "config-settings": {"setup-args": ["-Dblas=openblas"], "x": "y"},
                "system": ["gfortran", "lib:openblas", "header:cblas.h"],
                "patches": ["patches/fix.patch"],
                "exclusive": True,
            }
        },
    }


def pyproject() -> dict[str, Any]:
    """A pyproject.toml with dependencies, requires-python and build settings."""
    return {
        "project": {
            "name": "app",
            "version": "1.0",
            "requires-python": ">=3.10,<3.14",
            "dependencies": ["six>=1.16", "flask[async]; python_version >= '3.10'"],
        },
        "tool": {"wheelbarrow": settings_table(), "other": {"x": 1}},
    }


@st.composite
def mutated_toml(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one or two nodes changed: a same-typed oddity, another type, removed, added."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        every = nodes(data)[1:]
        if not every:
            break
        path = draw(st.sampled_from(every))
        parent = at(data, path[:-1])
        old = parent[path[-1]]
        how = draw(st.sampled_from(["same-type", "replace", "replace", "remove", "add"]))
        if how == "same-type" and isinstance(old, str):
            parent[path[-1]] = draw(strings_like(old))
        elif how in ("replace", "same-type"):
            parent[path[-1]] = draw(toml_values)
        elif how == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(nasty_text)] = draw(toml_values)
        else:
            parent.append(draw(toml_values))
    return data


def toml_bytes(base: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    """A mutated TOML file, random bytes, or no file (``None``)."""

    def dumps(data: dict[str, Any]) -> bytes:
        try:
            return tomli_w.dumps(data).encode("utf-8")
        except (TypeError, ValueError):
            return b"[unclosed"

    return st.one_of(
        mutated_toml(base).map(dumps),
        mutated_toml(base).map(dumps),
        nasty_bytes,
        st.none(),
    )


version_texts = st.one_of(
    st.sampled_from(
        ["3.12", "3.11.4", "python-3.12.4", "cpython-3.13", "3.99", "2.7", "3", "pypy3.10", ""]
    ),
    st.tuples(
        st.sampled_from(["", "# pinned\n", "\n\n", "\ufeff"]),
        st.sampled_from(["3.12", "python-3.11.2", "3.12\x00", "3.\u0663", "3.12.x", "3.12 "]),
        st.sampled_from(["", "\n", "\r\n", "\n3.11\n", "\x00"]),
    ).map("".join),
    nasty_text,
)
version_files = st.one_of(
    version_texts.map(lambda s: s.encode("utf-8")), nasty_bytes, st.none(), st.none()
)


@st.composite
def app_files(draw: st.DrawFn) -> dict[str, bytes | None]:
    """The files of an app directory; ``None`` means absent."""
    return {
        "pyproject.toml": draw(toml_bytes(pyproject())),
        "wheelbarrow.toml": draw(st.one_of(st.none(), st.none(), toml_bytes(settings_table()))),
        ".python-version": draw(version_files),
        "runtime.txt": draw(version_files),
        "requirements.txt": draw(st.sampled_from([None, None, b"six\n", b""])),
        "patches/fix.patch": draw(st.sampled_from([None, b"--- a/x\n+++ b/x\n"])),
    }


def write_app(root: Path, files: dict[str, bytes | None]) -> None:
    """Make ``root`` hold exactly ``files`` (the same directory is reused across cases)."""
    for name, data in files.items():
        path = root / name
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
