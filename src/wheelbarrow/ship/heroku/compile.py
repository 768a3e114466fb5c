"""bin/compile for the classic Heroku buildpack: the app's Python, wheelhouse and environment."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelbarrow import __version__
from wheelbarrow._core.errors import InstallError, WheelbarrowError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import human_size, plural
from wheelbarrow.app.directory import App, read_app
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.environment.clone import clone_env
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.ship.heroku.output import HerokuReporter
from wheelbarrow.ship.heroku.provide_environment import prepare_environment
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse.sbom import refuse_taken

if TYPE_CHECKING:
    from wheelbarrow.ship.heroku.afterinstall import StartedCheck
    from wheelbarrow.ship.heroku.python_version import PythonChoice
    from wheelbarrow.ship.heroku.runtime import Runtime

VENV = ".heroku/venv"
RUNTIME = ".heroku/python"
SBOM = ".wheelbarrow/sbom.cdx.json"  # the slug's bill of materials (README: "Software bill ...")
CACHE_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CompileContext:
    """The three directories of the buildpack contract, and what this machine provides."""

    build_dir: Path
    cache_dir: Path
    env_dir: Path
    slug_home: Path  # where the slug runs: /app on the platform
    stack: str
    environ: Mapping[str, str]
    runner: Runner
    which: Any
    uv: str


def compile_app(ctx: CompileContext, out: HerokuReporter) -> None:
    """Do what bin/compile must: leave a slug in BUILD_DIR that runs at SLUG_HOME."""
    from wheelbarrow.ship.heroku.checks import refuse_committed_environments
    from wheelbarrow.ship.heroku.profile import write_profile
    from wheelbarrow.ship.heroku.runtime import read_env_dir

    config = read_env_dir(ctx.env_dir) if ctx.env_dir.is_dir() else {}
    out.step(f"Python app detected; wheelbarrow {__version__}")
    choice, app = _python_and_app(ctx, config, out)
    cache = ctx.cache_dir / "wheelbarrow"
    _check_cache(cache, stack=ctx.stack, python=str(choice.version), out=out)

    _hook(ctx, "pre_compile", config, out)
    refuse_committed_environments(ctx.build_dir, python_home=True)
    refuse_taken(ctx.build_dir / SBOM, root=ctx.build_dir)  # before the build, not after

    runtime = _provide_python(ctx, choice, cache=cache, config=config, out=out)
    slug_home = _link_slug_home(ctx, out)
    interpreter = Interpreter(
        executable=Path(runtime.slug_python(ctx.build_dir, slug_home)), version=runtime.version
    )
    _record_cache(cache, stack=ctx.stack, python=str(choice.version))

    store = Store(cache / "store")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sbom") as threads:
        # The bill of materials is made while the environment is cloned and checked: it
        # reads only the store, and the clone and the check wait on the disk and a process.
        dest, started, never_copied, sbom = _install_environment(
            ctx,
            app,
            choice.version,
            interpreter,
            cache=cache,
            config=config,
            out=out,
            sbom=lambda env: threads.submit(_sbom_document, ctx, app, env, runtime, store),
        )
        _after_install(ctx, dest, slug_home=slug_home, config=config, out=out, started=started)
        _write_sbom(ctx, sbom.result(), out=out)
    profile = write_profile(
        ctx.build_dir, venv_rel=VENV, runtime_rel=RUNTIME if runtime.home is not None else None
    )
    out.detail(f"wrote {profile.relative_to(ctx.build_dir)}")
    _hook(ctx, "post_compile", config, out)
    _finish_slug(ctx, out, never_copied=never_copied)


def _python_and_app(
    ctx: CompileContext, config: Mapping[str, str], out: HerokuReporter
) -> tuple[PythonChoice, App]:
    """The Python to build with (its warnings said) and the app, with its tests' needs in CI."""
    from wheelbarrow.ship.heroku.ci import in_ci, with_test_requirements
    from wheelbarrow.ship.heroku.python_version import choose_python

    # Heroku's order (runtime.txt, .python-version, Pipfile.lock), read before the app so
    # that its refusals (end-of-life, unknown, uv without .python-version) come first.
    choice = choose_python(
        ctx.build_dir,
        fallback=lambda: read_app(ctx.build_dir, environ=config).choose_python(_running_default()),
    )
    for warning in choice.warnings:
        out.warn(warning)
    app = read_app(ctx.build_dir, environ=config)
    if in_ci(ctx.environ):
        app, added = with_test_requirements(app, environ=config)
        out.step("Heroku CI: the test dependencies too" + (f" ({added})" if added else ""))
    return choice, app


def _provide_python(
    ctx: CompileContext,
    choice: PythonChoice,
    *,
    cache: Path,
    config: Mapping[str, str],
    out: HerokuReporter,
) -> Runtime:
    """The chosen CPython in BUILD_DIR (from the stack, a tarball or uv), and where it came from."""
    from wheelbarrow.ship.heroku.provide_python import provide_runtime

    runtime = provide_runtime(
        choice.version,
        build_dir=ctx.build_dir,
        cache_dir=cache / "runtimes",
        config=config,
        which=ctx.which,
        runner=ctx.runner,
        uv=ctx.uv,
        environ=ctx.environ,
    )
    out.step(f"Using Python {runtime.version} {choice.described} ({runtime.kind})")
    out.detail(f"runtime: {runtime.source}")
    return runtime


def _install_environment(
    ctx: CompileContext,
    app: App,
    version: PythonVersion,
    interpreter: Interpreter,
    *,
    cache: Path,
    config: Mapping[str, str],
    out: HerokuReporter,
    sbom: Callable[[Path], Future[bytes]],
) -> tuple[Path, StartedCheck, list[tuple[str, int, int]], Future[bytes]]:
    """The app's environment at BUILD_DIR/.heroku/venv, cloned from the cached store; the
    check of it, made while it is cloned (on the store's environment); the test packages
    the slug's strip takes out, left out of the clone (paths relative to BUILD_DIR, files,
    bytes); and its bill of materials, which ``sbom`` starts on the store's environment
    before the clone.

    The last lock comes from the build cache first, and the lock used goes back there.
    """
    from wheelbarrow.ship.heroku.afterinstall import start_check
    from wheelbarrow.ship.heroku.lockcache import keep_lock, restore_lock
    from wheelbarrow.ship.heroku.slug import strippable_tests

    dest = ctx.build_dir / VENV
    if restore_lock(app.lock_path, cache) is not None:
        out.detail(f"{app.lock_path.name}: the last lock, from the build cache")
    with contextlib.ExitStack() as held:  # leases on what is used, until it is cloned
        env = prepare_environment(
            app,
            version,
            interpreter,
            store=Store(cache / "store"),
            config=config,
            environ=ctx.environ,
            runner=ctx.runner,
            uv=ctx.uv,
            out=out,
            held=held,
            which=ctx.which,
        )
        document = sbom(env)
        # The check imports every console script: it runs on the stored environment, the
        # same files, while they are cloned (two cores instead of one after the other).
        started = start_check(
            env / "bin" / "python",
            dest,
            app_dir=ctx.build_dir,
            config=config,
            environ=ctx.environ,
            runner=ctx.runner,
        )
        try:
            # What the strip would remove is never copied: the strip's own rules, found (or
            # taken from what the last strip found) in the store's environment.
            tests = strippable_tests(env, known=cache / "slug-tests.json", env=env.name)
            clone_env(env, dest, skip=[rel for rel, _, _ in tests])
        finally:
            started.wait()  # the store's environment stays leased until the check is done
    keep_lock(app.lock_path, cache)
    return dest, started, [(f"{VENV}/{rel}", f, b) for rel, f, b in tests], document


def _after_install(
    ctx: CompileContext,
    dest: Path,
    *,
    slug_home: Path,
    config: Mapping[str, str],
    out: HerokuReporter,
    started: StartedCheck,
) -> None:
    """Check the web servers, point the environment at SLUG_HOME, report the environment's
    check (``started``), then collectstatic and NLTK."""
    from wheelbarrow.ship.heroku.afterinstall import after_install
    from wheelbarrow.ship.heroku.nltk import DATA_REL, write_nltk_profile
    from wheelbarrow.ship.heroku.release import check_web_servers, installed_distributions

    check_web_servers(ctx.build_dir, installed_distributions(dest))
    if slug_home != ctx.build_dir:
        _point_at(dest, old=str(dest), new=str(slug_home / VENV))
    if after_install(
        ctx.build_dir,
        dest,
        nltk_dir=ctx.build_dir / DATA_REL,
        config=config,
        environ=ctx.environ,
        runner=ctx.runner,
        out=out,
        started=started,
    ):
        write_nltk_profile(ctx.build_dir)


def _write_sbom(ctx: CompileContext, document: bytes, *, out: HerokuReporter) -> None:
    """Write the slug's bill of materials at SBOM."""
    from wheelbarrow.wheelhouse import sbom

    sbom.write_new(ctx.build_dir / SBOM, document, root=ctx.build_dir)
    out.detail(f"wrote {SBOM} (CycloneDX {sbom.SPEC_VERSION})")


def _sbom_document(
    ctx: CompileContext, app: App, env: Path, runtime: Runtime, store: Store
) -> bytes:
    """The slug's CycloneDX bill of materials: the wheelhouse the store's environment ``env``
    was made from (its marker says which), with the slug's Python."""
    from wheelbarrow.environment.marker import read_marker
    from wheelbarrow.lock.lockfile import read_lock
    from wheelbarrow.wheelhouse import sbom

    key = (read_marker(env) or {}).get("wheelhouse")
    if not isinstance(key, str):
        raise InstallError(
            f"{env}: the environment does not name its wheelhouse",
            hint="build again; if it persists, clear the build cache",
        )
    try:  # only for the files' URLs, which it finds by their sha256
        lock = read_lock(app.lock_path)
    except WheelbarrowError:
        lock = None
    return sbom.cyclonedx_json(
        store,
        key,
        subject="slug",
        runtime=sbom.Runtime("cpython", runtime.version),
        lock=lock,
        epoch=sbom.source_date_epoch(ctx.environ),
    )


def _running_default() -> PythonVersion:
    import sys

    return PythonVersion(
        major=sys.version_info.major, minor=sys.version_info.minor, micro=sys.version_info.micro
    )


def _check_cache(cache: Path, *, stack: str, python: str, out: HerokuReporter) -> None:
    """Keep the cache when stack, Python and wheelbarrow are the same; otherwise say why not."""
    meta = cache / "meta.json"
    try:
        old = json.loads(meta.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        old = None
    now = _meta(stack=stack, python=python)
    if old is None:
        if cache.exists():
            shutil.rmtree(cache)
        out.step("No build cache yet: this build fills it")
        return
    reasons = [
        f"{label} changed ({old.get(field)} -> {now[field]})"
        for field, label in (
            ("stack", "the stack"),
            ("python", "the Python version"),
            ("wheelbarrow", "wheelbarrow"),
            ("format", "the cache format"),
        )
        if old.get(field) != now[field]
    ]
    if reasons:
        out.step("Dropping the build cache: " + "; ".join(reasons))
        shutil.rmtree(cache)
    else:
        out.step(
            f"Restoring the build cache (same stack, Python {python} and wheelbarrow {__version__})"
        )


def _meta(*, stack: str, python: str) -> dict[str, object]:
    return {"stack": stack, "python": python, "wheelbarrow": __version__, "format": CACHE_FORMAT}


def _record_cache(cache: Path, *, stack: str, python: str) -> None:
    atomic_write_text(cache / "meta.json", json.dumps(_meta(stack=stack, python=python)) + "\n")


def _link_slug_home(ctx: CompileContext, out: HerokuReporter) -> Path:
    """Make SLUG_HOME/.heroku point at BUILD_DIR/.heroku so paths baked in now hold at run time.

    heroku-buildpack-python does the same. Where that is impossible the slug
    is built for BUILD_DIR itself and cannot move.
    """
    if ctx.slug_home == ctx.build_dir:
        return ctx.build_dir
    target = ctx.build_dir / ".heroku"
    target.mkdir(parents=True, exist_ok=True)
    link = ctx.slug_home / ".heroku"
    try:
        ctx.slug_home.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        if link.exists():
            raise OSError(f"{link} exists and is not a link")
        link.symlink_to(target)
    except OSError as exc:
        out.warn(
            f"cannot link {link} to the build directory ({exc}); the slug will only run "
            f"from {ctx.build_dir}"
        )
        return ctx.build_dir
    return ctx.slug_home


def _point_at(env: Path, *, old: str, new: str) -> None:
    """Rewrite the paths the environment names (scripts, pyvenv.cfg) from BUILD_DIR to SLUG_HOME."""
    from wheelbarrow.environment.site import relocate as _relocate

    _relocate(env, old=old, new=new)


def _hook(ctx: CompileContext, name: str, config: Mapping[str, str], out: HerokuReporter) -> None:
    """Run the app's bin/pre_compile or bin/post_compile, as Heroku's Python buildpack does."""
    hook = ctx.build_dir / "bin" / name
    if not hook.is_file():
        return
    out.step(f"Running bin/{name}")
    env = {
        **ctx.environ,
        **config,
        "BUILD_DIR": str(ctx.build_dir),
        "CACHE_DIR": str(ctx.cache_dir),
        "ENV_DIR": str(ctx.env_dir),
    }
    venv_bin = ctx.build_dir / VENV / "bin"
    if venv_bin.is_dir():
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    done = ctx.runner(["bash", str(hook)], cwd=ctx.build_dir, env=env)
    for line in (done.stdout + done.stderr).splitlines():
        out.detail(line)
    if done.returncode != 0:
        raise InstallError(
            f"bin/{name} exited with {done.returncode}", hint=f"fix bin/{name}; its output is above"
        )


def _finish_slug(
    ctx: CompileContext, out: HerokuReporter, *, never_copied: list[tuple[str, int, int]]
) -> None:
    """.slugignore, then the strip (the environment's test packages ``never_copied``: left
    out of its clone), then the slug's size."""
    from wheelbarrow.ship.heroku.slug import apply_slugignore, slug_size, strip_slug

    removed = apply_slugignore(ctx.build_dir)
    if removed:
        out.detail(f".slugignore removed {plural(len(removed), 'path')}")
    sites = sorted((ctx.build_dir / VENV).glob("lib/python*/site-packages"))
    stripped = strip_slug(ctx.build_dir, site_packages=sites, never_copied=never_copied)
    out.step(f"Slug: {human_size(slug_size(ctx.build_dir))}")
    out.detail(f"stripped {stripped.describe()}")


def run_compile(
    build: Path,
    cache: Path,
    env_dir: Path,
    *,
    out: HerokuReporter,
    environ: Mapping[str, str],
    runner: Runner,
    which: Any,
    uv: str,
) -> int:
    """bin/compile's body: errors become Heroku-style messages and a non-zero exit."""
    ctx = CompileContext(
        build_dir=build.absolute(),
        cache_dir=cache.absolute(),
        env_dir=env_dir.absolute(),
        slug_home=Path(environ.get("WHEELBARROW_SLUG_HOME", "/app")),
        stack=environ.get("STACK", ""),
        environ=environ,
        runner=runner,
        which=which,
        uv=uv,
    )
    try:
        compile_app(ctx, out)
    except WheelbarrowError as exc:
        out.error(exc.message, exc.hint)
        return 1
    return 0
