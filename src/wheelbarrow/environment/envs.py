"""Environments: built once per wheelhouse and interpreter in the store, sealed, cloned by links."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wheelbarrow._core.errors import (
    EnvironmentEditedError,
    InstallError,
    MalformedWheelError,
    StoreError,
)
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.scratch import clean_stale, scratch
from wheelbarrow._core.text import agree, plural
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.environment.seal import (
    SEAL,
    Scan,
    Seal,
    SealCheck,
    SealedFile,
    SealProblem,
    describe,
    make_seal,
    read_seal,
    regenerable,
    scan_tree,
    sha256_file,
)
from wheelbarrow.store.store import Store

MARKER = ".wheelbarrow-env.json"
LinkMode = Literal["hardlink", "copy"]
InstallStatus = Literal["up-to-date", "cloned", "built-and-cloned"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallReport:
    """What ``install`` did."""

    path: Path
    env_key: str
    status: InstallStatus
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


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreEnv:
    """A stored environment ready to clone, and whether this call made it."""

    path: Path
    made: bool


def manifest_wheels(wheelhouse: Path, manifest: Mapping[str, Any]) -> list[Wheel]:
    """The wheels of a wheelhouse with the sha256 its manifest gives each."""
    return [
        Wheel(path=wheelhouse / str(w["filename"]), sha256=str(w["sha256"]))
        for w in manifest["wheels"]
    ]


def build_store_env(
    wheels: Sequence[Path | Wheel],
    *,
    key: str,
    wheelhouse_key: str,
    interpreter: Interpreter,
    store: Store,
    runner: Runner,
    reporter: Reporter,
    compile_bytecode: bool = True,
) -> Path:
    """The path of :func:`ensure_store_env`'s environment."""
    return ensure_store_env(
        wheels,
        key=key,
        wheelhouse_key=wheelhouse_key,
        interpreter=interpreter,
        store=store,
        runner=runner,
        reporter=reporter,
        compile_bytecode=compile_bytecode,
    ).path


def ensure_store_env(
    wheels: Sequence[Path | Wheel],
    *,
    key: str,
    wheelhouse_key: str,
    interpreter: Interpreter,
    store: Store,
    runner: Runner,
    reporter: Reporter,
    compile_bytecode: bool = True,
) -> StoreEnv:
    """Make the environment for ``key`` in the store, once, and sealed; later calls check it.

    A stored environment is returned only when it passes its seal (see
    :mod:`wheelbarrow.environment.seal`): one that was edited in place, lost files or
    gained some is set aside, reported with the files, and built again.

    When the store holds an environment of the same interpreter that shares
    wheels with this one (by sha256, not by file name), the new one is derived
    from it: cloned by links, the wheels that differ uninstalled and
    installed, and only the new files compiled. Changing one pin then
    reinstalls one package. Build environments pass ``compile_bytecode=False``:
    they are not shipped. Wheels given as paths are hashed; those given as
    :class:`Wheel` must have their sha256, checked as they are read.
    """
    final = store.env(key)
    if _inspect(final).sound:
        return StoreEnv(path=final, made=False)
    with store.lock(f"env-{key}"):
        state = _inspect(final)
        if state.sound:
            return StoreEnv(path=final, made=False)
        store.clean_stale_tmp()  # a killed build of this (or any) environment left its scratch
        wanted = [w if isinstance(w, Wheel) else Wheel.of(w) for w in wheels]
        with store.scratch(f"env-{key[:16]}-") as holder:
            if state.kind != "absent":
                _report_unsound(final, state, reporter)
                # The store is a cache: the broken entry goes with the scratch entry.
                os.rename(final, holder / "set-aside")
            work = holder / "env"
            base = _closest_env(store, interpreter, wanted) if compile_bytecode else None
            seal: Seal | None = None
            if base is not None:
                # Leased while it is read, so that `store gc` cannot take it away midway; if
                # gc removed it before, it has no seal now and the environment starts afresh.
                with store.use("env", base.name):
                    try:
                        seal = _derive(base, wanted, work, final, interpreter, runner, reporter)
                    except _BaseEdited as exc:
                        _set_aside(store, base, exc.check, reporter)
                    except InstallError as exc:
                        reporter.message("info", f"starting afresh ({exc})")
                if seal is None:
                    shutil.rmtree(work, ignore_errors=True)
            if seal is None:
                _fresh(wanted, work, final, interpreter, runner, reporter, compile_bytecode)
            (work / MARKER).write_text(
                json.dumps(
                    {
                        "env_key": key,
                        "wheelhouse": wheelhouse_key,
                        "python": str(interpreter.executable),
                        "python_version": interpreter.version,
                        "wheels": [
                            {"filename": w.name, "sha256": w.sha256}
                            for w in sorted(wanted, key=lambda w: (w.name, w.sha256))
                        ],
                        "bytecode": compile_bytecode,
                    }
                )
                + "\n",
                encoding="utf-8",
            )
            # Sealed before it is renamed into place: a stored environment always has its seal.
            make_seal(work, known=seal).write(work)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(work, final)
    return StoreEnv(path=final, made=True)


def ensure_wheelhouse_env(
    store: Store,
    house_key: str,
    manifest: Mapping[str, Any],
    interpreter: Interpreter,
    *,
    runner: Runner,
    reporter: Reporter,
) -> tuple[str, StoreEnv]:
    """The key and :func:`ensure_store_env` environment of a stored wheelhouse and interpreter."""
    key = env_key(house_key, interpreter)
    made = ensure_store_env(
        manifest_wheels(store.wheelhouse(house_key), manifest),
        key=key,
        wheelhouse_key=house_key,
        interpreter=interpreter,
        store=store,
        runner=runner,
        reporter=reporter,
    )
    return key, made


def install_from_store(
    store: Store,
    house_key: str,
    manifest: Mapping[str, Any],
    interpreter: Interpreter,
    *,
    dest: Path,
    mode: LinkMode,
    runner: Runner,
    reporter: Reporter,
) -> bool:
    """Clone the store's environment for the wheelhouse to ``dest``; True when it was made now.

    A sealed stored environment is checked as it is cloned, not before as
    well (a warm install walks it once); one that fails is set aside, made
    again and cloned.
    """
    stored = store.env(env_key(house_key, interpreter))
    if sealed_env_exists(stored):
        try:
            clone_env(stored, dest, mode=mode)
            return False
        except EnvironmentEditedError:
            pass  # ensure_wheelhouse_env says what changed, and makes it again
    _, made = ensure_wheelhouse_env(
        store, house_key, manifest, interpreter, runner=runner, reporter=reporter
    )
    clone_env(made.path, dest, mode=mode)
    return made.made


@dataclass(frozen=True, slots=True, kw_only=True)
class _State:
    kind: Literal["absent", "incomplete", "unsealed", "sealed"]
    check: SealCheck | None = None

    @property
    def sound(self) -> bool:
        return self.kind == "sealed" and self.check is not None and self.check.ok


def sealed_env_exists(path: Path) -> bool:
    """Whether ``path`` holds a complete, sealed environment (not checking the seal).

    For callers that check it as they clone it (:func:`clone_env` does).
    """
    return (path / MARKER).is_file() and (path / SEAL).is_file()


def _inspect(path: Path, scan: Scan | None = None) -> _State:
    """What the stored environment at ``path`` is: absent, incomplete, unsealed or checked."""
    if read_marker(path) is None:
        return _State(kind="incomplete" if os.path.lexists(path) else "absent")
    seal = read_seal(path)
    if seal is None:
        return _State(kind="unsealed")
    try:
        check = seal.check(path, scan)
    except FileNotFoundError:  # removed while being checked
        return _State(kind="incomplete" if os.path.lexists(path) else "absent")
    if check.ok and check.restated:
        # Same bytes, new stats (touched, or the store was copied): record them,
        # so the next check is a stat pass again. Best effort.
        with contextlib.suppress(OSError):
            seal.refreshed(check.restated).write(path)
    return _State(kind="sealed", check=check)


def _report_unsound(path: Path, state: _State, reporter: Reporter) -> None:
    if state.kind == "incomplete":
        # No marker, yet there: a damaged or partly deleted store entry.
        reporter.message("info", f"replacing an incomplete environment in the store: {path}")
    elif state.kind == "unsealed":
        reporter.message(
            "info", f"replacing an environment in the store that has no seal (older): {path}"
        )
    elif state.check is not None:
        reporter.message("warning", edited_message(path, state.check.problems))


def edited_message(path: Path, problems: Sequence[SealProblem]) -> str:
    """What to tell the user about a stored environment that no longer matches its seal."""
    text = (
        f"the stored environment {path} changed after it was sealed: "
        f"{plural(len(problems), 'file')} {agree(len(problems), 'differs', 'differ')}: "
        f"{describe(problems)}."
    )
    if any(p.problem == "changed" for p in problems):
        text += (
            " An environment installed from it by hard links shares its files and was "
            "edited in place; every environment installed from it holds that edit: "
            "install them again."
        )
    return text + " Setting it aside and building it again."


def _set_aside(store: Store, path: Path, check: SealCheck, reporter: Reporter) -> None:
    """Move an edited stored environment out of the way, unless someone replaced it meanwhile."""
    from filelock import Timeout

    try:
        with store.lock(f"env-{path.name}").acquire(timeout=10):
            if _inspect(path).sound:
                return
            reporter.message("warning", edited_message(path, check.problems))
            with store.scratch(f"aside-{path.name[:16]}-") as holder:
                os.rename(path, holder / "env")
    except Timeout:
        pass  # its builder holds it, and checks it itself


class _BaseEdited(Exception):
    """The environment chosen to derive from fails its seal."""

    def __init__(self, check: SealCheck) -> None:
        super().__init__("the environment to derive from changed after it was sealed")
        self.check = check


def _site(root: Path, interpreter: Interpreter) -> Path:
    return root / "lib" / f"python{interpreter.short}" / "site-packages"


def _fresh(
    wheels: Sequence[Wheel],
    work: Path,
    final: Path,
    interpreter: Interpreter,
    runner: Runner,
    reporter: Reporter,
    compile_bytecode: bool,
) -> None:
    reporter.message("step", f"Creating the environment with Python {interpreter.version}")
    _check_call(
        runner,
        [str(interpreter.executable), "-m", "venv", "--without-pip", str(work)],
        "create the virtual environment",
    )
    site = _site(work, interpreter)
    reporter.message("step", f"Installing {plural(len(wheels), 'wheel')}")
    _install_wheels(wheels, work, site, final_root=final, short=interpreter.short)
    if compile_bytecode:
        reporter.message("step", "Compiling bytecode")
        _compile(runner, work / "bin" / "python", [site], reporter)
    _relocate(work, old=str(work), new=str(final))


def _marker_wheels(marker: Mapping[str, object]) -> set[tuple[str, str]] | None:
    """The (file name, sha256) of each wheel a marker lists; None for an older marker."""
    listed = marker.get("wheels")
    if not isinstance(listed, list):
        return None
    pairs = set()
    for w in listed:
        if not isinstance(w, dict) or not isinstance(w.get("sha256"), str):
            return None
        pairs.add((str(w.get("filename")), str(w["sha256"])))
    return pairs


def _closest_env(store: Store, interpreter: Interpreter, wheels: Sequence[Wheel]) -> Path | None:
    """The sealed stored environment of this interpreter sharing the most wheels (at least half).

    Wheels are the same when their content is: a wheel rebuilt under the same
    file name (new settings, toolchain or source) is another wheel.
    """
    wanted = {(w.name, w.sha256) for w in wheels}
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
            or not (candidate / SEAL).is_file()
        ):
            continue
        have = _marker_wheels(marker)
        if have is None:
            continue
        shared = len(wanted & have)
        if shared * 2 >= len(wanted) and shared and (best is None or shared > best[0]):
            best = (shared, candidate)
    return best[1] if best else None


def _derive(
    base: Path,
    wheels: Sequence[Wheel],
    work: Path,
    final: Path,
    interpreter: Interpreter,
    runner: Runner,
    reporter: Reporter,
) -> Seal:
    """Make ``work`` from ``base``: link it, swap the wheels that differ, compile those.

    ``base`` is checked against its seal while it is linked; its seal is
    returned, so that the files kept need not be hashed again.
    """
    marker = read_marker(base) or {}
    old = _marker_wheels(marker) or set()
    seal = read_seal(base)
    if seal is None:
        raise InstallError(f"{base}: has no seal")
    new = {(w.name, w.sha256): w for w in wheels}
    remove = sorted(old - new.keys())
    add = [new[k] for k in sorted(new.keys() - old)]
    scan, _, _ = _link_tree(base, work, mode="hardlink")
    check = seal.check(base, scan)
    if not check.ok:
        raise _BaseEdited(check)
    reporter.message(
        "step",
        f"Deriving the environment from a stored one: {plural(len(add), 'wheel')} in, "
        f"{len(remove)} out, {len(old & new.keys())} kept",
    )
    (work / MARKER).unlink(missing_ok=True)
    site = _site(work, interpreter)
    for filename, _ in remove:
        _uninstall(site, filename)
    _relocate(work, old=str(base), new=str(final))
    if add:
        before = _snapshot(site)
        _install_wheels(add, work, site, final_root=final, short=interpreter.short)
        new_files = sorted(str(p) for p in _snapshot(site) - before if p.suffix == ".py")
        if new_files:
            _compile(runner, work / "bin" / "python", [Path(f) for f in new_files], reporter)
    return seal


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
        f"{plural(len(failed), 'file')} {agree(len(failed), 'has', 'have')} no bytecode as "
        f"{agree(len(failed), 'it does', 'they do')} not compile for this Python: "
        f"{shown}{more}",
    )


def _check_call(runner: Runner, args: list[str], what: str) -> None:
    result = runner(args)
    if result.returncode != 0:
        raise InstallError(
            f"could not {what}: {args[0]} exited with {result.returncode}:\n{result.stderr.strip()}"
        )


def _install_wheels(
    wheels: Sequence[Wheel], root: Path, site: Path, *, final_root: Path, short: str
) -> None:
    """Unpack ``wheels`` into the environment at ``root``, each checked against its sha256.

    Only a wheel that cannot be read as one is reported as malformed; errors of
    the filesystem (a full disk above all) propagate as they are.
    """
    import zipfile
    import zlib

    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.exceptions import InstallerError
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

    def one(wheel: Wheel) -> None:
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

    # Unpacking is zlib and file writes, which release the GIL. installer skips
    # __pycache__ entries shipped in wheels (numpy has some) and warns; we compile
    # our own bytecode anyway. The filter is set once, outside the threads, as
    # catch_warnings is not thread-safe.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skip installing .*__pycache__", RuntimeWarning)
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
            list(pool.map(one, wheels))


def _relocate(root: Path, *, old: str, new: str) -> dict[str, str]:
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


def _scratch_prefix(dest: Path) -> str:
    return f".{dest.name}.wheelbarrow-"


def clean_install_leftovers(dest: Path) -> None:
    """Remove the scratch a killed install into ``dest`` left beside it (nothing else)."""
    clean_stale(dest.parent, _scratch_prefix(dest))


def clone_env(source: Path, dest: Path, *, mode: LinkMode = "hardlink") -> None:
    """Make ``dest`` a copy of the store environment ``source`` that runs from ``dest``.

    Files are reflinked where the filesystem can (a copy sharing blocks, so
    edits stay apart), else hard-linked (falling back to copies across
    filesystems), or copied with ``mode="copy"``. ``source`` is checked
    against its seal while it is walked. The new tree is built beside
    ``dest`` and renamed into place, so ``dest`` is never half-written. A
    previous wheelbarrow environment at ``dest`` is replaced, unless it holds
    files wheelbarrow did not put there; anything else there is left alone
    and reported.
    """
    dest = dest.absolute()
    _check_target(dest)
    seal = read_seal(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = _scratch_prefix(dest)
    clean_install_leftovers(dest)
    with scratch(dest.parent, prefix) as holder:
        work = holder / "env"
        try:
            scan, placed, linked = _link_tree(source, work, mode=mode)
        except FileNotFoundError as exc:
            raise StoreError(
                f"{source}: changed while it was being cloned ({exc.filename})",
                hint="install again",
            ) from exc
        if seal is not None:
            check = seal.check(source, scan)
            if not check.ok:
                raise EnvironmentEditedError(
                    f"{source}: changed after it was sealed: {describe(check.problems)}",
                    hint="run `wheelbarrow verify --repair`, then install again",
                )
            if check.restated:  # same bytes, new stats: hash them once, not at every clone
                with contextlib.suppress(OSError):
                    seal.refreshed(check.restated).write(source)
        rewritten = _relocate(work, old=str(source), new=str(dest))
        if seal is not None:
            # The clone's own seal: its inodes (the store's, for hard links), and the
            # rewritten files as they are now. Install checks it to say "up to date".
            for rel in rewritten:
                placed[rel] = os.stat(os.path.join(work, rel))
            if linked and not check.restated:
                # Every file is the sealed one but those rewritten: amend a copy.
                seal.write_amended(
                    work,
                    {
                        rel: SealedFile(st.st_size, st.st_mtime_ns, st.st_ino, rewritten[rel])
                        for rel, st in placed.items()
                        if rel in rewritten
                    },
                )
            else:
                seal.cloned(placed, rewritten).write(work)
        if dest.exists():
            os.rename(dest, holder / "old")  # removed with the scratch entry
        os.rename(work, dest)


def installed_env_sound(path: Path) -> bool:
    """Whether the installed environment at ``path`` still has the files it was installed with.

    A stat pass over its seal (hashes only where a stat differs); files the
    user added do not count. An environment without a seal (made before
    seals existed) is taken as sound.
    """
    seal = read_seal(path)
    if seal is None:
        return True
    try:
        check = seal.check(path)
    except FileNotFoundError:
        return False
    if any(p.problem != "added" for p in check.problems):
        return False
    if check.restated:
        with contextlib.suppress(OSError):
            seal.refreshed(check.restated).write(path)
    return True


def _check_target(dest: Path) -> None:
    """Refuse a file, a directory wheelbarrow did not make, or an environment with user files."""
    if not os.path.lexists(dest):
        return
    if not dest.is_dir():
        raise InstallError(
            f"{dest}: is a file, not a directory",
            hint="give --into a directory (it is made if missing), or move the file away",
        )
    if read_marker(dest) is None:
        if any(dest.iterdir()):
            raise InstallError(
                f"{dest}: exists and is not an environment made by wheelbarrow",
                hint="pick another --into directory, or remove this one",
            )
        return
    foreign = user_files(dest)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise InstallError(
            f"{dest}: holds {plural(len(foreign), 'file')} wheelbarrow did not put there: {shown}",
            hint="installing replaces the whole environment: move them out of it, "
            "or install into another directory",
        )


def user_files(env: Path) -> list[str]:
    """Files in a wheelbarrow environment that its seal does not list (someone put them there).

    Bytecode caches are not counted: Python writes them itself. An
    environment made before seals existed gives none.
    """
    seal = read_seal(env)
    if seal is None:
        return []
    known = seal.paths()
    scan = scan_tree(env)
    return sorted(
        rel
        for rel in [*scan.files, *scan.links, *scan.others]
        if rel not in known and not regenerable(rel)
    )


# Linux's FICLONE ioctl: _IOW(0x94, 9, int).
FICLONE = 0x40049409
_NO_REFLINK = {
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOTTY,
    errno.ENOSYS,
    errno.EPERM,
}


class _Placer:
    """Puts one file of a tree in place: a reflink, else a hard link, else a copy.

    The first refusal of a method is taken for the whole tree (one filesystem),
    so ext4, which has no reflinks, pays for one failed ioctl per tree.
    """

    def __init__(self, mode: LinkMode) -> None:
        self.reflink = mode == "hardlink"
        self.hardlink = mode == "hardlink"
        self.only_hardlinks = True  # every file placed so far is a hard link

    def place(self, src: str, dst: str, st: os.stat_result) -> os.stat_result:
        """Place ``src`` (whose stat is ``st``) at ``dst``; returns the new file's stat."""
        if self.reflink:
            placed = _reflink(src, dst, st)
            if placed is not None:
                self.only_hardlinks = False
                return placed
            self.reflink = False
        if self.hardlink:
            try:
                os.link(src, dst)
                return st  # the same inode: the same stat, but for links and ctime
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                    raise
                self.hardlink = False  # another filesystem: copy from here on
        self.only_hardlinks = False
        shutil.copy2(src, dst)
        return os.stat(dst)


def _reflink(src: str, dst: str, st: os.stat_result) -> os.stat_result | None:
    """Clone ``src`` to a new ``dst`` sharing its blocks; None where the filesystem cannot."""
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.ioctl(dfd, FICLONE, sfd)
            except OSError as exc:
                os.unlink(dst)
                if exc.errno in _NO_REFLINK:
                    return None
                raise
            os.fchmod(dfd, stat.S_IMODE(st.st_mode))
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            return os.fstat(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _link_tree(
    src: Path, dst: Path, *, mode: LinkMode
) -> tuple[Scan, dict[str, os.stat_result], bool]:
    """Recreate ``src`` at ``dst`` (directories made, symlinks copied, files placed).

    Returns what ``src`` held, from the one walk, for checking it against its
    seal; the stat of each file placed; and whether every file is a hard link.
    The seal itself is left out: a clone gets its own (editing a clone's seal
    must not edit the store's).
    """
    scan = Scan()
    placed: dict[str, os.stat_result] = {}
    placer = _Placer(mode)
    src_s, dst_s = os.fspath(src), os.fspath(dst)
    cut = len(src_s) + 1
    os.mkdir(dst_s)
    stack = [src_s]
    while stack:
        directory = stack.pop()
        target_dir = dst_s + directory[len(src_s) :]
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = entry.path[cut:]
                d = os.path.join(target_dir, entry.name)
                if entry.is_symlink():
                    target = os.readlink(entry.path)
                    os.symlink(target, d)
                    scan.links[rel] = target
                elif entry.is_dir(follow_symlinks=False):
                    os.mkdir(d)
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    if rel == SEAL:
                        continue
                    st = entry.stat(follow_symlinks=False)
                    scan.files[rel] = st
                    placed[rel] = placer.place(entry.path, d, st)
                else:
                    scan.others.append(rel)  # sockets, fifos: never part of an environment
    return scan, placed, placer.only_hardlinks
