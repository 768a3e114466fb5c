"""``wheelbarrow build``: fill the wheelhouse for the lock and target."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow.cli import common, noop

# The build machinery, the reporter and the cluster client are imported where they are
# used: an unchanged app's build reads only its record in the store (cli/noop.py).
if TYPE_CHECKING:
    from wheelbarrow.build.remotebuild import ClusterBuilds
    from wheelbarrow.store.remote import RemoteStore
    from wheelbarrow.wheelhouse.assemble import BuildReport

CLUSTER_ENV_VAR = "WHEELBARROW_CLUSTER"  # share.cluster's, which imports the cluster client


def run(args: argparse.Namespace) -> int:
    """Lock if the inputs changed, then fetch only what the store lacks."""
    root, _ = common.store_root(args)
    if noop.answer(args, root, lambda found: _say_up_to_date(args, found)):
        return 0
    with contextlib.ExitStack() as held:  # the leases that keep `store gc` off what is used
        return _build(args, held)


def _build(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    from wheelbarrow.cli import render
    from wheelbarrow.wheelhouse.appbuild import build_app_wheelhouse

    store = common.store(args)
    reporter = common.LazyReporter(
        lambda: render.make_reporter(quiet=args.quiet, json_mode=args.json)
    )
    # What the plan reads, for the next build of the unchanged app (cli/noop.py).
    with noop.watching(os.environ) as watch:
        the_host = common.host(watch.environ)
        plan = common.plan(args, reporter, may_lock=True, the_host=the_host, environ=watch.environ)
    inputs = noop.inputs_of(watch, args)
    planned_quietly = reporter.calls == 0 and not the_host.found and not plan.sources
    remote, push = common.remote_and_push(args)  # the command line, the environment, settings
    if plan.locked_because:
        first = plan.locked_because.startswith("no ")
        reporter.message("info", f"locked{'' if first else ' again'}: {plan.locked_because}")
    cluster = _cluster(args, remote)
    done = build_app_wheelhouse(
        plan,
        store=store,
        index=common.options(args).index,
        given_by="the command line",
        jobs=args.jobs,
        interpreter=lambda: common.interpreter_for(plan, args),
        reporter=reporter,
        environ=os.environ,
        uv=the_host.uv,
        held=held,
        output=Path(args.output) if args.output else None,
        remote=remote,
        push=push,
        cluster=cluster,
    )
    if done.exported is not None:
        exported = done.exported
        reporter.message("info", f"exported {exported.wheels} wheel(s) to {exported.path}")
    if done.pushed is not None:
        pushed = done.pushed
        reporter.message("info", f"pushed {len(pushed.moved)} file(s) to {pushed.url}")
    local = remote is None and not push and cluster is None and args.output is None
    if inputs is not None and planned_quietly and not plan.locked_because and local:
        noop.remember(
            store.app_state(plan.app.root),
            inputs,
            key=done.report.key,
            packages=done.report.packages,
            target=plan.target.as_dict(),
        )
    if args.json:
        render.emit_json(done.report.as_json())
    elif not args.quiet:
        _print(done.report)
    return 0


def _cluster(args: argparse.Namespace, remote: RemoteStore | None) -> ClusterBuilds | None:
    """The Dask cluster of ``--cluster``, ``$WHEELBARROW_CLUSTER`` or the app's ``cluster``
    setting, which needs a remote store."""
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
    from wheelbarrow._core.errors import InputError
    from wheelbarrow.share.cluster import DaskCluster

    if remote is None:
        raise InputError(
            f"{asked} needs a remote store: the workers take their inputs from it "
            "and put their wheels there",
            hint="add --remote s3://BUCKET/PREFIX (or remote = ... in the app's settings), "
            "one that the workers reach too",
        )
    return DaskCluster(address, remote_url=remote.url)


def _say_up_to_date(args: argparse.Namespace, found: noop.Answer) -> None:
    """The answer of an unchanged app's build, as :func:`_print` and ``--json`` give it."""
    if args.json:
        from wheelbarrow.cli import render

        render.emit_json(
            {  # BuildReport.as_json() of an up-to-date build
                "version": 1,
                "key": found.key,
                "wheelhouse": str(found.wheelhouse),
                "status": "up-to-date",
                "target": found.target,
                "packages": found.packages,
                "changes": [],
                "fetched": [],
                "fetched_bytes": 0,
                "reused": [],
                "built": [],
                "seconds": round(found.seconds, 3),
            }
        )
    elif not args.quiet:
        import sys

        from wheelbarrow._core.redact import redact

        # As render.out (masked, flushed), which would import the renderer for two lines.
        lines = (_up_to_date(found.key, found.packages), f"  {found.wheelhouse}")
        sys.stdout.write("".join(redact(line) + "\n" for line in lines))
        sys.stdout.flush()


def _up_to_date(key: str, packages: int) -> str:
    from wheelbarrow._core.text import plural

    return f"Wheelhouse {key} is up to date ({plural(packages, 'package')}): nothing to do"


def _print(report: BuildReport) -> None:
    from wheelbarrow._core.text import human_size, plural
    from wheelbarrow.cli import render

    packages = plural(report.packages, "package")
    if report.status == "up-to-date":
        render.out(_up_to_date(report.key, report.packages))
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
