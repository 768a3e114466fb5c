"""Environments: built once per wheelhouse and interpreter in the store, then cloned by links."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wheelbarrow.errors import InstallError
from wheelbarrow.interpreters import Interpreter
from wheelbarrow.report import Reporter
from wheelbarrow.runner import Runner
from wheelbarrow.scratch import clean_stale, scratch
from wheelbarrow.store import Store

MARKER = ".wheelbarrow-env.json"
LinkMode = Literal["hardlink", "copy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallReport:
    """What ``install`` did."""

    path: Path
    env_key: str
    status: Literal["up-to-date", "cloned", "built-and-cloned"]
    interpreter: Interpreter
    packages: int
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        """The versioned machine-readable form (``--json``)."""
        return {
            "version": 1,
            "environment": str(self.path),
            "env_key": self.env_key,
            "status": self.status,
            "python": str(self.interpreter.executable),
            "python_version": self.interpreter.version,
            "packages": self.packages,
            "seconds": round(self.seconds, 3),
        }


def env_key(wheelhouse_key: str, interpreter: Interpreter) -> str:
    """The key of the environment made from a wheelhouse with an interpreter."""
    data = f"{wheelhouse_key}\0{interpreter.executable}\0{interpreter.version}\0env-1"
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def read_marker(path: Path) -> dict[str, object] | None:
    """The marker wheelbarrow leaves in environments it made, or None."""
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def build_store_env(
    wheels: Sequence[Path],
    *,
    key: str,
    wheelhouse_key: str,
    interpreter: Interpreter,
    store: Store,
    runner: Runner,
    reporter: Reporter,
    compile_bytecode: bool = True,
) -> Path:
    """Make the environment for ``key`` in the store, once; later calls return at once.

    When the store holds an environment of the same interpreter that shares
    wheels with this one, the new one is derived from it: cloned by hard
    links, the wheels that differ uninstalled and installed, and only the new
    files compiled. Changing one pin then reinstalls one package. Build
    environments pass ``compile_bytecode=False``: they are not shipped.
    """
    final = store.env(key)
    if read_marker(final) is not None:
        return final
    with store.lock(f"env-{key}"):
        if read_marker(final) is not None:
            return final
        with store.scratch(f"env-{key[:16]}-") as holder:
            work = holder / "env"
            base = _closest_env(store, interpreter, wheels) if compile_bytecode else None
            derived = False
            if base is not None:
                try:
                    _derive(base, wheels, work, final, interpreter, runner, reporter)
                    derived = True
                except (OSError, InstallError) as exc:
                    reporter.message("info", f"starting afresh ({exc})")
                    shutil.rmtree(work, ignore_errors=True)
            if not derived:
                _fresh(wheels, work, final, interpreter, runner, reporter, compile_bytecode)
            (work / MARKER).write_text(
                json.dumps(
                    {
                        "env_key": key,
                        "wheelhouse": wheelhouse_key,
                        "python": str(interpreter.executable),
                        "python_version": interpreter.version,
                        "wheels": sorted(w.name for w in wheels),
                        "bytecode": compile_bytecode,
                    }
                )
                + "\n",
                encoding="utf-8",
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                # No marker, yet there: a damaged or partly deleted store entry.
                # The store is a cache; the new one replaces it.
                reporter.message(
                    "info", f"replacing an incomplete environment in the store: {final}"
                )
                os.rename(final, holder / "damaged")  # removed with the scratch entry
            os.rename(work, final)
    return final


def _site(root: Path, interpreter: Interpreter) -> Path:
    return root / "lib" / f"python{interpreter.short}" / "site-packages"


def _fresh(
    wheels: Sequence[Path],
    work: Path,
    final: Path,
    interpreter: Interpreter,
    runner: Runner,
    reporter: Reporter,
    compile_bytecode: bool,
) -> None:
    reporter.message("step", f"Creating the environment with Python {interpreter.version}")
    _run(
        runner,
        [str(interpreter.executable), "-m", "venv", "--without-pip", str(work)],
        "create the virtual environment",
    )
    site = _site(work, interpreter)
    reporter.message("step", f"Installing {len(wheels)} wheel(s)")
    _install_wheels(wheels, work, site, final_root=final, short=interpreter.short)
    if compile_bytecode:
        reporter.message("step", "Compiling bytecode")
        _compile(runner, work / "bin" / "python", [site], reporter)
    _relocate(work, old=str(work), new=str(final))


def _closest_env(store: Store, interpreter: Interpreter, wheels: Sequence[Path]) -> Path | None:
    """The stored environment of this interpreter sharing the most wheels (at least half)."""
    wanted = {w.name for w in wheels}
    best: tuple[int, Path] | None = None
    envs = store.root / "envs"
    if not envs.is_dir():
        return None
    for candidate in envs.iterdir():
        marker = read_marker(candidate)
        if (
            marker is None
            or marker.get("python") != str(interpreter.executable)
            or marker.get("python_version") != interpreter.version
            or not marker.get("bytecode")
            or not isinstance(marker.get("wheels"), list)
        ):
            continue
        shared = len(wanted & {str(w) for w in marker["wheels"]})  # type: ignore[attr-defined]
        if shared * 2 >= len(wanted) and shared and (best is None or shared > best[0]):
            best = (shared, candidate)
    return best[1] if best else None


def _derive(
    base: Path,
    wheels: Sequence[Path],
    work: Path,
    final: Path,
    interpreter: Interpreter,
    runner: Runner,
    reporter: Reporter,
) -> None:
    """Make ``work`` from ``base``: hard-link it, swap the wheels that differ, compile those."""
    marker = read_marker(base) or {}
    listed = marker.get("wheels", [])
    old = {str(w) for w in listed} if isinstance(listed, list) else set()
    by_name = {w.name: w for w in wheels}
    remove = sorted(old - by_name.keys())
    add = [by_name[n] for n in sorted(by_name.keys() - old)]
    reporter.message(
        "step",
        f"Deriving the environment from a stored one: {len(add)} wheel(s) in, "
        f"{len(remove)} out, {len(old & by_name.keys())} kept",
    )
    _link_tree(base, work, hardlink=True)
    (work / MARKER).unlink(missing_ok=True)
    site = _site(work, interpreter)
    for filename in remove:
        _uninstall(site, filename)
    _relocate(work, old=str(base), new=str(final))
    if add:
        before = _snapshot(site)
        _install_wheels(add, work, site, final_root=final, short=interpreter.short)
        new_files = sorted(str(p) for p in _snapshot(site) - before if p.suffix == ".py")
        if new_files:
            _compile(runner, work / "bin" / "python", [Path(f) for f in new_files], reporter)


def _snapshot(site: Path) -> set[Path]:
    return {p for p in site.rglob("*") if p.is_file()}


def _uninstall(site: Path, wheel_filename: str) -> None:
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
    dirs: set[Path] = set()
    for line in record.read_text(encoding="utf-8").splitlines():
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


def _compile(runner: Runner, python: Path, targets: Sequence[Path], reporter: Reporter) -> None:
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
        f"{len(failed)} file(s) have no bytecode as they do not compile for this Python: "
        f"{shown}{more}",
    )


def _run(runner: Runner, args: list[str], what: str) -> None:
    result = runner(args)
    if result.returncode != 0:
        raise InstallError(
            f"could not {what}: {args[0]} exited with {result.returncode}:\n{result.stderr.strip()}"
        )


def _install_wheels(
    wheels: Sequence[Path], root: Path, site: Path, *, final_root: Path, short: str
) -> None:
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

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

    def one(wheel: Path) -> None:
        try:
            with WheelFile.open(wheel) as source:
                install(source, destination, {"INSTALLER": b"wheelbarrow\n"})
        except Exception as exc:
            raise InstallError(
                f"{wheel.name}: cannot be installed: {type(exc).__name__}: {exc}",
                hint="the wheel is malformed (RECORD, entry_points.txt or paths): "
                "report it to its maintainers, or pin another version",
            ) from exc

    # Unpacking is zlib and file writes, which release the GIL. installer skips
    # __pycache__ entries shipped in wheels (numpy has some) and warns; we compile
    # our own bytecode anyway. The filter is set once, outside the threads, as
    # catch_warnings is not thread-safe.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skip installing .*__pycache__", RuntimeWarning)
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
            list(pool.map(one, wheels))


def _relocate(root: Path, *, old: str, new: str) -> None:
    """Point scripts and pyvenv.cfg of the environment at ``root``'s new name.

    Files are replaced, never edited in place: they may be hard links into the store.
    """
    old_b, new_b = old.encode(), new.encode()
    candidates = [root / "pyvenv.cfg"]
    bin_dir = root / "bin"
    if bin_dir.is_dir():
        candidates += [p for p in bin_dir.iterdir() if p.is_file() and not p.is_symlink()]
    for path in candidates:
        data = path.read_bytes()
        if old_b not in data:
            continue
        mode = path.stat().st_mode
        tmp = path.with_name(path.name + ".wb-tmp")
        tmp.write_bytes(data.replace(old_b, new_b))
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, path)


def clone_env(source: Path, dest: Path, *, mode: LinkMode = "hardlink") -> None:
    """Make ``dest`` a copy of the store environment ``source`` that runs from ``dest``.

    Files are hard-linked (falling back to copies across filesystems); the
    new tree is built beside ``dest`` and renamed into place, so ``dest`` is
    never half-written. A previous wheelbarrow environment at ``dest`` is
    replaced; anything else there is left alone and reported.
    """
    dest = dest.absolute()
    if dest.exists() and read_marker(dest) is None and any(dest.iterdir()):
        raise InstallError(
            f"{dest}: exists and is not an environment made by wheelbarrow",
            hint="pick another --into directory, or remove this one",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.wheelbarrow-"
    clean_stale(dest.parent, prefix)  # left by a killed install into the same place
    with scratch(dest.parent, prefix) as holder:
        work = holder / "env"
        _link_tree(source, work, hardlink=(mode == "hardlink"))
        _relocate(work, old=str(source), new=str(dest))
        if dest.exists():
            os.rename(dest, holder / "old")  # removed with the scratch entry
        os.rename(work, dest)


def _link_tree(src: Path, dst: Path, *, hardlink: bool) -> None:
    """Recreate ``src`` at ``dst``: directories made, symlinks copied, files linked."""
    link = os.link if hardlink else None
    src_s = os.fspath(src)
    cut = len(src_s)
    dst_s = os.fspath(dst)
    os.mkdir(dst_s)
    for dirpath, dirnames, filenames in os.walk(src_s):
        rel = dirpath[cut:]
        target_dir = dst_s + rel
        for name in dirnames:
            s = os.path.join(dirpath, name)
            d = os.path.join(target_dir, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
            else:
                os.mkdir(d)
        for name in filenames:
            s = os.path.join(dirpath, name)
            d = os.path.join(target_dir, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
                continue
            if link is not None:
                try:
                    link(s, d)
                    continue
                except OSError:
                    link = None  # another filesystem: copy from here on
            shutil.copy2(s, d)
