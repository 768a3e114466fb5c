"""``wheelbarrow key``: the wheelhouse key, offline, for CI cache keys."""

from __future__ import annotations

import argparse

from wheelbarrow.cli import common, render


def run(args: argparse.Namespace) -> int:
    """Print the key ``build`` would fill, reading only local files (never locks, never fetches).

    A missing or stale lock is the plan's usual error: the key stands for a
    lock, so there is none to print until ``wheelbarrow lock`` or ``build`` ran.
    """
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=False)
    if args.json:
        render.emit_json({"version": 1, "key": plan.key, "target": plan.target.as_dict()})
    else:
        render.out(plan.key)
    return 0
