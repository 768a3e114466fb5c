"""bin/build of the Cloud Native Buildpack: runtime, store and environment layers, processes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from wheelbarrow.app import read_app
from wheelbarrow.environment import clone_env
from wheelbarrow.errors import PythonRuntimeError, WheelbarrowError
from wheelbarrow.heroku.cnb import (
    LayerStore,
    Process,
    plan_python_version,
    venv_env,
    write_env,
    write_launch,
)
from wheelbarrow.heroku.compile import prepare_environment
from wheelbarrow.heroku.output import HerokuReporter
from wheelbarrow.heroku.runtime import RUNTIME_HOME, TARBALL_VAR, URL_VAR, Runtime
from wheelbarrow.interpreters import Interpreter
from wheelbarrow.runner import Runner
from wheelbarrow.store import Store
from wheelbarrow.target import PythonVersion

STORE_FORMAT = 1


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
    from wheelbarrow.heroku.runtime import provide_runtime, read_env_dir

    config = read_env_dir(platform_dir / "env") if (platform_dir / "env").is_dir() else {}
    app = read_app(app_dir, environ=config)
    pinned = plan_python_version(plan_path) if plan_path else None
    running = PythonVersion(
        major=sys.version_info.major, minor=sys.version_info.minor, micro=sys.version_info.micro
    )
    version = PythonVersion.parse(pinned) if pinned else app.choose_python(running)[0]
    layers = LayerStore(layers_dir)

    store_layer = layers.want_layer(
        "wheels",
        metadata={"format": STORE_FORMAT},
        launch=False,
        build=False,
        cache=True,
        populate=lambda path: None,
    )
    out.step(f"Store layer: {'reused' if store_layer.reused else 'new'} ({store_layer.reason})")
    store = Store(store_layer.path)

    def provide(build_dir: Path) -> Runtime:
        return provide_runtime(
            version,
            build_dir=build_dir,
            cache_dir=store.root / "runtimes",
            config=config,
            which=which,
            runner=runner,
        )

    configured = config.get(URL_VAR) or config.get(TARBALL_VAR)
    if configured:
        # A standalone CPython lives in its own layer, remade only when the
        # version or its source changes.
        made: list[Runtime] = []
        layer = layers.want_layer(
            "runtime",
            metadata={"python": str(version), "source": configured},
            launch=True,
            build=True,
            cache=True,
            populate=lambda path: made.append(provide(path)),
        )
        runtime = made[0] if made else _runtime_in(layer.path, version, configured, runner)
        out.step(f"Runtime layer: {'reused' if layer.reused else 'new'} ({layer.reason})")
    else:
        runtime = provide(layers_dir / "unused-runtime")
    out.step(f"Using Python {runtime.version} ({runtime.kind}, {runtime.source})")
    interpreter = Interpreter(executable=runtime.python, version=runtime.version)

    from wheelbarrow.heroku.compile import _index_options, buildpack_host
    from wheelbarrow.plan import Options, make_plan

    # As prepare_environment makes it, so that the layer's key is the wheelhouse's.
    host = buildpack_host(version, environ=environ, config=config, uv=uv)
    plan = make_plan(
        app,
        Options(python=str(version), index=_index_options(config)),
        host,
        runner=runner,
        reporter=out,
        may_lock=True,
    )

    def populate(path: Path) -> None:
        with contextlib.ExitStack() as held:  # leases on what is used, until it is cloned
            env = prepare_environment(
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
            clone_env(env, path)
        from wheelbarrow.heroku.afterinstall import check_installed

        check_installed(path, config=config, environ=environ, runner=runner, out=out)
        write_env(path, venv_env(path))

    venv = layers.want_layer(
        "venv",
        metadata={
            "wheelhouse_lock": plan.lock.sha256,
            "wheelhouse_key": plan.key,
            "python": runtime.version,
            "interpreter": str(runtime.python),
        },
        launch=True,
        build=False,
        cache=False,
        populate=populate,
    )
    if venv.reused:
        out.step(f"Reusing the environment layer ({venv.reason})")
    else:
        out.step(f"Environment layer made ({venv.reason})")
    from wheelbarrow.heroku.afterinstall import cnb_after_install

    with contextlib.ExitStack() as held:
        cnb_after_install(
            app_dir,
            layers,
            venv=venv.path,
            packages={a.name for a in plan.artefacts},
            store_env=lambda: prepare_environment(
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
            ),
            config=config,
            environ=environ,
            runner=runner,
            out=out,
        )
    processes = _processes(app_dir)
    write_launch(layers_dir, processes)
    for process in processes:
        out.detail(f"process {process.type}: {' '.join(process.command)}")


def _runtime_in(layer: Path, version: PythonVersion, source: str, runner: Runner) -> Runtime:
    """The standalone runtime a reused layer already holds."""
    home = layer / RUNTIME_HOME
    python = home / "bin" / "python3"
    probe = runner([str(python), "-I", "-c", "import platform; print(platform.python_version())"])
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


def _processes(app_dir: Path) -> list[Process]:
    """The Procfile's processes (web is the default), else a detected WSGI/ASGI web process."""
    from wheelbarrow.heroku.release import detect_entry

    procfile = app_dir / "Procfile"
    processes = []
    if procfile.is_file():
        for line in procfile.read_text(encoding="utf-8").splitlines():
            name, sep, command = line.partition(":")
            if not sep or not name.strip() or name.strip().startswith("#"):
                continue
            processes.append(
                Process(
                    type=name.strip(),
                    command=("bash", "-c", command.strip()),
                    default=name.strip() == "web",
                )
            )
        return processes
    entry = detect_entry(app_dir)
    if entry is not None:
        processes.append(Process(type="web", command=("bash", "-c", entry.command), default=True))
    return processes


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
