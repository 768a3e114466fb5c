"""The app's environment, as both buildpacks make it: plan, wheelhouse, store environment."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from packaging.tags import platform_tags

from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import plural
from wheelbarrow.app.directory import App
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.target import PythonVersion, host_platform
from wheelbarrow.environment.envs import ensure_store_env, env_key, manifest_wheels
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.lock.options import Host, Options
from wheelbarrow.lock.plan import make_plan
from wheelbarrow.ship.heroku.output import HerokuReporter
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse.assemble import (
    BuildReport,
    build_wheelhouse,
    manifest_of,
    previous_app_key,
    record_app_build,
)

# Config vars that steer the build itself; everything else in ENV_DIR is the app's.
INDEX_VARS = ("WHEELBARROW_INDEX_URL", "WHEELBARROW_EXTRA_INDEX_URL", "WHEELBARROW_FIND_LINKS")


def prepare_environment(
    app: App,
    version: PythonVersion,
    interpreter: Interpreter,
    *,
    store: Store,
    config: Mapping[str, str],
    environ: Mapping[str, str],
    runner: Runner,
    uv: str,
    out: HerokuReporter,
    held: contextlib.ExitStack,
    which: Callable[[str], str | None] = shutil.which,
) -> Path:
    """Lock if needed, fill the wheelhouse, make the environment: all in ``store``, reused.

    Shared by the classic buildpack and the Cloud Native one. Packages without
    a wheel for the target (sdists, local paths, git URLs) are built from
    source as ``wheelbarrow build`` builds them, with ``interpreter``.
    Returns the store's environment, to be cloned where the slug or layer
    wants it; the leases that keep ``store gc`` off the wheelhouse and
    environment go on ``held``, for the caller to keep until the clone is made.
    """
    report = _fill_wheelhouse(
        app,
        version,
        interpreter,
        store=store,
        config=config,
        environ=environ,
        runner=runner,
        uv=uv,
        out=out,
        held=held,
        which=which,
    )
    record_app_build(store, app.root, report.key)
    _describe_wheelhouse(report, out)
    out.step("Installing the environment")
    return _store_environment(report, interpreter, store=store, runner=runner, out=out, held=held)


def _fill_wheelhouse(
    app: App,
    version: PythonVersion,
    interpreter: Interpreter,
    *,
    store: Store,
    config: Mapping[str, str],
    environ: Mapping[str, str],
    runner: Runner,
    uv: str,
    out: HerokuReporter,
    held: contextlib.ExitStack,
    which: Callable[[str], str | None],
) -> BuildReport:
    """Plan (locking if needed) and fill the app's wheelhouse, leased on ``held``."""
    from wheelbarrow.ship.heroku.ci import ci_groups
    from wheelbarrow.store.fetch import Fetcher
    from wheelbarrow.wheelhouse.buildhost import build_index, source_builder

    host = buildpack_host(version, environ=environ, config=config, uv=uv)
    options = Options(python=str(version), index=index_options(config), groups=ci_groups(environ))
    out.step("Building the wheelhouse")
    plan = make_plan(app, options, host, runner=runner, reporter=out, may_lock=True)
    if plan.locked_because:
        out.detail(f"locked: {plan.locked_because}")
    held.enter_context(store.use("wheelhouse", plan.key))
    if manifest_of(store, plan.key) is None:
        # What it fetches or builds is referenced by nothing until the manifest is written.
        held.enter_context(store.building())
    previous = previous_app_key(store, app.root)
    fetcher = Fetcher.for_app(
        app, options.index, given_by="the WHEELBARROW_* config vars", environ=host.environ
    )
    return build_wheelhouse(
        plan.artefacts,
        plan.target,
        store=store,
        fetcher=fetcher,
        reporter=out,
        settings=plan.settings,
        previous_key=previous,
        build_sources=source_builder(
            plan,
            store=store,
            interpreter=lambda: interpreter,
            index=build_index(plan, options.index),
            fetcher=fetcher,
            reporter=out,
            environ=host.environ,
            uv=uv,
            runner=runner,
            which=which,
        ),
        lock_sha256=plan.lock.sha256,
    )


def _describe_wheelhouse(report: BuildReport, out: HerokuReporter) -> None:
    """One line: the cached wheelhouse, or what was fetched, reused and built for it."""
    if report.status == "up-to-date":
        out.detail(
            f"wheelhouse {report.key} is in the cache ({plural(report.packages, 'package')}): "
            "nothing to download"
        )
        return
    changes = ", ".join(str(c) for c in report.changes)
    built = sum(1 for b in report.built if not b.reused)
    cached = len(report.built) - built
    out.detail(
        f"wheelhouse {report.key}: {len(report.fetched)} fetched, "
        f"{len(report.reused)} from the cache"
        + (f", {built} built from source" if built else "")
        + (f", {cached} from the build cache" if cached else "")
        + (f"; changed: {changes}" if changes else "")
    )


def _store_environment(
    report: BuildReport,
    interpreter: Interpreter,
    *,
    store: Store,
    runner: Runner,
    out: HerokuReporter,
    held: contextlib.ExitStack,
) -> Path:
    """The store's environment of the wheelhouse, made unless a sound one is there; leased."""
    key = env_key(report.key, interpreter)
    held.enter_context(store.use("env", key))
    manifest = json.loads((report.path / "wheelhouse.json").read_text(encoding="utf-8"))
    # Checked against its seal even when cached: an environment edited in place is rebuilt.
    made = ensure_store_env(
        manifest_wheels(report.path, manifest),
        key=key,
        wheelhouse_key=report.key,
        interpreter=interpreter,
        store=store,
        runner=runner,
        reporter=out,
    )
    if not made.made:
        out.detail("reusing the environment from the cache: the requirements did not change")
    return made.path


def buildpack_host(
    version: PythonVersion, *, environ: Mapping[str, str], config: Mapping[str, str], uv: str
) -> Host:
    """This machine as the buildpacks see it: the app's Python, the config vars tools need."""
    from wheelbarrow.wheelhouse.buildhost import toolchain

    return Host(
        python=version,
        platform=host_platform(list(platform_tags())),
        uv=uv,
        environ={**environ, **_tool_config(config)},
        toolchain=toolchain,
    )


def index_options(config: Mapping[str, str]) -> IndexOptions:
    """A remote index or wheelhouse from config vars, so the platform compiles nothing."""
    return IndexOptions(
        index_url=config.get("WHEELBARROW_INDEX_URL") or None,
        extra_index_urls=tuple(config.get("WHEELBARROW_EXTRA_INDEX_URL", "").split()),
        find_links=tuple(config.get("WHEELBARROW_FIND_LINKS", "").split()),
    )


def _tool_config(config: Mapping[str, str]) -> dict[str, str]:
    """The config vars the resolver and downloads need (credentials), and no others."""
    wanted = (
        "UV_",
        "PIP_",
        "NETRC",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    )
    return {k: v for k, v in config.items() if k.startswith(wanted) or k in INDEX_VARS}
