"""``wheelbarrow store du|gc``: what takes the space, and removing what nothing needs."""

from __future__ import annotations

import argparse
import time

from wheelbarrow._core.text import human_size
from wheelbarrow.cli import common, render
from wheelbarrow.store import du, gc


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
        if name == "gc":
            p.add_argument(
                "--older-than",
                metavar="AGE",
                help="also keep what was used within AGE (45s, 30m, 12h, 7d, 2w; 0 keeps "
                "nothing extra); the default, 7d, applies when neither limit is given",
            )
            p.add_argument(
                "--max-size",
                metavar="SIZE",
                help="also keep the most recently used entries while the store fits in SIZE "
                "(500M, 2G, 4GiB); with --older-than, what either keeps stays",
            )
            p.add_argument(
                "--dry-run", action="store_true", help="list what would go and what it would free"
            )


def run(args: argparse.Namespace) -> int:
    """``store du`` or ``store gc``."""
    store = common.store(args)
    if args.store_command == "du":
        usage = du.usage(store)
        if args.json:
            render.emit_json(usage.as_json())
        elif not args.quiet:
            _print_usage(usage)
        return 0
    older = gc.parse_duration(args.older_than) if args.older_than is not None else None
    size = gc.parse_size(args.max_size) if args.max_size is not None else None
    if older is None and size is None:
        older = gc.DEFAULT_OLDER_THAN
    now = time.time()
    report = gc.collect(
        store, gc.Policy(older_than=older, max_size=size), now=now, dry_run=args.dry_run
    )
    if args.json:
        render.emit_json(report.as_json())
    elif not args.quiet:
        _print_gc(report, now)
    return 0


def _print_usage(usage: du.Usage) -> None:
    render.out(f"Store {usage.store}: {human_size(usage.nbytes)} (hard links counted once)")
    for kind in usage.kinds:
        count = "" if kind.kind == "other" else f"{kind.entries:>7}"
        render.out(f"  {kind.kind:<22}{human_size(kind.nbytes):>10}{count}")
    if usage.apps:
        render.out("By app (what its last build keeps; shared files count in each app):")
        for app in usage.apps:
            state = "" if app.app_present else " (directory gone)"
            house = (
                f"wheelhouse {app.wheelhouse}"
                + ("" if app.wheelhouse_present else " (not in the store)")
                if app.wheelhouse
                else "no wheelhouse"
            )
            envs = len(app.environments)
            render.out(
                f"  {app.app}{state}: {house}, {envs} environment{'' if envs == 1 else 's'}, "
                f"{human_size(app.nbytes)}"
            )
    if usage.foreign:
        render.out("Not made by wheelbarrow (store gc never touches them):")
        for path, nbytes in usage.foreign:
            render.out(f"  {path.name}: {human_size(nbytes)}")


_NAMES = {
    "wheelhouse": ("wheelhouse", "wheelhouses"),
    "environment": ("environment", "environments"),
    "build-environment": ("build environment", "build environments"),
    "build": ("build cache entry", "build cache entries"),
    "buildlock": ("build-requirement lock", "build-requirement locks"),
    "layer": ("image layer", "image layers"),
    "blob": ("blob", "blobs"),
    "app": ("record of a removed app", "records of removed apps"),
    "scratch": ("stale scratch entry", "stale scratch entries"),
}


def _counted(kind: str, n: int) -> str:
    one, many = _NAMES.get(kind, (kind, kind))
    return f"{n} {one if n == 1 else many}"


def _ago(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


def _print_gc(report: gc.GcReport, now: float) -> None:
    counts: dict[str, int] = {}
    for r in report.removed:
        counts[r.kind] = counts.get(r.kind, 0) + 1
    what = ", ".join(_counted(k, n) for k, n in counts.items()) or "nothing"
    verb = "Would remove" if report.dry_run else "Removed"
    frees = "would free" if report.dry_run else "freed"
    render.out(
        f"{verb} {what}: {human_size(report.freed)} {frees}; the store "
        f"{'would hold' if report.dry_run else 'holds'} {human_size(report.size_after)} "
        f"({human_size(report.needed)} kept for the apps' last builds)"
    )
    for r in report.removed:
        used = f", last used {_ago(now - r.used)}" if r.used else ""
        render.out(f"  {_NAMES.get(r.kind, (r.kind,))[0]} {r.name}: {human_size(r.nbytes)}{used}")
    if not report.swept:
        render.out(
            "A build was running: blobs, build cache, build environments and image layers "
            "were left for the next gc"
        )
    for k in report.kept:
        if k.why != "a build is running":
            render.out(f"  kept {_NAMES.get(k.kind, (k.kind,))[0]} {k.name}: {k.why}")
