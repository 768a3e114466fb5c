"""``wheelbarrow pull``: fill the store with the app's wheelhouse from a remote store."""

from __future__ import annotations

import argparse
import contextlib

from wheelbarrow._core.errors import StoreError
from wheelbarrow.cli import common, render
from wheelbarrow.cli.push import require_remote, show
from wheelbarrow.store.remote import Transfer
from wheelbarrow.wheelhouse.appbuild import pull_app_wheelhouse


def run(args: argparse.Namespace) -> int:
    """Download the manifest of the app's current key and the blobs the store lacks."""
    remote = require_remote(args)
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=False)
    with contextlib.ExitStack() as held:
        report = pull_app_wheelhouse(
            plan, store=store, remote=remote, reporter=reporter, workers=args.jobs, held=held
        )
    if report is None:
        raise StoreError(
            f"{remote.url} has no wheelhouse {plan.key} (for {plan.lock.path})",
            hint=f"build and push it from a machine with the package index: "
            f"`wheelbarrow build {plan.app.root} --remote {remote.url} --push`",
        )
    done = Transfer(
        url=remote.url,
        key=report.key,
        moved=report.fetched,
        nbytes=report.fetched_bytes,
        present=len(report.reused),
    )
    show(done, "pulled", args)
    return 0
