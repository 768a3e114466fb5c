"""Filling an environment's site-packages: wheels unpacked (checked) with their bytecode,
uninstalled by RECORD, scripts pointed at the environment's home."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelbarrow._core.errors import InstallError
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import agree, plural
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.environment.seal import SealedFile, sha256_file


@dataclass(frozen=True, slots=True, kw_only=True)
class Wheel:
    """A wheel to install and the sha256 it must have (from a wheelhouse manifest)."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Wheel:
        """A wheel whose expected hash is what it holds now (a caller without a manifest)."""
        return cls(path=path, sha256=sha256_file(path))

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name


def site_packages(root: Path, interpreter: Interpreter) -> Path:
    return root / "lib" / f"python{interpreter.short}" / "site-packages"


def site_files(site: Path) -> set[Path]:
    return {p for p in site.rglob("*") if p.is_file()}


def uninstall(site: Path, wheel_filename: str) -> None:
    """Remove an installed distribution by its RECORD (unlinking: the store's copy stays)."""
    from packaging.utils import parse_wheel_filename

    name, version, *_ = parse_wheel_filename(wheel_filename)
    normal = name.replace("-", "_")
    candidates = [
        d
        for d in site.glob("*.dist-info")
        if d.name.lower() == f"{normal}-{version}.dist-info".lower()
    ]
    if not candidates:
        raise InstallError(f"{wheel_filename}: not found in the environment to derive from")
    record = candidates[0] / "RECORD"
    try:
        lines = record.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise InstallError(f"{record}: missing in the environment to derive from") from exc
    dirs: set[Path] = set()
    for line in lines:
        path = line.rsplit(",", 2)[0]
        if not path:
            continue
        target = (site / path).resolve() if ".." in path else site / path
        if target.suffix == ".py":
            cache = target.parent / "__pycache__"
            for pyc in cache.glob(f"{target.stem}.*.pyc"):
                pyc.unlink()
            dirs.add(cache)
        target.unlink(missing_ok=True)
        dirs.add(target.parent)
    shutil.rmtree(candidates[0], ignore_errors=True)
    for directory in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty


def report_uncompiled(files: Sequence[str], site: Path, reporter: Reporter) -> None:
    """Warn about sources that have no bytecode because they do not compile.

    Some wheels ship sources for other Python versions (templates, test
    fixtures); Python skips those at import too, so they cannot stop an install.
    """
    if not files:
        return
    prefix = str(site) + os.sep
    shown = ", ".join(f.removeprefix(prefix) for f in files[:3])
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    reporter.message(
        "warning",
        f"{plural(len(files), 'file')} {agree(len(files), 'has', 'have')} no bytecode as "
        f"{agree(len(files), 'it does', 'they do')} not compile for this Python: "
        f"{shown}{more}",
    )


def run_checked(runner: Runner, args: list[str], what: str) -> None:
    result = runner(args)
    if result.returncode != 0:
        raise InstallError(
            f"could not {what}: {args[0]} exited with {result.returncode}:\n{result.stderr.strip()}"
        )


def install_wheels(
    wheels: Sequence[Wheel],
    root: Path,
    site: Path,
    *,
    final_root: Path,
    interpreter: Interpreter,
    compile_bytecode: bool,
    reporter: Reporter,
) -> dict[str, SealedFile]:
    """Unpack ``wheels`` into the environment at ``root``, each checked against its sha256,
    with bytecode when ``compile_bytecode``; returns each file written, by relative path.

    Unpacking and compiling run in worker processes of ``interpreter`` (see
    :mod:`wheelbarrow.environment.unpack`). Only a wheel that cannot be read as
    one is reported as malformed; errors of the filesystem (a full disk above
    all) propagate as they are.
    """
    from installer.destinations import SchemeDictionaryDestination

    from wheelbarrow.environment.unpack import unpack_wheels

    scheme = {
        "purelib": str(site),
        "platlib": str(site),
        "headers": str(root / "include" / "site" / f"python{interpreter.short}"),
        "scripts": str(root / "bin"),
        "data": str(root),
    }
    destination = SchemeDictionaryDestination(
        scheme,
        # Scripts name the environment's final home, not this scratch copy.
        interpreter=str(final_root / "bin" / "python"),
        script_kind="posix",
        bytecode_optimization_levels=(),
    )
    installed = unpack_wheels(
        wheels,
        destination,
        python=interpreter.executable,
        root=root,
        final_root=final_root,
        compile_bytecode=compile_bytecode,
    )
    report_uncompiled(installed.uncompiled, site, reporter)
    return installed.files


def relocate(root: Path, *, old: str, new: str) -> dict[str, str]:
    """Point scripts and pyvenv.cfg of the environment at ``root``'s new name.

    Files are replaced, never edited in place: they may be hard links into the
    store. Returns the sha256 of each rewritten file, by path relative to ``root``.
    """
    old_b, new_b = old.encode(), new.encode()
    candidates = [root / "pyvenv.cfg"]
    bin_dir = root / "bin"
    if bin_dir.is_dir():
        candidates += [p for p in bin_dir.iterdir() if p.is_file() and not p.is_symlink()]
    rewritten: dict[str, str] = {}
    for path in candidates:
        data = path.read_bytes()
        if old_b not in data:
            continue
        mode = path.stat().st_mode
        tmp = path.with_name(path.name + ".wb-tmp")
        data = data.replace(old_b, new_b)
        tmp.write_bytes(data)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, path)
        rewritten[path.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return rewritten
