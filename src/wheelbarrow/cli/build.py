"""``wheelbarrow build``: fill the wheelhouse for the lock and target."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.text import human_size, plural
from wheelbarrow.cli import common, render
from wheelbarrow.wheelhouse.appbuild import build_app_wheelhouse
from wheelbarrow.wheelhouse.assemble import BuildReport

if TYPE_CHECKING:
    from wheelbarrow.build.remotebuild import ClusterBuilds
    from wheelbarrow.store.remote import RemoteStore


def run(args: argparse.Namespace) -> int:
    """Lock if the inputs changed, then fetch only what the store lacks."""
    with contextlib.ExitStack() as held:  # the leases that keep `store gc` off what is used
        return _build(args, held)


def _build(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=True)
    remote, push = common.remote_and_push(args)  # the command line, the environment, settings
    if plan.locked_because:
        first = plan.locked_because.startswith("no ")
        reporter.message("info", f"locked{'' if first else ' again'}: {plan.locked_because}")
    done = build_app_wheelhouse(
        plan,
        store=store,
        index=common.options(args).index,
        given_by="the command line",
        jobs=args.jobs,
        interpreter=lambda: common.interpreter_for(plan, args),
        reporter=reporter,
        environ=os.environ,
        uv=common.host().uv,
        held=held,
        output=Path(args.output) if args.output else None,
        remote=remote,
        push=push,
        cluster=_cluster(args, remote),
    )
    if done.exported is not None:
        exported = done.exported
        reporter.message("info", f"exported {exported.wheels} wheel(s) to {exported.path}")
    if done.pushed is not None:
        pushed = done.pushed
        reporter.message("info", f"pushed {len(pushed.moved)} file(s) to {pushed.url}")
    if args.json:
        render.emit_json(done.report.as_json())
    elif not args.quiet:
        _print(done.report)
    return 0


def _cluster(args: argparse.Namespace, remote: RemoteStore | None) -> ClusterBuilds | None:
    """The Dask cluster of ``--cluster``, ``$WHEELBARROW_CLUSTER`` or the app's ``cluster``
    setting, which needs a remote store."""
    from wheelbarrow.share.cluster import CLUSTER_ENV_VAR, DaskCluster

    if args.cluster:
        address, asked = args.cluster, f"--cluster {args.cluster}"
    elif os.environ.get(CLUSTER_ENV_VAR):
        address = os.environ[CLUSTER_ENV_VAR]
        asked = f"{CLUSTER_ENV_VAR}={address}"
    else:
        own = common.settings(args)
        address, asked = own.cluster, f"cluster = {own.cluster!r} in {own.source}"
    if not address:
        return None
    if remote is None:
        raise InputError(
            f"{asked} needs a remote store: the workers take their inputs from it "
            "and put their wheels there",
            hint="add --remote s3://BUCKET/PREFIX (or remote = ... in the app's settings), "
            "one that the workers reach too",
        )
    return DaskCluster(address, remote_url=remote.url)


def _print(report: BuildReport) -> None:
    packages = plural(report.packages, "package")
    if report.status == "up-to-date":
        render.out(f"Wheelhouse {report.key} is up to date ({packages}): nothing to do")
    else:
        if report.changes:
            render.out("Changed since the last build: " + ", ".join(str(c) for c in report.changes))
        render.out(
            f"Wheelhouse {report.key} built: {packages}, "
            f"{len(report.fetched)} fetched ({human_size(report.fetched_bytes)}), "
            f"{len(report.reused)} already in the store"
            + (f", {len(report.built)} from source" if report.built else "")
            + f", in {report.seconds:.1f}s"
        )
        for b in report.built:
            how = b.reason if b.reused else f"built ({b.reason}) in {b.seconds:.1f}s"
            if b.worker is not None:
                how += f" on {b.worker}"
            render.out(f"  {b.source.name} {b.version}: {how}; {b.repair}")
    render.out(f"  {report.path}")
