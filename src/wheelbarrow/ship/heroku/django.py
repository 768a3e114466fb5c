"""Django's static files, collected at build time as Heroku's Python buildpack collects them.

After the install, ``python manage.py collectstatic --noinput`` runs in the
app directory with the app's config vars, unless ``DISABLE_COLLECTSTATIC`` is
set (to anything but ``0``), Django is not installed, or no ``manage.py`` is
found (the shallowest within three levels, as the classic buildpack looks).
An app whose settings leave out ``django.contrib.staticfiles`` (``manage.py
help collectstatic`` says "Unknown command") is skipped, as the Cloud Native
buildpack does. A failure fails the build after the command's output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from wheelbarrow._core.errors import BuildpackError
from wheelbarrow._core.runner import Runner
from wheelbarrow.ship.heroku.output import HerokuReporter

DISABLE_VAR = "DISABLE_COLLECTSTATIC"
DISABLED_FILE = ".heroku/collectstatic_disabled"
_MAX_DEPTH = 3
# Lines of collectstatic's output the official buildpack leaves out of the build log.
_QUIET = ("Post-processed", "Copying")


class CollectstaticError(BuildpackError):
    """``manage.py collectstatic`` failed."""


def is_disabled(value: str | None) -> bool:
    """``DISABLE_COLLECTSTATIC``'s meaning: set to anything but empty or ``0``."""
    return value not in (None, "", "0")


def find_manage_py(app_dir: Path) -> Path | None:
    """The shallowest ``manage.py`` within three levels of ``app_dir`` (ties: by path)."""
    found: list[tuple[int, str]] = []
    for depth in range(1, _MAX_DEPTH + 1):
        for path in app_dir.glob("/".join(["*"] * (depth - 1) + ["manage.py"])):
            rel = path.relative_to(app_dir)
            if rel.parts[0] == ".heroku" or not path.is_file():
                continue  # the slug's own environment is no part of the app
            found.append((depth, rel.as_posix()))
        if found:
            break
    return app_dir / min(found)[1] if found else None


def collectstatic(
    app_dir: Path,
    venv: Path,
    *,
    env: Mapping[str, str],
    runner: Runner,
    out: HerokuReporter,
) -> bool:
    """Run ``manage.py collectstatic --noinput`` with ``venv``'s Python; True when it ran.

    ``env`` is the process environment with the app's config vars in it.
    """
    manage = _manage_py_to_run(app_dir, venv, env=env, out=out)
    if manage is None:
        return False
    rel = manage.relative_to(app_dir).as_posix()
    python = str(venv / "bin" / "python")
    run_env = {
        **env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": env.get("PYTHONPATH") or ".",
        "PYTHONUNBUFFERED": "1",
    }
    probe = runner([python, rel, "help", "collectstatic"], cwd=app_dir, env=run_env)
    if probe.returncode != 0 and "Unknown command" in probe.stderr:
        out.step(
            "Skipping Django collectstatic since the 'django.contrib.staticfiles' feature "
            "is not enabled in your app's Django configuration."
        )
        return False
    command = f"python {rel} collectstatic --noinput"
    out.step(f"$ {command}")
    done = runner(
        [python, rel, "collectstatic", "--noinput", "--traceback"], cwd=app_dir, env=run_env
    )
    shown = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and not line.startswith(_QUIET)
    ]
    if shown:
        out.detail("\n".join(shown))
    if done.returncode != 0:
        raise CollectstaticError(
            f"Unable to generate Django static files: the '{command}' Django management "
            f"command failed (exit status {done.returncode}).\n"
            "See the traceback above for details.",
            hint=(
                "fix the app's code or Django settings, or disable collectstatic for this "
                f"app: heroku config:set {DISABLE_VAR}=1 "
                "(https://devcenter.heroku.com/articles/django-assets)"
            ),
        )
    return True


def _manage_py_to_run(
    app_dir: Path, venv: Path, *, env: Mapping[str, str], out: HerokuReporter
) -> Path | None:
    """The app's manage.py when collectstatic should run, else None (saying why when it is news)."""
    if (app_dir / DISABLED_FILE).exists():
        out.step(f"Skipping Django collectstatic since the file '{DISABLED_FILE}' exists.")
        out.warn(
            f"Warning: The {DISABLED_FILE} file is deprecated.\n\n"
            f"Please remove the file and set the env var {DISABLE_VAR}=1 instead."
        )
        return None
    if is_disabled(env.get(DISABLE_VAR)):
        out.step(f"Skipping Django collectstatic since the env var {DISABLE_VAR} is set.")
        return None
    # Django ships the django-admin script: its presence says Django is installed.
    if not (venv / "bin" / "django-admin").exists():
        return None
    manage = find_manage_py(app_dir)
    if manage is None:
        out.step("Skipping Django collectstatic since no manage.py file found.")
        return None
    return manage
