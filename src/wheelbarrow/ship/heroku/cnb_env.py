"""The environment a CNB layer sets: one file per variable under ``<layer>/env*/``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wheelbarrow._core.errors import BuildpackError
from wheelbarrow._core.files import atomic_write_text

# Every target is Linux, so the lifecycle joins path lists with ':'.
PATH_LIST_DELIM = ":"

_PROCESS_TYPE = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

EnvAction = Literal["override", "default", "prepend", "append"]
EnvScope = Literal["all", "build", "launch"]
_SCOPE_DIRS: dict[str, str] = {"all": "env", "build": "env.build", "launch": "env.launch"}


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvVar:
    """One environment variable a layer sets, as a file under ``<layer>/env*/``.

    ``scope`` picks ``env/`` (build and launch), ``env.build/`` or ``env.launch/``;
    ``process`` narrows a launch variable to one process type. ``prepend`` and ``append``
    need ``delim`` (``":"`` for a path list, ``""`` for plain concatenation).
    """

    name: str
    value: str
    action: EnvAction = "override"
    delim: str | None = None
    scope: EnvScope = "all"
    process: str | None = None

    def __post_init__(self) -> None:
        if not _ENV_NAME.fullmatch(self.name):
            raise BuildpackError(
                f"{self.name!r} cannot name an environment variable",
                hint="use letters, digits and underscores (the lifecycle cuts names at '.')",
            )
        if self.action in ("prepend", "append") and self.delim is None:
            raise BuildpackError(
                f"{self.name}: {self.action} needs a delimiter",
                hint=f"pass delim={PATH_LIST_DELIM!r} for a path list, or delim='' for none",
            )
        if self.process is not None:
            if self.scope != "launch":
                raise BuildpackError(
                    f"{self.name}: a process-specific variable must have scope 'launch'"
                )
            check_process_type(self.process)

    def files(self) -> dict[Path, str]:
        """The files that set this variable, relative to the layer, with their contents."""
        folder = Path(_SCOPE_DIRS[self.scope])
        if self.process is not None:
            folder /= self.process
        files = {folder / f"{self.name}.{self.action}": self.value}
        if self.delim:
            files[folder / f"{self.name}.delim"] = self.delim
        return files


def write_env(layer_dir: Path, variables: Iterable[EnvVar]) -> list[Path]:
    """Write each variable's files into ``layer_dir``; returns the paths written."""
    written: list[Path] = []
    for variable in variables:
        for relative, content in variable.files().items():
            atomic_write_text(layer_dir / relative, content)
            written.append(layer_dir / relative)
    return written


def venv_env(venv: Path) -> tuple[EnvVar, ...]:
    """The variables that put the virtual environment ``venv`` first, at build and launch.

    ``venv`` must be absolute: the exported layer keeps its absolute path.
    """
    if not venv.is_absolute():
        raise BuildpackError(
            f"{venv}: a layer's environment must name absolute paths",
            hint="pass the venv under the layer path given to populate",
        )
    return (
        EnvVar(name="PATH", value=str(venv / "bin"), action="prepend", delim=PATH_LIST_DELIM),
        EnvVar(name="VIRTUAL_ENV", value=str(venv)),
        # Logs reach the platform line by line instead of in 8 KiB blocks.
        EnvVar(name="PYTHONUNBUFFERED", value="1", scope="launch"),
    )


def check_process_type(name: str) -> None:
    if not _PROCESS_TYPE.fullmatch(name):
        raise BuildpackError(
            f"{name!r} cannot name a process type",
            hint="use letters, digits and the characters '.', '_' and '-'",
        )
