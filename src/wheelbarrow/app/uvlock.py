"""Reading a uv project's lock: checked fresh as ``uv sync --locked`` does, exported as PEP 751."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from wheelbarrow._core.digests import file_sha256, json_sha256
from wheelbarrow._core.errors import InputError, LockError
from wheelbarrow._core.redact import redact
from wheelbarrow._core.runner import Completed, Runner
from wheelbarrow.app.managers import PYPROJECT, UV_LOCK, Groups, ManagedLock, StaleLockError
from wheelbarrow.app.target import Target

# What uv prints when uv.lock no longer matches the project files, and its own fix.
_STALE = "needs to be updated"
FIX = "uv lock"
# Bump when the same inputs must give another digest (the export's flags changed).
DIGEST_FORMAT = 1


def read_uv_lock(
    root: Path,
    *,
    groups: Groups,
    target: Target,
    uv: str,
    runner: Runner,
    environ: Mapping[str, str],
) -> ManagedLock:
    """The packages ``uv sync --locked`` would install from ``root/uv.lock``, as a PEP 751 lock.

    Freshness is checked as Heroku's Python buildpack does (its ``uv sync
    --locked`` refuses a stale lock): ``uv lock --check``, first ``--offline``
    so that an unchanged app never needs the index; only when uv cannot tell
    without it is the check repeated online. The export is ``uv export
    --format pylock.toml --frozen``: exact versions and hashes, for every
    platform (markers are evaluated later, per target). By default the
    default groups are left out (``--no-default-groups``, as Heroku deploys);
    ``groups.dev`` keeps them (uv's ``dev`` group, or ``[tool.uv]
    default-groups``), as Heroku CI does; ``groups.names`` and
    ``groups.extras`` add ``--group`` and ``--extra``. The project itself,
    its workspace members and path dependencies are exported as directories
    to build into wheels (``--no-editable``) when they are packages, and left
    out when they are not (no ``[build-system]``, or ``[tool.uv] package =
    false``), as ``uv sync`` installs them. Paths in the export are relative
    to ``root``.
    """
    lock_path = root / UV_LOCK
    pyproject = root / PYPROJECT
    if not lock_path.is_file():
        raise InputError(f"{lock_path}: no such file", hint=f"run `{FIX}` and commit {UV_LOCK}")
    if not pyproject.is_file():
        raise InputError(
            f"{lock_path}: there is no {PYPROJECT} beside it to say what it locks",
            hint=f"commit the project's {PYPROJECT} with {UV_LOCK}",
        )
    env = dict(environ)
    _check_fresh(root, uv=uv, runner=runner, env=env)
    text = _export(root, groups=groups, uv=uv, runner=runner, env=env)
    try:
        exported = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # uv wrote it: not expected
        raise LockError(f"{lock_path}: uv exported an unreadable lock: {exc}") from exc
    requires_python = exported.get("requires-python")
    requires_python = requires_python if isinstance(requires_python, str) else None
    _check_target(root, exported, requires_python, target)
    packages = [p for p in exported.get("packages", []) if isinstance(p, dict)]
    return ManagedLock(
        manager="uv",
        path=lock_path,
        digest=_digest(root, lock_path, packages, groups),
        pylock=text,
        index_urls=tuple(sorted({p["index"] for p in packages if isinstance(p.get("index"), str)})),
        requires_python=requires_python,
        notes=tuple(_notes(root, packages, groups)),
    )


def _uv(uv: str, *args: str) -> list[str]:
    # No progress bars in captured output; never a Python download behind the user's back
    # (uv checks and exports with any interpreter that requires-python admits).
    return [uv, *args, "--no-progress", "--no-python-downloads"]


def _check_fresh(root: Path, *, uv: str, runner: Runner, env: dict[str, str]) -> None:
    """Refuse a uv.lock that no longer matches pyproject.toml, with uv's own fix."""
    result = runner(_uv(uv, "lock", "--check", "--offline"), cwd=root, env=env)
    if result.returncode == 0:
        return
    if _STALE not in result.stderr:
        # Offline, uv could not tell (a new requirement it has never seen): ask the index.
        result = runner(_uv(uv, "lock", "--check"), cwd=root, env=env)
        if result.returncode == 0:
            return
    lock_path = root / UV_LOCK
    said = _said(result)
    if _STALE in result.stderr:
        raise StaleLockError(
            f"{lock_path}: out of date: it no longer matches {root / PYPROJECT} "
            f"(or a workspace member's), as `uv lock --check` says:\n{said}",
            hint=f"run `{FIX}` and commit the updated {UV_LOCK}",
        )
    raise _failure(lock_path, "could not check it against pyproject.toml", said)


def _export(root: Path, *, groups: Groups, uv: str, runner: Runner, env: dict[str, str]) -> str:
    args = _uv(
        uv, "export", "--format", "pylock.toml", "--frozen", "--offline", "--no-header",
        "--no-editable",
    )  # fmt: skip
    args += export_group_args(groups)
    result = runner(args, cwd=root, env=env)
    if result.returncode != 0:
        raise _failure(root / UV_LOCK, "could not export the locked packages", _said(result))
    return result.stdout


def export_group_args(groups: Groups) -> list[str]:
    """``uv export`` options for ``groups``: production leaves out the default groups."""
    args = [] if groups.dev else ["--no-default-groups"]
    for name in sorted(groups.names):
        args += ["--group", name]
    for extra in sorted(groups.extras):
        args += ["--extra", extra]
    return args


def _said(result: Completed) -> str:
    """uv's explanation, from its first error line, indented; its progress lines dropped."""
    lines = redact(result.stderr).strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), 0)
    kept = lines[start:] or ["uv exited without saying why"]
    return "\n".join(f"  {line}" for line in kept)


def _failure(lock_path: Path, what: str, said: str) -> InputError | LockError:
    if "is not defined" in said:  # an unknown --group or --extra
        return InputError(
            f"{lock_path}: {what}:\n{said}",
            hint=f"name a group or extra that {PYPROJECT} defines",
        )
    if "Failed to parse" in said or "unsupported" in said.lower():
        return InputError(f"{lock_path}: {what}:\n{said}", hint=f"run `{FIX}` to write it again")
    if "No interpreter found" in said:
        return LockError(
            f"{lock_path}: {what}:\n{said}",
            hint="install a Python that requires-python admits (`uv python install`)",
        )
    return LockError(
        f"{lock_path}: {what}:\n{said}",
        hint="uv's explanation is above; if the index was needed, check that it can be reached",
    )


def _check_target(
    root: Path, exported: Mapping[str, Any], requires_python: str | None, target: Target
) -> None:
    """A lock that cannot hold for the target is refused here, naming the setting to change."""
    python = target.python.full
    if requires_python:
        try:
            spec = SpecifierSet(requires_python)
        except InvalidSpecifier:
            spec = None
        if spec is not None and not spec.contains(python, prereleases=True):
            raise InputError(
                f"{root / PYPROJECT}: requires-python {requires_python!r} (as {UV_LOCK} records "
                f"it) does not admit Python {python}, the target",
                hint="target a Python that requires-python admits (.python-version), "
                f"or change requires-python and run `{FIX}`",
            )
    # [tool.uv] environments limits the platforms uv locked for; the export keeps them
    # as PEP 751 environments. None holding for the target would deploy nothing.
    environments = exported.get("environments")
    if not isinstance(environments, list) or not environments:
        return
    markers = []
    for text in environments:
        try:
            markers.append(Marker(str(text)))
        except InvalidMarker:
            return  # uv wrote it: a spelling packaging cannot read is not ours to refuse
    if not any(m.evaluate(dict(target.environment)) for m in markers):  # type: ignore[arg-type]
        listing = "\n".join(f"  - {e}" for e in environments)
        raise InputError(
            f"{root / UV_LOCK}: locked only for these environments, none of them {target}:\n"
            f"{listing}",
            hint=f"add the target to [tool.uv] environments in {PYPROJECT} and run `{FIX}`",
        )


def _digest(
    root: Path, lock_path: Path, packages: Sequence[Mapping[str, Any]], groups: Groups
) -> str:
    """A hash of uv.lock, the pyproject.toml of every local project it deploys, and the groups."""
    projects = {".": root / PYPROJECT}
    for package in packages:
        directory = package.get("directory")
        if isinstance(directory, dict) and isinstance(directory.get("path"), str):
            projects[directory["path"]] = root / directory["path"] / PYPROJECT
    data = {
        "format": DIGEST_FORMAT,
        "uv.lock": _file_sha256(lock_path),
        "pyprojects": {rel: _file_sha256(path) for rel, path in sorted(projects.items())},
        "groups": groups.as_dict(),
    }
    return "sha256:" + json_sha256(data)


def _file_sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:  # a path dependency without a pyproject.toml (setup.py only)
        return None


def _notes(root: Path, packages: Sequence[Mapping[str, Any]], groups: Groups) -> list[str]:
    notes = []
    name = _project_name(root)
    names = {str(p.get("name")) for p in packages}
    if name is not None and name not in names and _has_project(root):
        notes.append(
            f"the project {name} is not a package (no [build-system], or [tool.uv] package = "
            "false): only its dependencies are deployed, as `uv sync` does"
        )
    for package in packages:
        directory = package.get("directory")
        vcs = package.get("vcs")
        if isinstance(directory, dict):
            path = str(directory.get("path"))
            what = f"the project {package.get('name')}"
            if path != ".":
                what = f"{package.get('name')} ({path})"
            notes.append(f"{what} is built as a wheel and installed, not editable")
        elif isinstance(vcs, dict):
            commit = str(vcs.get("commit-id", ""))[:12]
            notes.append(
                f"{package.get('name')} is built as a wheel from {vcs.get('url')} at {commit}"
            )
    wanted = [
        *(f"group {g}" for g in sorted(groups.names)),
        *(f"extra {e}" for e in sorted(groups.extras)),
    ]
    if groups.dev:
        wanted.insert(0, "the default groups (dev)")
    if wanted:
        notes.append("with " + ", ".join(wanted))
    return notes


def _pyproject(root: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((root / PYPROJECT).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _has_project(root: Path) -> bool:
    return isinstance(_pyproject(root).get("project"), dict)


def _project_name(root: Path) -> str | None:
    from packaging.utils import canonicalize_name

    project = _pyproject(root).get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return canonicalize_name(name) if isinstance(name, str) else None
