"""``wheelbarrow build``: fill the wheelhouse for the lock and target."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from wheelbarrow._core.text import plural
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.cli import common, render
from wheelbarrow.lock.plan import Plan
from wheelbarrow.wheelhouse.assemble import (
    BuildReport,
    build_wheelhouse,
    manifest_of,
    previous_app_key,
    record_app_build,
)


def run(args: argparse.Namespace) -> int:
    """Lock if the inputs changed, then fetch only what the store lacks."""
    with contextlib.ExitStack() as held:  # the leases that keep `store gc` off what is used
        return _run(args, held)


def _run(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=True)
    app = plan.app
    if plan.locked_because:
        first = plan.locked_because.startswith("no ")
        reporter.message("info", f"locked{'' if first else ' again'}: {plan.locked_because}")
    from wheelbarrow.store.fetch import Fetcher

    fetcher = Fetcher.for_app(
        app,
        common.options(args).index,
        given_by="the command line",
        environ=os.environ,
        workers=args.jobs,
    )

    from wheelbarrow.wheelhouse.buildhost import source_builder

    build_sources = source_builder(
        plan,
        store=store,
        interpreter=lambda: common.interpreter_for(plan, args),
        index=plan_index(plan, args),
        fetcher=fetcher,
        reporter=reporter,
        environ=os.environ,
        uv=common.host().uv,
    )

    held.enter_context(store.use("wheelhouse", plan.key))
    if manifest_of(store, plan.key) is None:
        # What it fetches or builds is referenced by nothing until its manifest is written.
        held.enter_context(store.building())
    previous = previous_app_key(store, app.root)
    report = build_wheelhouse(
        plan.artefacts,
        plan.target,
        store=store,
        fetcher=fetcher,
        reporter=reporter,
        settings=plan.settings,
        previous_key=previous,
        build_sources=build_sources,
        lock_sha256=plan.lock.sha256,
    )
    if previous != report.key:
        record_app_build(store, app.root, report.key)
    # Also when up to date: a build killed after its rename left only its scratch. One
    # listing of tmp/, and locks taken only for entries there.
    store.clean_stale_tmp()
    if args.output:
        from wheelbarrow.wheelhouse.export import export_wheelhouse

        exported = export_wheelhouse(report.path, Path(args.output))
        reporter.message("info", f"exported {exported.wheels} wheel(s) to {exported.path}")
    if args.json:
        render.emit_json(report.as_json())
    elif not args.quiet:
        _print(report)
    return 0


def plan_index(plan: Plan, args: argparse.Namespace) -> IndexOptions:
    """The index options build requirements are locked with: the app's, then the command line's."""
    from wheelbarrow.wheelhouse.buildhost import build_index

    return build_index(plan, common.options(args).index)


def _print(report: BuildReport) -> None:
    packages = plural(report.packages, "package")
    if report.status == "up-to-date":
        render.out(f"Wheelhouse {report.key} is up to date ({packages}): nothing to do")
    else:
        if report.changes:
            render.out("Changed since the last build: " + ", ".join(str(c) for c in report.changes))
        render.out(
            f"Wheelhouse {report.key} built: {packages}, "
            f"{len(report.fetched)} fetched ({render.human_bytes(report.fetched_bytes)}), "
            f"{len(report.reused)} already in the store"
            + (f", {len(report.built)} from source" if report.built else "")
            + f", in {report.seconds:.1f}s"
        )
        for b in report.built:
            how = b.reason if b.reused else f"built ({b.reason}) in {b.seconds:.1f}s"
            render.out(f"  {b.source.name} {b.version}: {how}; {b.repair}")
    render.out(f"  {report.path}")
