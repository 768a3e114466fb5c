"""Interpreters: finding a CPython of the target's version where users have them, and its tags."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelbarrow._core.errors import InstallError, TargetError
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import plural
from wheelbarrow.app.target import PythonVersion

_PROBE = (
    "import sys; print(sys.version.split()[0]); "
    "print(getattr(sys, '_base_executable', sys.executable))"
)
# Run in the interpreter with wheelbarrow's own `packaging` first on sys.path:
# the tags are the interpreter's own sys_tags(), as pip and uv would compute them.
_TAGS_PROBE = (
    "import sys, json; sys.path.insert(0, sys.argv[1]); "
    "from packaging.tags import sys_tags; print(json.dumps([str(t) for t in sys_tags()]))"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Interpreter:
    """A CPython that environments are made from."""

    executable: Path
    version: str  # full, e.g. 3.12.4

    @property
    def short(self) -> str:
        """``3.12``."""
        return ".".join(self.version.split(".")[:2])


def probe_interpreter(executable: Path, runner: Runner) -> Interpreter:
    """Ask ``executable`` for its version and base executable."""
    try:
        result = runner([str(executable), "-c", _PROBE])
    except OSError as exc:  # not executable, a broken link
        raise TargetError(f"{executable}: cannot be run: {exc.strerror}") from exc
    lines = result.stdout.split("\n")
    if result.returncode != 0 or len(lines) < 2 or not lines[0][:1].isdigit():
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise TargetError(
            f"{executable}: does not run as a Python interpreter"
            + (f": {detail[0]}" if detail else "")
        )
    version, base = lines[:2]
    return Interpreter(executable=Path(os.path.realpath(base)), version=version)


def find_interpreter(
    version: PythonVersion,
    *,
    explicit: Path | None,
    running: Interpreter,
    which: Callable[[str], str | None],
    runner: Runner,
    environ: Mapping[str, str],
    uv: str = "uv",
) -> Interpreter:
    """The interpreter for ``version``: the one given, the running one, or one found here.

    Looks where users keep Pythons, in order: ``python3.X`` on PATH (a pyenv
    shim that does not run is skipped), pyenv's versions, and the Pythons uv
    knows (``uv python find``, never downloading). The error names every
    place it looked.
    """
    if explicit is not None:
        found = probe_interpreter(explicit, runner)
        if found.short != version.short:
            raise TargetError(
                f"{explicit} is Python {found.version}, the target is {version.short}",
                hint="pass an interpreter of the target's version, or lock for this one",
            )
        return found
    if running.short == version.short:
        return running
    looked: list[str] = []
    for where, candidate in _candidates(
        version, which=which, runner=runner, environ=environ, uv=uv
    ):
        looked.append(where)
        if candidate is None:
            continue
        try:
            found = probe_interpreter(candidate, runner)
        except TargetError:
            continue
        if found.short == version.short:
            return found
    raise TargetError(
        f"no Python {version.short} interpreter found; the target needs one. Looked for:\n"
        + "\n".join(f"  - {place}" for place in dict.fromkeys(looked)),
        hint=f"install Python {version.short} (for example `uv python install {version.short}`), "
        "or pass --python-executable PATH",
    )


def _candidates(
    version: PythonVersion,
    *,
    which: Callable[[str], str | None],
    runner: Runner,
    environ: Mapping[str, str],
    uv: str,
) -> Iterator[tuple[str, Path | None]]:
    name = f"python{version.short}"
    on_path = which(name)
    yield f"{name} on PATH", Path(on_path) if on_path else None
    root = Path(environ.get("PYENV_ROOT") or Path(environ.get("HOME", "~")) / ".pyenv")
    versions = root.expanduser() / "versions"
    found = sorted(_pyenv_versions(versions, version), key=_micro, reverse=True)
    if not found:
        yield f"pyenv's versions in {versions}", None
    for path in found:
        yield f"pyenv's versions in {versions}", path
    env = {**environ, "UV_PYTHON_DOWNLOADS": "never"}
    try:
        result = runner([uv, "python", "find", version.short], env=env)
    except Exception:  # noqa: BLE001 - uv missing or broken: one place fewer to look
        result = None
    where = f"the Pythons uv knows (`uv python find {version.short}`)"
    if result is not None and result.returncode == 0 and result.stdout.strip():
        yield where, Path(result.stdout.strip().splitlines()[-1])
    else:
        yield where, None


def _pyenv_versions(versions: Path, version: PythonVersion) -> list[Path]:
    try:
        entries = list(versions.iterdir())
    except OSError:
        return []
    out = []
    for entry in entries:
        parts = entry.name.split(".")
        if parts[:2] != [str(version.major), str(version.minor)]:
            continue
        exe = entry / "bin" / f"python{version.short}"
        if exe.is_file():
            out.append(exe)
    return out


def _micro(path: Path) -> tuple[int, ...]:
    name = path.parent.parent.name
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def interpreter_tags(
    interpreter: Interpreter,
    *,
    running: Interpreter,
    runner: Runner,
    running_tags: Callable[[], Sequence[str]],
) -> tuple[str, ...]:
    """The wheel tags ``interpreter`` accepts, best first: its own ``packaging.tags.sys_tags()``."""
    if interpreter.executable == running.executable and interpreter.version == running.version:
        return tuple(running_tags())
    import packaging

    packages_dir = str(Path(packaging.__file__).resolve().parent.parent)
    result = runner([str(interpreter.executable), "-I", "-c", _TAGS_PROBE, packages_dir])
    try:
        tags = json.loads(result.stdout)
    except json.JSONDecodeError:
        tags = None
    if result.returncode != 0 or not isinstance(tags, list):
        raise TargetError(
            f"{interpreter.executable}: could not ask it which wheels it accepts: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return tuple(str(t) for t in tags)


def check_wheels_accepted(
    filenames: Sequence[str], tags: Sequence[str], interpreter: Interpreter
) -> None:
    """Refuse wheels none of whose tags ``interpreter`` accepts, naming them and the interpreter.

    An aarch64 wheelhouse "installed" on x86_64 would fail only at import.
    """
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    accepted = frozenset(tags)
    refused = []
    for filename in filenames:
        try:
            wheel_tags = parse_wheel_filename(filename)[-1]
        except InvalidWheelFilename:
            refused.append(filename)
            continue
        if not any(str(t) in accepted for t in wheel_tags):
            refused.append(filename)
    if refused:
        shown = "\n".join(f"  - {name}" for name in refused[:10])
        more = f"\n  … and {len(refused) - 10} more" if len(refused) > 10 else ""
        best = tags[0] if tags else "none"
        raise InstallError(
            f"{interpreter.executable} (Python {interpreter.version}) cannot run "
            f"{plural(len(refused), 'wheel')} of this wheelhouse: their tags are not among its own "
            f"(its best is {best}):\n{shown}{more}",
            hint="build the wheelhouse for this machine's platform (--platform), or install "
            "on a machine of the wheelhouse's platform",
        )
