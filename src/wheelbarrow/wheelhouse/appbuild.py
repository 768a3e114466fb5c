"""An app's wheelhouse as ``wheelbarrow build`` makes it: leased, built here, recorded, exported."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.report import Reporter
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.lock.plan import Plan
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse.assemble import (
    BuildReport,
    build_wheelhouse,
    manifest_of,
    previous_app_key,
    record_app_build,
)

if TYPE_CHECKING:
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.wheelhouse.export import ExportReport

__all__ = ["AppBuild", "build_app_wheelhouse"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppBuild:
    """The build's report, and the exported copy when one was asked for."""

    report: BuildReport
    exported: ExportReport | None = None


def build_app_wheelhouse(
    plan: Plan,
    *,
    store: Store,
    index: IndexOptions,
    given_by: str,
    jobs: int,
    interpreter: Callable[[], Interpreter],
    reporter: Reporter,
    environ: Mapping[str, str],
    uv: str,
    held: contextlib.ExitStack,
    output: Path | None = None,
) -> AppBuild:
    """Fetch only what the store lacks, build the sources on this machine, record the build.

    ``index`` is what the user gave (named by ``given_by``) over the app's own
    options. The leases that keep ``store gc`` off what is used go on ``held``.
    ``interpreter`` is asked only when something is built from source.
    """
    from wheelbarrow.store.fetch import Fetcher
    from wheelbarrow.wheelhouse.buildhost import build_index, source_builder

    fetcher = Fetcher.for_app(plan.app, index, given_by=given_by, environ=environ, workers=jobs)
    build_sources = source_builder(
        plan,
        store=store,
        interpreter=interpreter,
        index=build_index(plan, index),
        fetcher=fetcher,
        reporter=reporter,
        environ=environ,
        uv=uv,
    )
    held.enter_context(store.use("wheelhouse", plan.key))
    if manifest_of(store, plan.key) is None:
        # What it fetches or builds is referenced by nothing until its manifest is written.
        held.enter_context(store.building())
    previous = previous_app_key(store, plan.app.root)
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
        record_app_build(store, plan.app.root, report.key)
    # Also when up to date: a build killed after its rename left only its scratch. One
    # listing of tmp/, and locks taken only for entries there.
    store.clean_stale_tmp()
    if output is None:
        return AppBuild(report=report)
    from wheelbarrow.wheelhouse.export import export_wheelhouse

    return AppBuild(report=report, exported=export_wheelhouse(report.path, output))
