"""``wheelbarrow push``: upload the app's wheelhouse to a remote store."""

from __future__ import annotations

import argparse
import contextlib

from wheelbarrow._core.text import human_size, plural
from wheelbarrow.cli import common, render
from wheelbarrow.store.remote import RemoteStore, Transfer
from wheelbarrow.wheelhouse.appbuild import push_app_wheelhouse
from wheelbarrow.wheelhouse.assemble import require_wheelhouse


def run(args: argparse.Namespace) -> int:
    """Blobs the remote lacks first, the manifest last: a reader never sees half of it."""
    remote = require_remote(args)
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=False)
    with contextlib.ExitStack() as held:
        key, _ = store.hold(held, "wheelhouse", lambda: require_wheelhouse(store, plan))
        reporter.message("step", f"Pushing wheelhouse {key} to {remote.url}")
        done = push_app_wheelhouse(remote, store, key, workers=args.jobs)
    show(done, "pushed", args)
    return 0


def require_remote(args: argparse.Namespace) -> RemoteStore:
    """The remote from ``--remote``, ``$WHEELBARROW_REMOTE`` or the app's ``remote`` setting,
    which must be given."""
    from wheelbarrow._core.errors import InputError

    remote = common.remote(args)
    if remote is None:
        raise InputError(
            f"`wheelbarrow {args.command}` needs a remote store",
            hint="give --remote s3://BUCKET/PREFIX, set WHEELBARROW_REMOTE, or write "
            'remote = "s3://BUCKET/PREFIX" in the app\'s settings ([tool.wheelbarrow])',
        )
    return remote


def show(done: Transfer, verb: str, args: argparse.Namespace) -> None:
    """Render a transfer as text or JSON."""
    if args.json:
        render.emit_json(done.as_json())
    elif not args.quiet:
        render.out(
            f"Wheelhouse {done.key} {verb}: {plural(len(done.moved), 'file')} "
            f"({human_size(done.nbytes)}), {done.present} already there"
            + (f", {plural(done.builds, 'source build record')}" if done.builds else "")
            + f"; {done.url}"
        )
