"""Local source trees for builds: copy a project safely, read its ``[build-system]``, patch it."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from wheelbarrow._core.digests import source_entries
from wheelbarrow._core.errors import InputError, PatchError, ToolError, UnsafeArchiveError
from wheelbarrow._core.files import temporary_sibling
from wheelbarrow._core.runner import Runner
from wheelbarrow.system.toolchain import SystemRequirement, missing_error

__all__ = [
    "DEFAULT_BUILD_SYSTEM",
    "BuildSystem",
    "apply_patches",
    "copy_source_tree",
    "read_build_system",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildSystem:
    """A project's ``[build-system]`` (PEP 517/518): what to install, then which backend to call."""

    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] = ()


DEFAULT_BUILD_SYSTEM = BuildSystem(
    requires=("setuptools>=40.8.0",), backend="setuptools.build_meta:__legacy__"
)


# -- local source trees --------------------------------------------------------


def copy_source_tree(src: Path, dest: Path) -> Path:
    """Copy a local project into ``dest`` (which must not exist) for a build, and return ``dest``.

    Skips VCS data, environments, caches, ``*.egg-info``, the top-level
    ``build/`` and ``dist/``, and a crate's top ``target/``. Keeps symlinks that
    stay inside ``src`` (absolute ones are made relative, so the copy does not
    point back at the original) and refuses those that leave it with
    :class:`UnsafeArchiveError`.
    """
    if not src.is_dir():
        raise InputError(f"{src} is not a directory", hint="point the requirement at a project")
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    real_src = src.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(dest)
    tmp.mkdir()
    try:
        for rel, path, st in source_entries(src):
            target = tmp / rel
            if stat.S_ISDIR(st.st_mode):
                target.mkdir()
            elif stat.S_ISLNK(st.st_mode):
                target.symlink_to(_inside_link(path, rel, real_src, label=str(src)))
            else:
                shutil.copyfile(path, target, follow_symlinks=False)
                target.chmod(0o755 if st.st_mode & 0o100 else 0o644)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _inside_link(path: Path, rel: str, real_src: Path, *, label: str) -> Path:
    """The target to give a copy of the symlink at ``path``; refuses one that leaves the tree."""
    link = path.readlink()
    real = path.resolve()
    if not real.is_relative_to(real_src):
        raise UnsafeArchiveError(
            f"refusing to copy {label}: {rel!r} is a symlink to {str(link)!r}, outside the project",
            member=rel,
            hint="replace the symlink by the file, or build from a directory that contains it",
        )
    if link.is_absolute():
        return Path(os.path.relpath(real, (real_src / rel).parent))
    return link


# -- [build-system] ------------------------------------------------------------

_BACKEND = re.compile(r"[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?")


def read_build_system(root: Path, *, label: str | None = None) -> BuildSystem:
    """The ``[build-system]`` of the project at ``root``, with the PEP 517/518 defaults.

    No ``pyproject.toml`` or no table: setuptools' legacy backend. A table
    without ``build-backend`` keeps its ``requires`` with the legacy backend.
    Every problem (invalid TOML, wrong types, an invalid requirement, a
    ``backend-path`` outside the project) is reported at once as an
    :class:`InputError` naming the file (``label: pyproject.toml`` if given).
    """
    path = root / "pyproject.toml"
    where = f"{label}: pyproject.toml" if label else str(path)
    if not path.is_file():
        return DEFAULT_BUILD_SYSTEM
    hint = "fix the [build-system] table (PEP 517/518)"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: invalid TOML: {exc}", hint=hint) from exc
    table = data.get("build-system")
    if table is None:
        return DEFAULT_BUILD_SYSTEM
    if not isinstance(table, dict):
        raise InputError(f"{where}: [build-system] must be a table", hint=hint)
    problems: list[str] = []
    requires = _string_list(table, "requires", where, problems)
    if "requires" not in table:
        problems.append(f"{where}: build-system.requires is missing (PEP 518 requires it)")
    for requirement in requires:
        try:
            Requirement(requirement)
        except InvalidRequirement as exc:
            # packaging's message points at the bad character on extra lines.
            detail = str(exc).replace("\n", "\n  ")
            problems.append(f"{where}: build-system.requires: invalid {requirement!r}: {detail}")
    backend = table.get("build-backend", DEFAULT_BUILD_SYSTEM.backend)
    if not isinstance(backend, str) or not _BACKEND.fullmatch(backend):
        problems.append(
            f"{where}: build-system.build-backend must be 'module:object', not {backend!r}"
        )
    backend_path = _string_list(table, "backend-path", where, problems)
    real_root = root.resolve()
    for entry in backend_path:
        if Path(entry).is_absolute() or not (real_root / entry).resolve().is_relative_to(real_root):
            problems.append(
                f"{where}: build-system.backend-path {entry!r} is outside the project (PEP 517)"
            )
    if problems:
        raise InputError("\n".join(problems), hint=hint)
    return BuildSystem(
        requires=tuple(requires), backend=str(backend), backend_path=tuple(backend_path)
    )


def _string_list(table: dict[str, object], key: str, where: str, problems: list[str]) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: build-system.{key} must be a list of strings, not {value!r}")
        return []
    return [str(v) for v in value]


# -- patches -------------------------------------------------------------------

_PATCH_OUTPUT_LINES = 40


def apply_patches(
    root: Path, patches: Sequence[Path], *, runner: Runner, label: str | None = None
) -> None:
    """Apply unified diffs in order with ``patch -p1`` run in ``root``.

    Each patch is first tried with ``--dry-run``, so one that does not apply
    leaves the tree as the patches before it left it, and raises
    :class:`PatchError` naming the patch and quoting ``patch``'s output. A
    missing ``patch`` program raises
    :class:`~wheelbarrow._core.errors.SystemRequirementError`.
    """
    name = label or str(root)
    for patch in patches:
        if not patch.is_file():
            raise InputError(f"patch {patch} does not exist", hint="fix the path to the patch")
        # --forward refuses an already applied patch instead of reversing it;
        # no .orig backups, which would end up in the built wheel's sdist.
        args = ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch"]
        args += ["-i", str(patch.resolve())]
        for attempt in (["--dry-run"], []):
            try:
                result = runner([*args, *attempt], cwd=root)
            except ToolError as exc:
                patch_program = SystemRequirement(kind="cmd", name="patch")
                raise missing_error([patch_program], label=f"patching {name}") from exc
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip().splitlines()
                tail = "\n".join(f"    {line}" for line in output[-_PATCH_OUTPUT_LINES:])
                raise PatchError(
                    f"patch {patch} does not apply to {name}:\n{tail}",
                    hint="update the patch for this version of the source, or drop it",
                )
