"""``wheelbarrow lock``: resolve the app's requirements for a target into pylock.toml."""

from __future__ import annotations

import argparse

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.text import plural
from wheelbarrow.cli import common, render


def run(args: argparse.Namespace) -> int:
    """Lock, always asking the resolver (an existing lock only gives preferences)."""
    app = common.app(args)
    if app.requirements is None and not app.locked_by_manager:
        raise InputError(
            f"{app.root}: has a {app.lock_path.name} but no requirements to lock",
            hint="add requirements.txt or [project] dependencies, or use the lock as it is",
        )
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=True, force_lock=True, the_app=app)
    if args.json:
        render.emit_json(
            {
                "version": 1,
                "lock": str(plan.lock.path),
                "target": plan.target.as_dict(),
                "packages": [
                    {"name": a.name, "version": a.version, "wheel": a.filename}
                    for a in plan.artefacts
                ],
                "key": plan.key,
            }
        )
    elif not args.quiet:
        render.out(
            f"Locked {plural(len(plan.artefacts), 'package')} for {plan.target} "
            f"into {plan.lock.path}"
        )
    return 0
