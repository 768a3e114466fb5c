"""An app's wheelhouse as ``wheelbarrow build`` makes it: leased, built here, recorded, exported."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner, run_subprocess
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.lock.plan import Plan
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse.assemble import (
    MANIFEST,
    BuildReport,
    build_wheelhouse,
    manifest_of,
    previous_app_key,
    record_app_build,
)

if TYPE_CHECKING:
    from wheelbarrow.build.remotebuild import ClusterBuilds
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.lock.lockfile import Artefact
    from wheelbarrow.store.fetch import Fetched, Fetches
    from wheelbarrow.store.remote import RemoteStore, Transfer
    from wheelbarrow.wheelhouse.export import ExportReport

__all__ = ["AppBuild", "build_app_wheelhouse", "pull_app_wheelhouse", "push_app_wheelhouse"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppBuild:
    """The build's report, and the exported copy when one was asked for."""

    report: BuildReport
    exported: ExportReport | None = None
    pushed: Transfer | None = None
    pulled: bool = False  # the wheelhouse came whole from the remote store


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
    remote: RemoteStore | None = None,
    push: bool = False,
    cluster: ClusterBuilds | None = None,
    runner: Runner = run_subprocess,
    which: Callable[[str], str | None] = shutil.which,
) -> AppBuild:
    """Fetch only what the store lacks, build the sources on this machine, record the build.

    ``index`` is what the user gave (named by ``given_by``) over the app's own
    options. The leases that keep ``store gc`` off what is used go on ``held``.
    ``interpreter`` is asked only when something is built from source. A ``remote``
    is asked for the wheelhouse before anything else (a hit touches no package index);
    with ``push`` the wheelhouse is uploaded to it afterwards. With a ``cluster`` the
    source builds run on its workers, sharing their inputs and wheels through ``remote``.
    ``runner`` and ``which`` are what source builds run programs with and find them by.
    """
    pulled = None
    if remote is not None and manifest_of(store, plan.key) is None:
        pulled = pull_app_wheelhouse(
            plan, store=store, remote=remote, reporter=reporter, workers=jobs, held=held
        )
    if pulled is not None:
        report = pulled
    else:
        report = _build_here(
            plan,
            store=store,
            index=index,
            given_by=given_by,
            jobs=jobs,
            interpreter=interpreter,
            reporter=reporter,
            environ=environ,
            uv=uv,
            held=held,
            remote=remote,
            push=push,
            cluster=cluster,
            runner=runner,
            which=which,
        )
    pushed = None
    if push and remote is not None:
        reporter.message("step", f"Pushing wheelhouse {report.key} to {remote.url}")
        pushed = push_app_wheelhouse(remote, store, report.key, workers=jobs)
    if output is None:
        return AppBuild(report=report, pushed=pushed, pulled=pulled is not None)
    from wheelbarrow.wheelhouse import sbom
    from wheelbarrow.wheelhouse.export import export_wheelhouse

    bill = sbom.cyclonedx_json(
        store,
        report.key,
        subject="wheelhouse",
        # The target's Python, as exactly as the build knows it.
        runtime=sbom.Runtime("cpython", str(plan.target.python)),
        lock=plan.lock,
        name=plan.app.root.resolve().name,
        epoch=sbom.source_date_epoch(environ),
    )
    exported = export_wheelhouse(report.path, output, sbom=bill)
    return AppBuild(report=report, exported=exported, pushed=pushed, pulled=pulled is not None)


def _build_here(
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
    remote: RemoteStore | None = None,
    push: bool = False,
    cluster: ClusterBuilds | None = None,
    runner: Runner = run_subprocess,
    which: Callable[[str], str | None] = shutil.which,
) -> BuildReport:
    """Fetch and build on this machine (what ``build`` does without a remote's hit); a source
    build is looked up in ``remote`` by its build key first, and pushed there with ``push``."""
    from wheelbarrow.store.fetch import Fetcher
    from wheelbarrow.wheelhouse.buildhost import build_index, source_builder

    fetcher: Fetches = Fetcher.for_app(
        plan.app, index, given_by=given_by, environ=environ, workers=jobs
    )
    build_sources = source_builder(
        plan,
        store=store,
        interpreter=interpreter,
        index=build_index(plan, index),
        fetcher=fetcher,
        reporter=reporter,
        environ=environ,
        uv=uv,
        remote=remote,
        push=push,
        cluster=cluster,
        runner=runner,
        which=which,
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
        # A source whose build the remote has is never downloaded: the build fetches it.
        fetcher=fetcher if remote is None else _WheelsOnly(fetcher),
        reporter=reporter,
        settings=plan.settings,
        previous_key=previous,
        build_sources=build_sources,
        lock_sha256=plan.lock.sha256,
    )
    if remote is not None:  # what was left to the source builds: fetched by them, or not needed
        kept = {a.filename: a for a in plan.artefacts if store.has(a.sha256)}
        fetched = tuple(f for f in report.fetched if f in kept)
        nbytes = sum(store.blob(kept[f].sha256).stat().st_size for f in fetched)
        report = replace(report, fetched=fetched, fetched_bytes=nbytes)
    if previous != report.key:
        record_app_build(store, plan.app.root, report.key)
    # Also when up to date: a build killed after its rename left only its scratch. One
    # listing of tmp/, and locks taken only for entries there.
    store.clean_stale_tmp()
    return report


@dataclass(frozen=True, slots=True)
class _WheelsOnly:
    """A fetcher of the wheels alone: each source is left to its build, which fetches it
    only when it is built here."""

    fetcher: Fetches

    def fetch(
        self, artefacts: Sequence[Artefact], store: Store, reporter: Reporter
    ) -> Sequence[Fetched]:
        wheels = [a for a in artefacts if a.kind == "wheel"]
        return self.fetcher.fetch(wheels, store, reporter) if wheels else []


def pull_app_wheelhouse(
    plan: Plan,
    *,
    store: Store,
    remote: RemoteStore,
    reporter: Reporter,
    workers: int,
    held: contextlib.ExitStack,
) -> BuildReport | None:
    """The plan's wheelhouse from ``remote`` when it has it (None when not): the blobs this
    store lacks, downloaded in parallel and hash-checked, then laid out here. No package
    index is asked."""
    from wheelbarrow.store.remote import pull_blobs, remote_manifest
    from wheelbarrow.wheelhouse.assemble import _lay_out_wheelhouse

    start = time.monotonic()
    manifest = remote_manifest(remote, plan.key)
    if manifest is None:
        return None
    held.enter_context(store.use("wheelhouse", plan.key))
    moved = None
    # Its blobs are named by nothing here until the manifest is written: gc stays off them.
    with store.building(), store.lock(f"wheelhouse-{plan.key}"):
        if manifest_of(store, plan.key) is None:
            reporter.message("step", f"Fetching wheelhouse {plan.key} from {remote.url}")
            moved = pull_blobs(remote, store, manifest, workers=workers)
            wheels, lock_sha256 = manifest["wheels"], manifest.get("lock-sha256")
            _lay_out_wheelhouse(wheels, plan.target, plan.key, store, lock_sha256)
    if previous_app_key(store, plan.app.root) != plan.key:
        record_app_build(store, plan.app.root, plan.key)
    fetched = moved.moved if moved else ()
    return BuildReport(
        key=plan.key,
        path=store.wheelhouse(plan.key),
        status="built" if moved is not None else "up-to-date",
        target=plan.target,
        packages=len(plan.artefacts),
        fetched=fetched,
        fetched_bytes=moved.nbytes if moved else 0,
        reused=tuple(w["filename"] for w in manifest["wheels"] if w["filename"] not in fetched),
        seconds=time.monotonic() - start,
    )


def push_app_wheelhouse(remote: RemoteStore, store: Store, key: str, *, workers: int) -> Transfer:
    """Upload the wheelhouse ``key`` (its blobs, then its manifest), and the records of the
    source builds made here whose wheels it holds, so other machines find them by build key."""
    import json

    from wheelbarrow.build.buildcache import push_builds_of
    from wheelbarrow.store.remote import push_wheelhouse

    manifest = store.wheelhouse(key) / MANIFEST
    pushed = push_wheelhouse(remote, store, key, manifest, workers=workers)
    wheels = json.loads(manifest.read_text(encoding="utf-8")).get("wheels", [])
    builds = push_builds_of(remote, store, (str(w["sha256"]) for w in wheels))
    return replace(pushed, builds=builds)
