"""``wheelbarrow build``: fill the wheelhouse for the lock and target."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from wheelbarrow.cli import common, render
from wheelbarrow.wheelhouse import BuildReport, build_wheelhouse, previous_app_key, record_app_build


def run(args: argparse.Namespace) -> int:
    """Lock if the inputs changed, then fetch only what the store lacks."""
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=True)
    app = plan.app
    if plan.locked_because:
        reporter.message("info", f"locked again: {plan.locked_because}")
    from wheelbarrow.fetch import Fetcher

    previous = previous_app_key(store, app.root)
    report = build_wheelhouse(
        plan.artefacts,
        plan.target,
        store=store,
        fetcher=Fetcher(workers=args.jobs),
        reporter=reporter,
        settings=plan.settings,
        previous_key=previous,
    )
    if previous != report.key:
        record_app_build(store, app.root, report.key)
    if report.status == "built":
        store.clean_stale_tmp()
    if args.output:
        _export(report.path, Path(args.output))
    if args.json:
        render.emit_json(report.as_json())
    elif not args.quiet:
        _print(report)
    return 0


def _print(report: BuildReport) -> None:
    if report.status == "up-to-date":
        render.out(
            f"Wheelhouse {report.key} is up to date ({report.packages} packages): nothing to do"
        )
    else:
        if report.changes:
            render.out("Changed since the last build: " + ", ".join(str(c) for c in report.changes))
        render.out(
            f"Wheelhouse {report.key} built: {report.packages} packages, "
            f"{len(report.fetched)} fetched ({render.human_bytes(report.fetched_bytes)}), "
            f"{len(report.reused)} from the store, in {report.seconds:.1f}s"
        )
    render.out(f"  {report.path}")


def _export(source: Path, dest: Path) -> None:
    """Copy the wheelhouse (wheels, simple/ index, manifest) to ``dest``, replacing it whole."""
    tmp = dest.with_name(f".{dest.name}.wheelbarrow-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp, copy_function=shutil.copyfile)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
