"""What both buildpacks do once the environment is installed, in the official buildpack's order.

1. the environment is checked (dependencies met, console scripts importable);
2. ``nltk.txt``'s corpora are downloaded;
3. Django's static files are collected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from wheelbarrow.envcheck import SKIP_SCRIPTS_VAR, check_environment, require_healthy
from wheelbarrow.heroku.django import collectstatic
from wheelbarrow.heroku.nltk import download_corpora
from wheelbarrow.heroku.output import HerokuReporter
from wheelbarrow.runner import Runner


def app_env(venv: Path, *, environ: Mapping[str, str], config: Mapping[str, str]) -> dict[str, str]:
    """The environment app commands run in at build time: config vars over the build's own."""
    env = {**environ, **config}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def check_installed(
    venv: Path,
    *,
    config: Mapping[str, str],
    environ: Mapping[str, str],
    runner: Runner,
    out: HerokuReporter,
) -> None:
    """Fail the build when the environment's dependencies are unmet or a script cannot start."""
    out.step("Checking the installed environment")
    skip = config.get(SKIP_SCRIPTS_VAR, environ.get(SKIP_SCRIPTS_VAR, "")) not in ("", "0")
    check = check_environment(
        venv / "bin" / "python",
        runner=runner,
        scripts=not skip,
        env=app_env(venv, environ=environ, config=config),
    )
    require_healthy(
        check, skip_hint=f"set the config var {SKIP_SCRIPTS_VAR}=1 to skip the script check"
    )
    out.detail(
        check.describe() + (f" ({SKIP_SCRIPTS_VAR} is set: scripts not imported)" if skip else "")
    )


def after_install(
    app_dir: Path,
    venv: Path,
    *,
    nltk_dir: Path,
    config: Mapping[str, str],
    environ: Mapping[str, str],
    runner: Runner,
    out: HerokuReporter,
) -> bool:
    """Check the environment, fetch NLTK corpora into ``nltk_dir``, collect static files.

    Returns whether NLTK corpora were downloaded (the caller points
    ``NLTK_DATA`` at them).
    """
    check_installed(venv, config=config, environ=environ, runner=runner, out=out)
    env = app_env(venv, environ=environ, config=config)
    corpora = download_corpora(app_dir, venv, data_dir=nltk_dir, env=env, runner=runner, out=out)
    if corpora:
        env.setdefault("NLTK_DATA", str(nltk_dir))
    collectstatic(app_dir, venv, env=env, runner=runner, out=out)
    return corpora
