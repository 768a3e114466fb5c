"""``wheelbarrow verify``: check every blob, wheelhouse and environment of the store."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow verify``."""
    parser.add_argument(
        "--store",
        metavar="DIR",
        help="the store (default: $WHEELBARROW_STORE, else the user cache directory)",
    )
    parser.add_argument(
        "--repair", action="store_true", help="remove or rebuild what is bad, after reporting it"
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    """Not written yet (issue 8, section 2)."""
    raise NotImplementedError
