"""``wheelbarrow verify``: check every blob, wheelhouse and environment of the store."""

from __future__ import annotations

import argparse
import sys


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
    """Exit 0 when the store is clean (or was repaired clean), 1 when problems remain."""
    from wheelbarrow._core.text import human_size
    from wheelbarrow.cli import common, render
    from wheelbarrow.environment.verify import verify_store

    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    report = verify_store(store, reporter, repair=args.repair)
    if args.json:
        render.emit_json(report.as_json())
        return 1 if report.remaining else 0
    width = max((len(p.kind) for p in report.problems), default=0)
    for p in report.problems:
        render.out(f"{p.kind:<{width}}  {p.path}: {p.problem}")
    for removal in report.removed:
        render.out(f"removed {removal.path} ({removal.why})")
    remaining = report.remaining
    if not args.quiet or remaining:
        checked = ", ".join(
            _count(report.counts[k], noun)
            for k, noun in (
                ("blobs", "blob"),
                ("wheelhouses", "wheelhouse"),
                ("environments", "environment"),
            )
        )
        if not report.problems:
            verdict = "no problems"
        elif not remaining:
            verdict = f"{_problems(len(report.problems))}, all repaired"
        else:
            verdict = _problems(len(remaining))
        render.out(
            f"Checked {checked} ({human_size(report.hashed_bytes)} hashed) "
            f"in {report.seconds:.2f}s: {verdict}"
        )
    if remaining:
        sys.stderr.write(
            "hint: `wheelbarrow verify --repair` removes what is bad; "
            "the next build and install make it again\n"
            if not args.repair
            else "hint: these could not be removed: check the store's permissions\n"
        )
        return 1
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _problems(n: int) -> str:
    return _count(n, "problem")
