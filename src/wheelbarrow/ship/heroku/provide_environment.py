"""The app's environment, as both buildpacks make it: plan, wheelhouse, store environment."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.tags import platform_tags

from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import human_size, plural
from wheelbarrow.app.directory import App
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.target import PythonVersion, host_platform
from wheelbarrow.environment.envs import ensure_store_env, env_key, manifest_wheels
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.lock.options import Host, Options
from wheelbarrow.lock.plan import make_plan
from wheelbarrow.ship.heroku.output import HerokuReporter
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse.appbuild import AppBuild, build_app_wheelhouse

if TYPE_CHECKING:
    from wheelbarrow.app.config import BuildConfig
    from wheelbarrow.store.remote import RemoteStore
    from wheelbarrow.wheelhouse.assemble import BuildReport

# Config vars that steer the build itself; everything else in ENV_DIR is the app's.
INDEX_VARS = ("WHEELBARROW_INDEX_URL", "WHEELBARROW_EXTRA_INDEX_URL", "WHEELBARROW_FIND_LINKS")
# The config vars the remote store's client reads: S3's keys, region and endpoint; a
# registry's auth file.
_REMOTE_CLIENT_VARS = ("AWS_", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG")


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
    done = _fill_wheelhouse(
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
    _describe_wheelhouse(done, out)
    out.step("Installing the environment")
    return _store_environment(
        done.report, interpreter, store=store, runner=runner, out=out, held=held
    )


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
) -> AppBuild:
    """Plan (locking if needed) and fill the app's wheelhouse as ``wheelbarrow build`` does,
    leased on ``held``: from the remote store of the config vars or the app's settings first
    (touching no package index when it has the wheelhouse), pushed there when asked."""
    from wheelbarrow.ship.heroku.ci import ci_groups
    from wheelbarrow.store.fetch import DEFAULT_WORKERS

    host = buildpack_host(version, environ=environ, config=config, uv=uv)
    options = Options(python=str(version), index=index_options(config), groups=ci_groups(environ))
    out.step("Building the wheelhouse")
    plan = make_plan(app, options, host, runner=runner, reporter=out, may_lock=True)
    if plan.locked_because:
        out.detail(f"locked: {plan.locked_because}")
    remote, push = remote_and_push(plan.config, config=config, environ=environ)
    return build_app_wheelhouse(
        plan,
        store=store,
        index=options.index,
        given_by="the WHEELBARROW_* config vars",
        jobs=DEFAULT_WORKERS,
        interpreter=lambda: interpreter,
        reporter=out,
        environ=host.environ,
        uv=uv,
        held=held,
        remote=remote,
        push=push,
        runner=runner,
        which=which,
    )


def remote_and_push(
    settings: BuildConfig, *, config: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[RemoteStore | None, bool]:
    """The remote store of the config var ``WHEELBARROW_REMOTE``, else of the app's ``remote``
    setting, and whether to push to it: ``WHEELBARROW_PUSH`` (1 or 0), else the ``push``
    setting. Its client reads its credentials from the config vars too."""
    from wheelbarrow._core.errors import InputError
    from wheelbarrow.app.config import PUSH_ENV_VAR, push_from_environ
    from wheelbarrow.share.remotes import remote_for
    from wheelbarrow.store.remote import REMOTE_ENV_VAR

    url = config.get(REMOTE_ENV_VAR, "").strip() or settings.remote
    client = {k: v for k, v in config.items() if k.startswith(_REMOTE_CLIENT_VARS)}
    remote = remote_for(url, {**environ, **client}) if url else None
    push = push_from_environ(config)
    if push is None:
        push, asked = settings.push, f"push = true in {settings.source}"
    else:
        asked = f"the config var {PUSH_ENV_VAR}={config[PUSH_ENV_VAR]}"
    if push and remote is None:
        raise InputError(
            f"{asked} needs a remote store",
            hint=f"set the config var {REMOTE_ENV_VAR} to s3://BUCKET/PREFIX or "
            "oci://REGISTRY/REPOSITORY",
        )
    return remote, push


def _describe_wheelhouse(done: AppBuild, out: HerokuReporter) -> None:
    """One line: the cached wheelhouse, or what was pulled, fetched, reused and built for it;
    then what was pushed."""
    out.detail(_wheelhouse_line(done))
    if done.pushed is not None:
        pushed = done.pushed
        out.detail(
            f"pushed {plural(len(pushed.moved), 'file')} ({human_size(pushed.nbytes)}) to "
            f"{pushed.url}, {pushed.present} already there"
        )


def _wheelhouse_line(done: AppBuild) -> str:
    report = done.report
    if done.pulled:
        return (
            f"wheelhouse {report.key}: {len(report.fetched)} pulled from the remote store "
            f"({human_size(report.fetched_bytes)}), {len(report.reused)} from the cache; "
            "no package index asked"
        )
    if report.status == "up-to-date":
        return (
            f"wheelhouse {report.key} is in the cache ({plural(report.packages, 'package')}): "
            "nothing to download"
        )
    changes = ", ".join(str(c) for c in report.changes)
    built = sum(1 for b in report.built if not b.reused)
    cached = len(report.built) - built
    return (
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
        platform=lambda: host_platform(list(platform_tags())),  # only if the lock lacks it
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
