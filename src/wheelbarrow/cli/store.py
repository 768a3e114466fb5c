"""``wheelbarrow store du|gc``: what takes the space, and removing what nothing needs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommands of ``wheelbarrow store``."""
    sub = parser.add_subparsers(dest="store_command", required=True, metavar="SUBCOMMAND")
    for name, text in (
        ("du", "what takes the space, by kind and by app"),
        ("gc", "remove what the apps' last builds and the limits do not need"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--store",
            metavar="DIR",
            help="the store (default: $WHEELBARROW_STORE, else the user cache directory)",
        )
        p.add_argument("--json", action="store_true", help="print a machine-readable report")
        p.add_argument("-q", "--quiet", action="store_true", help="print only errors")


def run(args: argparse.Namespace) -> int:
    """Not written yet (issue 8, section 7)."""
    raise NotImplementedError
