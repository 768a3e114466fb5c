"""The Cloud Native Buildpack contract: detect, layers reused by their metadata, launch.toml."""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wheelbarrow._core.errors import BuildpackError, InputError, WheelbarrowError, error_text
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.redact import redact
from wheelbarrow.app.target import PythonVersion

BUILDPACK_API = "0.10"
BUILDPACK_ID = "wheelbarrow/python"
BUILDPACK_NAME = "wheelbarrow Python"
# The architectures wheelbarrow locks for (manylinux x86_64 and aarch64), in OCI names.
TARGETS: tuple[tuple[str, str], ...] = (("linux", "amd64"), ("linux", "arm64"))

DETECT_PASS = 0
DETECT_FAIL = 100  # the spec's "fail": another buildpack may still claim the app

PLAN_ENTRY = "python"
# Every target is Linux, so the lifecycle joins path lists with ':'.
PATH_LIST_DELIM = ":"

# The lifecycle writes these beside the layers: a layer of that name would collide.
_RESERVED_LAYER_NAMES = frozenset({"launch", "build", "store"})
_PROCESS_TYPE = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# How a changed [metadata] field is named in a rebuild reason; others use the key itself.
_FIELD_LABELS = {"python": "python version"}


# --- detect -------------------------------------------------------------------------------


def detect(app_dir: Path, *, plan_path: Path) -> int:
    """Pass when wheelbarrow can build the app, writing the Build Plan; fail (100) otherwise.

    See :func:`wheelbarrow.ship.heroku.cnb_detect.detect`: uv.lock, poetry.lock, Pipfile
    with Pipfile.lock, requirements.txt, a pylock.toml or ``[project] dependencies``
    pass; the plan requires ``python`` with ``metadata.version`` when runtime.txt,
    .python-version or Pipfile.lock pins one. Nothing is written on a fail.
    """
    from wheelbarrow.ship.heroku.cnb_detect import detect as detect_app

    return detect_app(app_dir, plan_path=plan_path)


def build_plan(python: PythonVersion | None) -> str:
    """The Build Plan TOML of a Python app: provides ``python`` and requires it."""
    from wheelbarrow.ship.heroku.cnb_detect import build_plan as plan_text

    return plan_text(str(python) if python is not None else None)


def plan_python_version(bp_plan_path: Path) -> str | None:
    """The Python version that the Buildpack Plan (``CNB_BP_PLAN_PATH``) asks for, if any."""
    plan = _read_toml(bp_plan_path)
    entries = plan.get("entries", [])
    if not isinstance(entries, list):
        raise InputError(f"{bp_plan_path}: [[entries]] must be an array of tables")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("name") != PLAN_ENTRY:
            continue
        metadata = entry.get("metadata", {})
        version = metadata.get("version") if isinstance(metadata, dict) else None
        if version is not None:
            return str(version)
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc


# --- layers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    """A layer as the lifecycle left it in the layers directory at the start of a build.

    ``metadata`` is the restored ``[metadata]`` table of ``<layers>/<name>.toml``, or None
    when there is no such file (or it cannot be read: ``problem`` then says why).
    ``has_contents`` says whether ``<layers>/<name>/`` exists: the lifecycle restores it
    only for cache layers, while a launch-only layer comes back as its metadata alone.
    """

    name: str
    path: Path
    metadata: Mapping[str, Any] | None
    has_contents: bool
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerResult:
    """What :meth:`LayerStore.want_layer` did with a layer, and why."""

    reused: bool
    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class LayerStore:
    """The layers directory of one buildpack (``CNB_LAYERS_DIR``) during ``bin/build``."""

    root: Path

    def layer(self, name: str) -> Layer:
        """The restored state of layer ``name``: its metadata and whether its directory exists."""
        _check_layer_name(name)
        path = self.root / name
        toml_path = self.root / f"{name}.toml"
        has_contents = path.is_dir()
        if not toml_path.is_file():
            return Layer(name=name, path=path, metadata=None, has_contents=has_contents)
        try:
            document = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return Layer(
                name=name, path=path, metadata=None, has_contents=has_contents, problem=str(exc)
            )
        metadata = document.get("metadata", {})
        if not isinstance(metadata, dict):
            return Layer(
                name=name,
                path=path,
                metadata=None,
                has_contents=has_contents,
                problem="[metadata] is not a table",
            )
        return Layer(name=name, path=path, metadata=metadata, has_contents=has_contents)

    def want_layer(
        self,
        name: str,
        *,
        metadata: Mapping[str, Any],
        launch: bool,
        build: bool,
        cache: bool,
        populate: Callable[[Path], None],
    ) -> LayerResult:
        """Keep layer ``name`` when it still fits ``metadata``, else rebuild it with ``populate``.

        A layer is reused exactly when its restored metadata equals ``metadata`` and, unless it
        is launch-only, its directory was restored. A reused launch-only layer has no local
        directory: the lifecycle takes its contents from the previous image, so ``path`` must
        not be written to. Otherwise the directory is emptied, ``populate(path)`` fills it
        (environment files included), and only then ``<name>.toml`` is written. Either way
        ``<name>.toml`` is rewritten with ``[types]``: the restored one has none, and the
        lifecycle ignores a layer without them.
        """
        previous = self.layer(name)
        wanted = _normalised(metadata, layer=name)
        # Only a launch layer that subsequent buildpacks need not read can live on in the
        # previous image alone; build and cache layers need their contents here.
        needs_contents = build or cache or not launch
        reason = _stale_reason(previous, wanted, needs_contents=needs_contents)
        toml_path = self.root / f"{name}.toml"
        text = _layer_toml(launch=launch, build=build, cache=cache, metadata=wanted)
        if reason is None:
            atomic_write_text(toml_path, text)
            return LayerResult(reused=True, path=previous.path, reason="metadata matches")

        # Drop the old metadata first: a failed populate must not leave it claiming a match.
        toml_path.unlink(missing_ok=True)
        _remove(previous.path)
        previous.path.mkdir(parents=True)
        try:
            populate(previous.path)
        except BaseException:
            _remove(previous.path)
            raise
        atomic_write_text(toml_path, text)
        return LayerResult(reused=False, path=previous.path, reason=reason)

    def remove_layer(self, name: str) -> None:
        """Remove the layer ``name`` and its metadata, so the new image and cache lack it."""
        _check_layer_name(name)
        (self.root / f"{name}.toml").unlink(missing_ok=True)
        _remove(self.root / name)


def _stale_reason(
    previous: Layer, wanted: Mapping[str, Any], *, needs_contents: bool
) -> str | None:
    """Why ``previous`` cannot be reused for ``wanted``; None when it can."""
    if previous.problem is not None:
        return f"previous metadata unreadable ({previous.problem})"
    if previous.metadata is None:
        return "no previous layer"
    changes = _changes(previous.metadata, wanted)
    if changes:
        return "; ".join(changes)
    if needs_contents and not previous.has_contents:
        return "metadata matches, but the cached contents were not restored"
    return None


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = list(new) + [key for key in old if key not in new]
    return [
        f"{_FIELD_LABELS.get(key, key.replace('_', ' '))} changed: "
        f"{_shown(old.get(key))} -> {_shown(new.get(key))}"
        for key in keys
        if old.get(key) != new.get(key) or (key in old) != (key in new)
    ]


def _shown(value: object) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else _toml_value(value)


def _normalised(metadata: Mapping[str, Any], *, layer: str) -> dict[str, Any]:
    """``metadata`` as it will read back from TOML (tuples become lists), checked writable."""
    try:
        text = _table_body(metadata)
    except (TypeError, ValueError) as exc:
        raise BuildpackError(
            f"layer {layer!r}: metadata cannot be written as TOML: {exc}",
            hint="use strings, numbers, booleans, lists and tables only",
        ) from exc
    return tomllib.loads(text)


def _layer_toml(*, launch: bool, build: bool, cache: bool, metadata: Mapping[str, Any]) -> str:
    types = f"[types]\nlaunch = {_toml_value(launch)}\nbuild = {_toml_value(build)}\n"
    types += f"cache = {_toml_value(cache)}\n"
    return f"{types}\n[metadata]\n{_table_body(metadata)}"


def _check_layer_name(name: str) -> None:
    if (
        not name
        or name in {".", ".."}
        or any(c in name for c in "/\\\0")
        or name in _RESERVED_LAYER_NAMES
    ):
        raise BuildpackError(
            f"{name!r} cannot name a layer",
            hint="use a plain file name other than launch, build or store",
        )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


# --- layer environment --------------------------------------------------------------------

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
            _check_process_type(self.process)

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


# --- launch.toml and buildpack.toml -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    """A process type in ``launch.toml`` (buildpack API 0.9+: ``command`` is a list).

    ``command`` holds the executable and the arguments always passed; ``args`` the default
    arguments a user may override. Give ``default=True`` to the process that runs when none
    is named, normally ``web``.
    """

    type: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    default: bool = False
    working_dir: str | None = None

    def __post_init__(self) -> None:
        _check_process_type(self.type)
        if not self.command or not self.command[0]:
            raise BuildpackError(
                f"process {self.type!r}: empty command",
                hint="the first element of command is the executable",
            )


def launch_toml(processes: Sequence[Process]) -> str:
    """The text of ``launch.toml`` for ``processes``, checked as the spec asks."""
    types = [p.type for p in processes]
    duplicates = sorted({t for t in types if types.count(t) > 1})
    if duplicates:
        raise BuildpackError(f"process types given twice: {', '.join(duplicates)}")
    defaults = [p.type for p in processes if p.default]
    if len(defaults) > 1:
        raise BuildpackError(
            f"more than one default process: {', '.join(defaults)}",
            hint="a buildpack may mark only one process type as default",
        )
    blocks = []
    for process in processes:
        block = f"[[processes]]\ntype = {_toml_string(process.type)}\n"
        block += f"command = {_toml_value(process.command)}\n"
        if process.args:
            block += f"args = {_toml_value(process.args)}\n"
        block += f"default = {_toml_value(process.default)}\n"
        if process.working_dir is not None:
            block += f"working-dir = {_toml_string(process.working_dir)}\n"
        blocks.append(block)
    return "\n".join(blocks)


def write_launch(layers_dir: Path, processes: Sequence[Process]) -> Path:
    """Write ``<layers>/launch.toml`` declaring ``processes``; returns its path."""
    path = layers_dir / "launch.toml"
    atomic_write_text(path, launch_toml(processes))
    return path


def buildpack_toml(version: str) -> str:
    """The ``buildpack.toml`` of the wheelbarrow buildpack at ``version`` (API 0.10, targets)."""
    if not version.strip():
        raise BuildpackError("the buildpack version is empty", hint="pass a version such as 0.1.0")
    text = f"api = {_toml_string(BUILDPACK_API)}\n\n[buildpack]\n"
    text += f"id = {_toml_string(BUILDPACK_ID)}\n"
    text += f"name = {_toml_string(BUILDPACK_NAME)}\n"
    text += f"version = {_toml_string(version.strip())}\n"
    description = "Python apps from a locked, content-addressed wheelhouse, installed offline"
    text += f"description = {_toml_string(description)}\n"
    for os_name, arch in TARGETS:
        text += f"\n[[targets]]\nos = {_toml_string(os_name)}\narch = {_toml_string(arch)}\n"
    return text


def _check_process_type(name: str) -> None:
    if not _PROCESS_TYPE.fullmatch(name):
        raise BuildpackError(
            f"{name!r} cannot name a process type",
            hint="use letters, digits and the characters '.', '_' and '-'",
        )


# --- a small TOML writer (the standard library only reads TOML) ---------------------------

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"table key {key!r} is not a string")
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"{value!r} ({type(value).__name__}) has no TOML form")


def _table_body(table: Mapping[str, Any]) -> str:
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in table.items())


# --- entry point for bin/detect -----------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """``python -m wheelbarrow.ship.heroku.cnb detect | buildpack-toml VERSION``; the exit code.

    ``detect`` runs in the app directory (the working directory, as the lifecycle sets it)
    and writes the plan to ``$CNB_BUILD_PLAN_PATH``.
    """
    parser = argparse.ArgumentParser(prog="python -m wheelbarrow.ship.heroku.cnb")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("detect", help="the bin/detect side: pass (0) or fail (100)")
    text = commands.add_parser("buildpack-toml", help="print buildpack.toml")
    text.add_argument("version")
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        if args.command == "buildpack-toml":
            sys.stdout.write(buildpack_toml(args.version))
            return 0
        plan = env.get("CNB_BUILD_PLAN_PATH")
        if not plan:
            raise BuildpackError(
                "CNB_BUILD_PLAN_PATH is not set",
                hint="run detect from the buildpack's bin/detect under a lifecycle "
                "(buildpack API 0.8 or newer)",
            )
        return detect(Path.cwd() if cwd is None else cwd, plan_path=Path(plan))
    except WheelbarrowError as exc:
        # The edge: only this entry point writes, as the command line does.
        sys.stderr.write(error_text(redact(exc.message), redact(exc.hint) if exc.hint else None))
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
