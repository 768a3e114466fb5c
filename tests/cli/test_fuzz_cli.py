"""Fuzz tests of the command line with no network: random arguments and app directories.

Every run ends with exit code 0, or 1/2 and an ``error:`` line; never a
traceback. The index refuses connections (port 9 of 127.0.0.1), so nothing
leaves the machine. Paths given to options are names under the test's own
directory (the working directory of the run): never absolute, never ``..``
or ``~``. ``serve`` is left out: when it works it serves until stopped.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st
from support.apps import cli
from support.fuzz import (
    FILES,
    app_files,
    fuzz_settings,
    mutated,
    nasty_text,
    requirements_file,
    valid_lock,
    write_app,
)

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow.app.directory import read_app

REFUSED = "http://127.0.0.1:9/simple"


def part(good: list[str]) -> st.SearchStrategy[str]:
    """One of ``good``, or now and then junk in its place."""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), nasty_text)


# A name under the working directory whatever is drawn: separators, dots and
# tildes of junk become underscores.
junk_name = nasty_text.map(lambda s: "p_" + re.sub(r"[/.~\\\x00]", "_", s))
paths = st.one_of(
    st.sampled_from(
        ["app", "out", "env", "store", "a/b", "app/requirements.txt", "app/requirements.txt/x"]
    ),
    junk_name,
)
urls = part([REFUSED, "http://[::1", "http://127.0.0.1:99999/", "file:./wheels", "./wheels", ""])
pythons = part(["3.12", "3.11", "3.11.2", "3.99", "2.7", "python-3.12", "3", "pypy3.10"])
platforms = part(
    ["manylinux_2_28_x86_64", "manylinux_2_17_aarch64", "manylinux_2_99_x86_64", "win32"]
)
executables = st.sampled_from(
    [sys.executable, "missing/python", "app/requirements.txt", "/bin/false"]
)
images = part(["oci:base:latest", "oci:missing", "127.0.0.1:9/base:1", "127.0.0.1:9/app@sha256:00"])
common_options: dict[str, st.SearchStrategy[str] | None] = {
    "--python": pythons,
    "--platform": platforms,
    "--store": paths,
    "--json": None,
    "-q": None,
}
index_options: dict[str, st.SearchStrategy[str] | None] = {
    "-i": urls,
    "--index-url": urls,
    "--extra-index-url": urls,
    "-f": st.one_of(urls, paths),
    "--no-index": None,
}
COMMANDS: dict[tuple[str, ...], dict[str, st.SearchStrategy[str] | None]] = {
    ("lock",): {**common_options, **index_options},
    ("build",): {
        **common_options,
        **index_options,
        "--jobs": part(["1", "8", "0", "-3", "x"]),
        "--output": paths,
        "--no-binary": part(["small", ":all:", "a,b", ""]),
        "--only-binary": part(["small", ":all:", ":none:"]),
        "--repair": part(["auto", "never"]),
        "--build-jobs": part(["1", "0", "two"]),
        "--python-executable": executables,
    },
    ("install",): {
        **common_options,
        "--into": paths,
        "--python-executable": executables,
        "--link-mode": part(["hardlink", "copy"]),
    },
    ("image",): {
        **common_options,
        "--base": images,
        "--tag": images,
        "--oci": st.one_of(paths, paths.map(lambda p: p + ":tag")),
        "--docker-archive": paths,
        "--push": None,
        "--source": nasty_text,
        "--python-executable": executables,
    },
    ("dockerfile",): {
        "--python": pythons,
        "--base": part(["python:3.12-slim", "debian:12"]),
        "--builder-base": part(["python:3.12"]),
        "--output": paths,
        "-i": urls,
        "--wheelbarrow": part(["wheelbarrow", "wheelbarrow==0.1", "./dist/x.whl"]),
        "--no-bind-mounts": None,
        "-q": None,
    },
    ("verify",): {"--store": paths, "--repair": None, "--json": None, "-q": None},
    ("store", "du"): {"--store": paths, "--json": None, "-q": None},
    ("store", "gc"): {
        "--store": paths,
        "--older-than": part(["1d", "12h", "0", "x", "-1d"]),
        "--max-size": part(["1G", "500M", "0", "x"]),
        "--dry-run": None,
        "--json": None,
    },
}

REQUIRED = {("image",): ("--base", "--tag", "--oci"), ("install",): ("--into",)}
NO_APP = {("verify",), ("store", "du"), ("store", "gc")}


@st.composite
def command_line(draw: st.DrawFn) -> list[str]:
    """A command, some of its options (values drawn to fit or not), an app, and stray words."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.lists(st.one_of(nasty_text, st.sampled_from(["--help", "--version"]))))
    command = draw(st.sampled_from(sorted(COMMANDS)))
    known = COMMANDS[command]
    argv = list(command)
    chosen = draw(st.lists(st.sampled_from(sorted(known)), max_size=5))
    # Mostly with the options a command requires, so that runs get past argparse.
    chosen += [o for o in REQUIRED.get(command, ()) if draw(st.integers(0, 9)) > 0]
    for option in chosen:
        argv.append(option)
        values = known[option]
        if values is not None and draw(st.integers(0, 19)) > 0:  # now and then the value is missing
            argv.append(draw(values))
    if command not in NO_APP and draw(st.integers(0, 4)) > 0:
        argv.append(draw(st.sampled_from(["app", "app", "app", "missing", "app/requirements.txt"])))
    if draw(st.integers(0, 9)) == 0:
        argv.insert(
            draw(st.integers(0, len(argv))), draw(st.one_of(nasty_text, st.just("--bogus")))
        )
    return argv


@st.composite
def app_tree(draw: st.DrawFn) -> dict[str, bytes | None]:
    """An app directory: its inputs, a requirements file and maybe a lock of its own."""
    files = draw(app_files())
    if draw(st.booleans()):
        files["requirements.txt"] = draw(requirements_file())
    lock: dict[str, Any] | None = draw(st.one_of(st.none(), mutated(valid_lock())))
    if lock is not None:
        try:
            files["pylock.toml"] = tomli_w.dumps(lock).encode("utf-8")
        except (TypeError, ValueError):
            files["pylock.toml"] = b"[broken"
    else:
        files["pylock.toml"] = None
    return files


@st.composite
def good_app(draw: st.DrawFn) -> dict[str, bytes | None]:
    """An app that reads well (requirements or only a lock), but for at most one broken part."""
    lock = mutated(valid_lock()) if draw(st.booleans()) else st.just(valid_lock())
    files: dict[str, bytes | None] = dict.fromkeys(FILES)
    if draw(st.booleans()):
        files["requirements.txt"] = draw(
            st.sampled_from([b"small==1.0\n", b"six\nflask>=2\n", b"-r other.txt\n", b""])
        )
    try:
        files["pylock.toml"] = tomli_w.dumps(draw(lock)).encode("utf-8")
    except (TypeError, ValueError):
        files["pylock.toml"] = b"[broken"
    files[".python-version"] = draw(st.sampled_from([None, b"3.11\n", b"3.12\n"]))
    return files


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in ``tmp_path/run`` with every index variable pointing at a refused port."""
    run = tmp_path / "run"
    (run / "app").mkdir(parents=True)
    monkeypatch.chdir(run)
    for name in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "PIP_INDEX_URL"):
        monkeypatch.setenv(name, REFUSED)
    for name in ("UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_INDEX", "PIP_FIND_LINKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    monkeypatch.setenv("WHEELBARROW_STORE", str(run / "default-store"))
    return run


def checked(argv: list[str]) -> str:
    """Run the CLI; it must exit 0, or 1/2 with an ``error:`` line. Returns its stderr."""
    result = cli(*argv)
    assert "Traceback" not in result.err, result.err
    assert result.code in (0, 1, 2), (argv, result.code, result.err)
    if result.code != 0:
        # wheelbarrow's "error: ..." or argparse's "wheelbarrow lock: error: ...".
        assert re.search(r"^(\S.*: )?error: \S", result.err, re.MULTILINE), (argv, result.err)
    return result.err


class TestCommandLineFuzz:
    """main() through cli(...), in this process, with nothing reachable on the network."""

    @fuzz_settings(1000)
    @given(argv=command_line(), files=st.one_of(app_tree(), good_app()))
    def test_any_command_line_ends_in_a_result_or_an_error(
        self, offline: Path, argv: list[str], files: dict[str, bytes | None]
    ) -> None:
        """Random commands, options and app directories: exit 0, or 1/2 with an error line."""
        write_app(offline / "app", files)
        checked(argv)

    @fuzz_settings(500)
    @given(files=app_tree(), command=st.sampled_from(["lock", "build"]))
    def test_a_bad_app_input_is_named_by_the_command(
        self, offline: Path, files: dict[str, bytes | None], command: str
    ) -> None:
        """When reading the app fails, lock and build print that error, naming the file."""
        app = offline / "app"
        write_app(app, files)
        try:
            read_app(app, environ=os.environ)
        except WheelbarrowError as exc:
            expected: str | None = exc.message.splitlines()[0]
        else:
            expected = None
        err = checked([command, "app", "--store", "store", "-i", REFUSED])
        if expected is not None:
            assert f"error: {expected}" in err, (expected, err)

    @pytest.mark.parametrize(
        "argv",
        [
            ["build", "app", "--store", "app/requirements.txt"],
            ["install", "app", "--into", "env", "--store", "app/requirements.txt/x"],
            ["store", "du", "--store", "app/requirements.txt"],
        ],
    )
    def test_cases_that_crashed(self, offline: Path, argv: list[str]) -> None:
        """A store path that is (or lies under) a file is an error naming it, not a traceback."""
        (offline / "app" / "requirements.txt").write_text("small==1.0\n", encoding="utf-8")
        (offline / "app" / ".python-version").write_text("3.11\n", encoding="utf-8")
        err = checked(argv)
        assert f"error: {offline / argv[argv.index('--store') + 1]}: " in err, err
        assert "is not a directory, so this cannot be the store (--store)" in err
