"""Filling an environment's site-packages: wheels unpacked (checked), uninstalled by RECORD,
bytecode compiled, scripts pointed at the environment's home."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.errors import (
    InstallError,
    MalformedWheelError,
    StoreError,
)
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import agree, plural
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.environment.seal import sha256_file

if TYPE_CHECKING:
    from installer.destinations import SchemeDictionaryDestination


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


def compile_files(
    runner: Runner, python: Path, targets: Sequence[Path], reporter: Reporter
) -> None:
    """Compile directories or files; files that do not compile are reported, not fatal.

    Some wheels ship sources for other Python versions (templates, test
    fixtures); Python skips those at import too, so they cannot stop an install.
    """
    args = [str(python), "-m", "compileall", "-q", "-j", "0"]
    # unchecked-hash: the .pyc stays valid whatever the sources' mtimes become
    # (hard links, copies, image layers with mtime 0).
    args += ["--invalidation-mode", "unchecked-hash"]
    with tempfile.TemporaryDirectory(prefix="wheelbarrow-compile-") as tmp:
        if len(targets) > 50:  # a long file list goes through a file, not argv
            listing = Path(tmp) / "files"
            listing.write_text("".join(f"{t}\n" for t in targets), encoding="utf-8")
            args += ["-i", str(listing)]
        else:
            args += [str(t) for t in targets]
        result = runner(args)
    if result.returncode == 0:
        return
    failed = [
        line.split(" ", 3)[-1].strip("'. ")
        for line in result.stdout.splitlines()
        if line.startswith("*** Error compiling")
    ]
    if not failed:
        raise InstallError(
            f"could not compile bytecode: {python} exited with {result.returncode}:\n"
            f"{(result.stderr or result.stdout).strip()}"
        )
    prefix = str(targets[0].parent if targets[0].is_file() else targets[0]) + "/"
    shown = ", ".join(
        f.split("site-packages/")[-1] if "site-packages/" in f else f.removeprefix(prefix)
        for f in failed[:3]
    )
    more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
    reporter.message(
        "warning",
        f"{plural(len(failed), 'file')} {agree(len(failed), 'has', 'have')} no bytecode as "
        f"{agree(len(failed), 'it does', 'they do')} not compile for this Python: "
        f"{shown}{more}",
    )


def run_checked(runner: Runner, args: list[str], what: str) -> None:
    result = runner(args)
    if result.returncode != 0:
        raise InstallError(
            f"could not {what}: {args[0]} exited with {result.returncode}:\n{result.stderr.strip()}"
        )


def install_wheels(
    wheels: Sequence[Wheel], root: Path, site: Path, *, final_root: Path, short: str
) -> None:
    """Unpack ``wheels`` into the environment at ``root``, each checked against its sha256.

    Only a wheel that cannot be read as one is reported as malformed; errors of
    the filesystem (a full disk above all) propagate as they are.
    """
    from installer.destinations import SchemeDictionaryDestination

    scheme = {
        "purelib": str(site),
        "platlib": str(site),
        "headers": str(root / "include" / "site" / f"python{short}"),
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

    # Unpacking is zlib and file writes, which release the GIL. installer skips
    # __pycache__ entries shipped in wheels (numpy has some) and warns; we compile
    # our own bytecode anyway. The filter is set once, outside the threads, as
    # catch_warnings is not thread-safe.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skip installing .*__pycache__", RuntimeWarning)
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
            list(pool.map(functools.partial(_install_one, destination=destination), wheels))


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


def _install_one(wheel: Wheel, *, destination: SchemeDictionaryDestination) -> None:
    """Unpack one wheel, hashed and unpacked from one open file."""
    import zipfile
    import zlib

    from installer import install
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    with wheel.path.open("rb") as f:
        # Hashed and unpacked from one open file: what is installed is what was checked.
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != wheel.sha256:
            raise StoreError(
                f"{wheel.path}: sha256 is {digest}, the wheelhouse says {wheel.sha256}",
                hint="the store was damaged: run `wheelbarrow verify --repair`, "
                "then build and install again",
            )
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                install(WheelFile(archive), destination, {"INSTALLER": b"wheelbarrow\n"})
        except FileExistsError as exc:
            raise InstallError(
                f"{wheel.name}: cannot be installed: {exc}",
                hint="two packages of the lock ship the same file: drop one of them",
            ) from exc
        except (
            InstallerError,
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            ValueError,
            KeyError,
        ) as exc:
            raise MalformedWheelError(
                f"{wheel.name}: cannot be installed: {type(exc).__name__}: {exc}",
                path=str(wheel.path),
                hint="the wheel is malformed (RECORD, entry_points.txt or paths): "
                "report it to its maintainers, or pin another version",
            ) from exc
