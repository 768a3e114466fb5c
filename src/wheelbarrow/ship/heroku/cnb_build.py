"""bin/build of the Cloud Native Buildpack: runtime, store and environment layers, processes."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.errors import PythonRuntimeError, WheelbarrowError
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.directory import App, read_app
from wheelbarrow.app.procfile import read_procfile
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.app.webentry import detect_entry
from wheelbarrow.environment.clone import clone_env
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.ship.heroku.cnb import Process, plan_python_version, write_launch
from wheelbarrow.ship.heroku.cnb_env import venv_env, write_env
from wheelbarrow.ship.heroku.cnb_layers import LayerResult, LayerStore
from wheelbarrow.ship.heroku.output import HerokuReporter
from wheelbarrow.ship.heroku.provide_environment import (
    buildpack_host,
    index_options,
    prepare_environment,
)
from wheelbarrow.ship.heroku.runtime import (
    DOWNLOADS_JSON_VAR,
    RUNTIME_HOME,
    TARBALL_VAR,
    URL_VAR,
    Runtime,
)
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from wheelbarrow.lock.plan import Plan
    from wheelbarrow.ship.heroku.python_version import PythonChoice

STORE_FORMAT = 1
DEFAULT_PORT = 8080
# The Buildpack API's layer SBOM: <layer>.sbom.<ext>, cdx.json for CycloneDX JSON.
VENV_SBOM = "venv.sbom.cdx.json"
# CNB_TARGET_ARCH (OCI names) as python-build-standalone and uv name architectures.
_ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Build:
    """What every step of one build reads: the app, the platform's settings and the tools."""

    app_dir: Path
    layers_dir: Path
    config: Mapping[str, str]
    environ: Mapping[str, str]
    runner: Runner
    which: Callable[[str], str | None]
    uv: str
    out: HerokuReporter


def build(
    app_dir: Path,
    *,
    layers_dir: Path,
    platform_dir: Path,
    plan_path: Path | None,
    environ: Mapping[str, str],
    runner: Runner,
    which: Callable[[str], str | None],
    uv: str,
    out: HerokuReporter,
) -> None:
    """Fill the layers the way the lifecycle expects, reusing each one whose metadata matches.

    - ``runtime`` (launch, build, cache): a standalone CPython, when one is configured;
    - ``wheels`` (cache): wheelbarrow's store, so wheels and environments survive builds;
    - ``venv`` (launch): the app's environment, keyed by the wheelhouse key and Python,
      so an unchanged app reuses it without even touching the store.
    """
    from wheelbarrow.ship.heroku.afterinstall import cnb_after_install
    from wheelbarrow.ship.heroku.checks import refuse_committed_environments
    from wheelbarrow.ship.heroku.lockcache import keep_lock
    from wheelbarrow.ship.heroku.runtime import read_env_dir

    config = read_env_dir(platform_dir / "env") if (platform_dir / "env").is_dir() else {}
    ctx = _Build(
        app_dir=app_dir,
        layers_dir=layers_dir,
        config=config,
        environ=environ,
        runner=runner,
        which=which,
        uv=uv,
        out=out,
    )
    choice, app = _python_and_app(ctx, plan_path)
    version = choice.version
    refuse_committed_environments(app_dir, python_home=False)
    layers = LayerStore(layers_dir)
    store = _store_layer(layers, out)
    runtime = _runtime(ctx, layers, version, store=store)
    out.step(
        f"Using Python {runtime.version} {choice.described} ({runtime.kind}, {runtime.source})"
    )
    interpreter = Interpreter(executable=runtime.python, version=runtime.version)
    plan = _plan(ctx, app, version, store=store)
    store_env = functools.partial(_store_env, ctx, app, version, interpreter, store)
    venv = _venv_layer(ctx, layers, plan, runtime, store_env=store_env, store=store)
    with contextlib.ExitStack() as held:
        cnb_after_install(
            app_dir,
            layers,
            venv=venv.path,
            packages={a.name for a in plan.artefacts},
            store_env=lambda: store_env(held),
            config=config,
            environ=environ,
            runner=runner,
            out=out,
        )
    keep_lock(app.lock_path, store.root)
    _launch(app_dir, layers_dir, out)


def _store_env(
    ctx: _Build,
    app: App,
    version: PythonVersion,
    interpreter: Interpreter,
    store: Store,
    held: contextlib.ExitStack,
) -> Path:
    """The store's environment of the app, as the classic buildpack makes it, leased on ``held``."""
    return prepare_environment(
        app,
        version,
        interpreter,
        store=store,
        config=ctx.config,
        environ=ctx.environ,
        runner=ctx.runner,
        uv=ctx.uv,
        out=ctx.out,
        held=held,
        which=ctx.which,
    )


def _python_and_app(ctx: _Build, plan_path: Path | None) -> tuple[PythonChoice, App]:
    """The Python to build with (an earlier buildpack's pin counts), its warnings said; the app."""
    from wheelbarrow.ship.heroku.python_version import choose_python

    pinned = plan_python_version(plan_path) if plan_path else None
    running = PythonVersion(
        major=sys.version_info.major, minor=sys.version_info.minor, micro=sys.version_info.micro
    )

    def fallback() -> tuple[PythonVersion, str]:
        if pinned:  # an earlier buildpack's requirement
            return PythonVersion.parse(pinned, source="the build plan"), "the build plan"
        return read_app(ctx.app_dir, environ=ctx.config).choose_python(running)

    # Heroku's order, before the app is read: its refusals come first.
    choice = choose_python(ctx.app_dir, fallback=fallback)
    for warning in choice.warnings:
        ctx.out.warn(warning)
    return choice, read_app(ctx.app_dir, environ=ctx.config)


def _store_layer(layers: LayerStore, out: HerokuReporter) -> Store:
    """wheelbarrow's store in the cached ``wheels`` layer."""
    store_layer = layers.want_layer(
        "wheels",
        metadata={"format": STORE_FORMAT},
        launch=False,
        build=False,
        cache=True,
        populate=lambda path: None,
    )
    out.step(f"Store layer: {'reused' if store_layer.reused else 'new'} ({store_layer.reason})")
    return Store(store_layer.path)


def _runtime(ctx: _Build, layers: LayerStore, version: PythonVersion, *, store: Store) -> Runtime:
    """The stack's CPython when none is configured and it fits, else one in the runtime layer."""
    from wheelbarrow import __version__
    from wheelbarrow.ship.heroku.provide_python import provide_runtime
    from wheelbarrow.ship.heroku.runtime import SHA256_VAR

    config = ctx.config
    arch = _ARCHES.get(ctx.environ.get("CNB_TARGET_ARCH", ""), "x86_64")

    def provide(build_dir: Path, *, managed: bool = True) -> Runtime:
        return provide_runtime(
            version,
            build_dir=build_dir,
            cache_dir=store.root / "runtimes",
            config=config,
            which=ctx.which,
            runner=ctx.runner,
            arch=arch,
            uv=ctx.uv if managed else None,
            environ=ctx.environ,
        )

    configured = config.get(URL_VAR) or config.get(TARBALL_VAR)
    if not configured:
        try:
            return provide(ctx.layers_dir / "unused-runtime", managed=False)
        except PythonRuntimeError:
            configured = config.get(DOWNLOADS_JSON_VAR)
    source = configured or "uv's managed Python downloads"
    # A standalone CPython lives in its own layer, remade only when the version, its
    # source, its hash, the architecture or wheelbarrow changes.
    made: list[Runtime] = []
    layer = layers.want_layer(
        "runtime",
        metadata={
            "python": str(version),
            "source": source,
            "sha256": config.get(SHA256_VAR, "").strip().lower(),
            "arch": arch,
            "wheelbarrow": __version__,
        },
        launch=True,
        build=True,
        cache=True,
        populate=lambda path: made.append(provide(path)),
    )
    runtime = made[0] if made else _runtime_in(layer.path, version, source, ctx.runner)
    ctx.out.step(f"Runtime layer: {'reused' if layer.reused else 'new'} ({layer.reason})")
    return runtime


def _plan(ctx: _Build, app: App, version: PythonVersion, *, store: Store) -> Plan:
    """The app's plan, as prepare_environment makes it (so the layer's key is the wheelhouse's).

    The last lock comes from the build cache first; the web servers the
    processes run are checked before anything is installed.
    """
    from wheelbarrow.lock.options import Options
    from wheelbarrow.lock.plan import make_plan
    from wheelbarrow.ship.heroku.ci import ci_groups
    from wheelbarrow.ship.heroku.lockcache import restore_lock
    from wheelbarrow.ship.heroku.release import check_web_servers

    host = buildpack_host(version, environ=ctx.environ, config=ctx.config, uv=ctx.uv)
    if restore_lock(app.lock_path, store.root) is not None:
        ctx.out.detail(f"{app.lock_path.name}: the last lock, from the build cache")
    plan = make_plan(
        app,
        Options(
            python=str(version), index=index_options(ctx.config), groups=ci_groups(ctx.environ)
        ),
        host,
        runner=ctx.runner,
        reporter=ctx.out,
        may_lock=True,
    )
    # Before anything is installed: at launch it would be 'gunicorn: command not found'.
    check_web_servers(ctx.app_dir, {a.name for a in plan.artefacts})
    return plan


def _venv_layer(
    ctx: _Build,
    layers: LayerStore,
    plan: Plan,
    runtime: Runtime,
    *,
    store_env: Callable[[contextlib.ExitStack], Path],
    store: Store,
) -> LayerResult:
    """The ``venv`` layer: the store's environment cloned and checked, unless it is current.

    Its CycloneDX SBOM is the layer's SBOM file of the Buildpack API,
    ``<layers>/venv.sbom.cdx.json``, written with the layer; a reused layer keeps
    the one the lifecycle restored beside it (made again when it did not).
    """
    from wheelbarrow import __version__
    from wheelbarrow.ship.heroku.afterinstall import check_installed

    def populate(path: Path) -> None:
        with contextlib.ExitStack() as held:  # leases on what is used, until it is cloned
            clone_env(store_env(held), path)
        check_installed(
            path,
            app_dir=ctx.app_dir,
            config=ctx.config,
            environ=ctx.environ,
            runner=ctx.runner,
            out=ctx.out,
        )
        write_env(path, venv_env(path))
        _write_sbom(ctx, store, plan, runtime)

    venv = layers.want_layer(
        "venv",
        metadata={
            "wheelhouse_lock": plan.lock.sha256,
            "wheelhouse_key": plan.key,
            "python": runtime.version,
            "interpreter": str(runtime.python),
            "wheelbarrow": __version__,
        },
        launch=True,
        build=False,
        cache=False,
        populate=populate,
    )
    if venv.reused:
        ctx.out.step(f"Reusing the environment layer ({venv.reason})")
        if not (ctx.layers_dir / VENV_SBOM).is_file():
            _write_sbom(ctx, store, plan, runtime, reused=True)
    else:
        ctx.out.step(f"Environment layer made ({venv.reason})")
    return venv


def _write_sbom(
    ctx: _Build, store: Store, plan: Plan, runtime: Runtime, *, reused: bool = False
) -> None:
    """The environment's SBOM (its wheelhouse, its Python) as the venv layer's SBOM file.

    A reused layer whose SBOM the lifecycle did not restore gets it again from the
    store; when the store no longer has the wheelhouse (the cache was cleared), the
    layer goes without one, said, rather than failing a build that needs nothing else.
    """
    from wheelbarrow._core.files import atomic_write_bytes
    from wheelbarrow.wheelhouse.assemble import manifest_of
    from wheelbarrow.wheelhouse.sbom import Runtime as SbomRuntime
    from wheelbarrow.wheelhouse.sbom import cyclonedx_json, source_date_epoch

    if reused and manifest_of(store, plan.key) is None:
        ctx.out.detail(f"no {VENV_SBOM}: the build cache no longer holds the wheelhouse")
        return
    document = cyclonedx_json(
        store,
        plan.key,
        subject="environment",
        runtime=SbomRuntime("cpython", runtime.version),
        lock=plan.lock,
        epoch=source_date_epoch(ctx.environ),
    )
    atomic_write_bytes(ctx.layers_dir / VENV_SBOM, document)
    ctx.out.detail(f"SBOM of the environment layer: {VENV_SBOM} (CycloneDX)")


def _runtime_in(layer: Path, version: PythonVersion, source: str, runner: Runner) -> Runtime:
    """The standalone runtime a reused layer already holds."""
    home = layer / RUNTIME_HOME
    python = home / "bin" / "python3"
    # -B: the layer is reused as it is; the probe must not add bytecode to it.
    probe = runner(
        [str(python), "-I", "-B", "-c", "import platform; print(platform.python_version())"]
    )
    if probe.returncode != 0:
        raise PythonRuntimeError(
            f"{python}: the cached runtime layer does not run",
            hint="clear the build cache and build again",
        )
    return Runtime(
        python=python,
        version=probe.stdout.strip() or str(version),
        kind="standalone",
        home=home,
        source=source,
    )


def _launch(app_dir: Path, layers_dir: Path, out: HerokuReporter) -> None:
    """launch.toml's processes, each said."""
    processes = _processes(app_dir)
    write_launch(layers_dir, processes)
    for process in processes:
        out.detail(f"process {process.type}: {' '.join(process.command)}")


def _processes(app_dir: Path) -> list[Process]:
    """The Procfile's processes (web is the default), else a detected WSGI/ASGI web process."""
    procfile = read_procfile(app_dir)
    if procfile is not None:
        return [
            Process(type=p.name, command=("bash", "-c", p.command), default=p.name == "web")
            for p in procfile.processes
        ]
    entry = detect_entry(app_dir)
    if entry is None:
        return []
    # The lifecycle's platforms need not set PORT: 8080 then, as Heroku's CNB does.
    command = entry.command_with_port_default(DEFAULT_PORT)
    return [Process(type="web", command=("bash", "-c", command), default=True)]


def main(
    environ: Mapping[str, str], *, runner: Runner, which: Callable[[str], str | None], uv: str
) -> int:
    """bin/build's body, driven by the lifecycle's CNB_* variables."""
    out = HerokuReporter(sys.stdout)
    try:
        layers = environ["CNB_LAYERS_DIR"]
        platform = environ.get("CNB_PLATFORM_DIR", "/platform")
    except KeyError:
        out.error(
            "CNB_LAYERS_DIR is not set: bin/build runs under the CNB lifecycle",
            "run it through a platform such as pack, or set the CNB_* variables",
        )
        return 1
    plan = environ.get("CNB_BP_PLAN_PATH")
    try:
        build(
            Path.cwd(),
            layers_dir=Path(layers),
            platform_dir=Path(platform),
            plan_path=Path(plan) if plan else None,
            environ=environ,
            runner=runner,
            which=which,
            uv=uv,
            out=out,
        )
    except WheelbarrowError as exc:
        out.error(exc.message, exc.hint)
        return 1
    return 0
