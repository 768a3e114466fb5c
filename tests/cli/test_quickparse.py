"""The warm install's command line read without argparse gives what argparse gives."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wheelbarrow.cli import build_parser, quickparse


def argparse_reads(argv: list[str]) -> dict[str, object] | None:
    """What argparse makes of ``argv`` (None where it refuses it)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return vars(build_parser("install").parse_args(argv))
    except SystemExit:
        return None


PLAIN = [
    ["install", "--into", "env"],
    ["install", "app", "--into", "env"],
    ["install", "--into=env", "app", "-q"],
    ["install", "app dir", "--into", "/tmp/x y", "--quiet", "--json"],
    ["install", "--store", "s", "--python", "3.12", "--platform", "manylinux_2_28_x86_64", "a"],
    ["install", "a", "--into", "e", "--group", "g1", "--group=g2", "--extra", "x", "--dev"],
    ["install", "a", "--into", "e", "--link-mode", "hardlink", "--python-executable", "/py"],
    ["install", "a", "--into", "first", "--into", "last", "--into="],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_a_plain_install_line_reads_as_argparse_reads_it(argv: list[str]) -> None:
    if "--into" not in " ".join(argv):
        argv = [*argv, "--into", "env"]
    quick = quickparse.parse(argv)
    assert quick is not None
    assert vars(quick) == argparse_reads(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["install", "app"],  # --into is required: argparse says so
        ["install", "--int", "env"],  # an abbreviation
        ["install", "--into", "-x"],  # a value argparse would take for an option
        ["install", "--into"],
        ["install", "--into", "e", "--link-mode", "symlink"],  # not a choice
        ["install", "a", "b", "--into", "e"],  # two apps
        ["install", "--into", "e", "-qq"],
        ["install", "--into", "e", "--json=yes"],
        ["install", "--into", "e", "--", "app"],
        ["install", "--into", "e", "--help"],
        ["install", "--into", "e", "--index-url", "https://example.invalid/simple"],
        ["build", "--into", "e"],
        [],
    ],
    ids=repr,
)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert quickparse.parse(argv) is None


def test_its_defaults_are_install_s_own() -> None:
    """A new install option fails here until quickparse knows it."""
    assert argparse_reads(["install", "--into", "e"]) == {
        **quickparse.INSTALL_DEFAULTS,
        "into": "e",
    }


WORDS = [
    *("app", "a b", "", "-", "-1", "--", "-x", "3.12", "shared", "hardlink", "copy", "bogus"),
    *("--into", "--into=", "--into=d", "--into=-d", "--int", "--store", "--store=s"),
    *("-q", "-qq", "--quiet", "--json", "--json=1", "--dev", "--group", "--group=g"),
    *("--extra", "--link-mode", "--link-mode=copy", "--link-mode=x", "--python", "--platform"),
    *("--python-executable", "--help", "-h", "--version", "--no-index", "-i"),
]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=8), st.integers(0, 8), st.booleans())
def test_whatever_it_reads_argparse_reads_the_same(words: list[str], at: int, into: bool) -> None:
    if into:  # most lines name --into; without it, argparse refuses every one
        words[at:at] = ["--into", "d"]
    argv = ["install", *words]
    quick = quickparse.parse(argv)
    if quick is not None:
        assert vars(quick) == argparse_reads(argv)


def test_the_namespace_it_gives_is_read_like_argparse_s() -> None:
    quick = quickparse.parse(["install", "--into", "e"])
    assert quick is not None
    assert not isinstance(quick, argparse.Namespace)  # not imported for it
    assert quick.link_mode == "shared"
    assert quick.group == []
