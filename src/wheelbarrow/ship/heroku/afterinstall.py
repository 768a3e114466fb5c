"""What both buildpacks do once the environment is installed, in the official buildpack's order.

1. the environment is checked (dependencies met, console scripts importable);
2. ``nltk.txt``'s corpora are downloaded;
3. Django's static files are collected.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.runner import Runner
from wheelbarrow.app.config import read_build_config
from wheelbarrow.environment.envcheck import (
    SKIP_SCRIPTS_VAR,
    EnvCheck,
    check_environment,
    require_healthy,
)
from wheelbarrow.ship.heroku.django import collectstatic
from wheelbarrow.ship.heroku.nltk import download_corpora
from wheelbarrow.ship.heroku.output import HerokuReporter

if TYPE_CHECKING:
    from wheelbarrow.ship.heroku.cnb_layers import LayerStore

NLTK_LAYER = "nltk"


def app_env(venv: Path, *, environ: Mapping[str, str], config: Mapping[str, str]) -> dict[str, str]:
    """The environment app commands run in at build time: config vars over the build's own."""
    env = {**environ, **config}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


class StartedCheck:
    """The environment check running on a thread while the caller does something else (the
    classic buildpack clones the slug's environment meanwhile); :meth:`result` waits for it
    and raises what it raised."""

    def __init__(self, python: Path, *, scripts: bool, env: Mapping[str, str], runner: Runner):
        self._outcome: EnvCheck | BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(python, scripts, env, runner), daemon=True
        )
        self._thread.start()

    def _run(self, python: Path, scripts: bool, env: Mapping[str, str], runner: Runner) -> None:
        try:
            self._outcome = check_environment(python, runner=runner, scripts=scripts, env=env)
        except BaseException as exc:  # noqa: BLE001 - raised again by result()
            self._outcome = exc

    def wait(self) -> None:
        """Until the check has finished (it uses the store's environment: the caller holds the
        lease on it until then)."""
        self._thread.join()

    def result(self) -> EnvCheck:
        """The check's finding, once it has finished."""
        self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        if self._outcome is None:
            raise RuntimeError("the environment check ended without a finding")
        return self._outcome


def start_check(
    python: Path,
    venv: Path,
    *,
    app_dir: Path | None = None,
    config: Mapping[str, str],
    environ: Mapping[str, str],
    runner: Runner,
) -> StartedCheck:
    """Start the check :func:`check_installed` makes of ``venv``, on ``python`` (the store's
    environment ``venv`` is a clone of: the same files, so the same finding)."""
    skip, setting = _script_settings(app_dir, config=config, environ=environ)
    env = app_env(venv, environ=environ, config=config)
    return StartedCheck(python, scripts=not (skip or setting), env=env, runner=runner)


def _script_settings(
    app_dir: Path | None, *, config: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[bool, bool]:
    """Whether the config var, and whether the build settings, turn the script check off."""
    skip = config.get(SKIP_SCRIPTS_VAR, environ.get(SKIP_SCRIPTS_VAR, "")) not in ("", "0")
    setting = not read_build_config(app_dir).script_check if app_dir is not None else False
    return skip, setting


def check_installed(
    venv: Path,
    *,
    app_dir: Path | None = None,
    config: Mapping[str, str],
    environ: Mapping[str, str],
    runner: Runner,
    out: HerokuReporter,
    started: StartedCheck | None = None,
) -> None:
    """Fail the build when the environment's dependencies are unmet or a script cannot start
    (``started``: the check already under way, see :func:`start_check`)."""
    out.step("Checking the installed environment")
    skip, setting = _script_settings(app_dir, config=config, environ=environ)
    if started is not None:
        check = started.result()
    else:
        check = check_environment(
            venv / "bin" / "python",
            runner=runner,
            scripts=not (skip or setting),
            env=app_env(venv, environ=environ, config=config),
        )
    require_healthy(
        check,
        skip_hint=f"set the config var {SKIP_SCRIPTS_VAR}=1 (or script-check = false in the "
        "build settings) to skip the script check",
    )
    why = f"{SKIP_SCRIPTS_VAR} is set" if skip else "script-check = false"
    out.detail(check.describe() + (f" ({why}: scripts not imported)" if skip or setting else ""))


def after_install(
    app_dir: Path,
    venv: Path,
    *,
    nltk_dir: Path,
    config: Mapping[str, str],
    environ: Mapping[str, str],
    runner: Runner,
    out: HerokuReporter,
    started: StartedCheck | None = None,
) -> bool:
    """Check the environment (``started``: the check under way), fetch NLTK corpora into
    ``nltk_dir``, collect static files.

    Returns whether NLTK corpora were downloaded (the caller points
    ``NLTK_DATA`` at them).
    """
    check_installed(
        venv,
        app_dir=app_dir,
        config=config,
        environ=environ,
        runner=runner,
        out=out,
        started=started,
    )
    env = app_env(venv, environ=environ, config=config)
    corpora = download_corpora(app_dir, venv, data_dir=nltk_dir, env=env, runner=runner, out=out)
    if corpora:
        env.setdefault("NLTK_DATA", str(nltk_dir))
    collectstatic(app_dir, venv, env=env, runner=runner, out=out)
    return corpora


def cnb_after_install(
    app_dir: Path,
    layers: LayerStore,
    *,
    venv: Path,
    packages: Collection[str],
    store_env: Callable[[], Path],
    config: Mapping[str, str],
    environ: Mapping[str, str],
    runner: Runner,
    out: HerokuReporter,
) -> None:
    """The Cloud Native buildpack's steps after the install (the check runs as the layer is made).

    NLTK corpora go into their own launch layer, remade only when ``nltk.txt``'s
    ids or the index change. Static files are collected on every build, since
    the app directory is new each time. A reused launch-only ``venv`` layer has
    no contents here; ``store_env()`` then gives the same environment from the
    store, only for apps that need one (Django or NLTK among ``packages``).
    """
    from wheelbarrow.ship.heroku.cnb_env import EnvVar, write_env
    from wheelbarrow.ship.heroku.nltk import NLTK_TXT, URL_VAR, read_nltk_txt

    if not {"django", "nltk"} & set(packages):
        return
    if not (venv / "bin" / "python").exists():
        venv = store_env()
    env = app_env(venv, environ=environ, config=config)
    if "nltk" in packages and (app_dir / NLTK_TXT).is_file():
        ids = [w.id for w in read_nltk_txt(app_dir / NLTK_TXT)]

        def populate(path: Path) -> None:
            download_corpora(
                app_dir, venv, data_dir=path / "nltk_data", env=env, runner=runner, out=out
            )
            write_env(
                path, [EnvVar(name="NLTK_DATA", value=str(path / "nltk_data"), action="default")]
            )

        layer = layers.want_layer(
            NLTK_LAYER,
            metadata={"ids": ids, "url": env.get(URL_VAR, "")},
            launch=True,
            build=True,
            cache=True,
            populate=populate,
        )
        if layer.reused:
            out.step(f"NLTK corpora layer: reused ({layer.reason})")
        env.setdefault("NLTK_DATA", str(layer.path / "nltk_data"))
    elif "nltk" in packages:
        download_corpora(app_dir, venv, data_dir=app_dir, env=env, runner=runner, out=out)
    collectstatic(app_dir, venv, env=env, runner=runner, out=out)
