"""``bin/release``: the default ``web`` process, found by reading (never running) the app's code."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Collection
from pathlib import Path

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.procfile import PROCFILE, read_procfile
from wheelbarrow.app.webentry import detect_entry

# No Procfile entry to offer. The key is kept (with an empty map) so that
# whatever reads the answer finds the type it expects, as Heroku's own
# buildpacks answer when they have nothing to offer.
NOTHING = "---\ndefault_process_types: {}\n"

# Web servers a process may run, by executable, with the distribution that installs it.
SERVERS: dict[str, str] = {
    "gunicorn": "gunicorn",
    "uvicorn": "uvicorn",
    "hypercorn": "hypercorn",
    "daphne": "daphne",
    "waitress-serve": "waitress",
}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")

_PLAIN_SCALAR = re.compile(r"[A-Za-z0-9_./$][A-Za-z0-9_./$:= -]*")


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when unambiguous, else double-quoted."""
    if _PLAIN_SCALAR.fullmatch(text) and ": " not in text and not text.endswith((" ", ":")):
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def release_yaml(app_dir: Path) -> str:
    """What ``bin/release`` prints: the default ``web`` process type, if there is one to offer.

    An app with a Procfile gets none (the Procfile decides), nor does one
    whose entry point :func:`detect_entry` cannot find; both get
    ``default_process_types: {}``.
    """
    if (app_dir / PROCFILE).is_file():
        return NOTHING
    entry = detect_entry(app_dir)
    if entry is None:
        return NOTHING
    return f"---\ndefault_process_types:\n  web: {_yaml_scalar(entry.command)}\n"


def _executable(command: str) -> str | None:
    """The program a Procfile command runs: past ``VAR=value`` assignments and ``exec``."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for word in words:
        if _ASSIGNMENT.match(word) or word == "exec":
            continue
        return Path(word).name
    return None


def check_web_servers(app_dir: Path, packages: Collection[str]) -> None:
    """Refuse a process whose web server the app does not install, naming what to add.

    The Procfile's processes are checked when there is one, else the web process
    :func:`detect_entry` finds. ``packages`` are the normalised names of the
    distributions the environment holds. The hint says how to add the server with
    the app's package manager. Raises :class:`InputError` for the first process
    found lacking its server (``gunicorn: command not found`` at launch otherwise).
    """
    installed = {name.lower().replace("_", "-") for name in packages}
    procfile = read_procfile(app_dir)
    if procfile is not None:
        for process in procfile.processes:
            program = _executable(process.command)
            server = SERVERS.get(program or "")
            if server is not None and server not in installed:
                raise InputError(
                    f"{procfile.path}:{process.line}: the {process.name} process runs {program}, "
                    f"but {server} is not among the app's requirements: it would fail to start "
                    f"with '{program}: command not found'",
                    hint=_how_to_add(app_dir, server),
                )
        return
    entry = detect_entry(app_dir)
    if entry is not None and entry.server not in installed:
        raise InputError(
            f"{app_dir}: the web process found for {entry.module}:{entry.attribute} "
            f"({entry.kind.upper()}) runs '{entry.command}', but {entry.server} is not among "
            "the app's requirements",
            hint=_how_to_add(app_dir, entry.server)
            + ", or write a Procfile saying how to serve the app",
        )


def _how_to_add(app_dir: Path, server: str) -> str:
    from wheelbarrow.app.managers import detect_manager

    manager = detect_manager(app_dir)
    name = manager.name if manager is not None else "pip"
    return {
        "uv": f"run 'uv add {server}' and commit pyproject.toml and uv.lock",
        "poetry": f"run 'poetry add {server}' and commit pyproject.toml and poetry.lock",
        "pipenv": f"run 'pipenv install {server}' and commit Pipfile and Pipfile.lock",
        "pyproject": f"add {server} to [project] dependencies in pyproject.toml",
        "pylock": f"add {server} to the app's requirements and lock again",
    }.get(name, f"add {server} to requirements.txt")


def installed_distributions(env: Path) -> set[str]:
    """The normalised names of the distributions installed in the environment ``env``."""
    names: set[str] = set()
    for info in env.glob("lib/python*/site-packages/*.dist-info"):
        name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0]
        names.add(re.sub(r"[-_.]+", "-", name).lower())
    return names
