"""Environments: built once per wheelhouse and interpreter in the store, sealed, cloned by links."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wheelbarrow._core.errors import (
    EnvironmentEditedError,
    InstallError,
)
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import agree, plural
from wheelbarrow.environment.clone import LinkMode, clone_env, link_tree
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.environment.marker import MARKER, read_marker
from wheelbarrow.environment.seal import (
    SEAL,
    Scan,
    Seal,
    SealCheck,
    SealProblem,
    describe,
    make_seal,
    read_seal,
)
from wheelbarrow.environment.site import (
    Wheel,
    install_wheels,
    relocate,
    run_checked,
    site_packages,
    uninstall,
)
from wheelbarrow.store.store import Store


def env_key(wheelhouse_key: str, interpreter: Interpreter) -> str:
    """The key of the environment made from a wheelhouse with an interpreter."""
    data = f"{wheelhouse_key}\0{interpreter.executable}\0{interpreter.version}\0env-1"
    return hashlib.sha256(data.encode()).hexdigest()[:32]


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
                seal = _fresh(wanted, work, final, interpreter, runner, reporter, compile_bytecode)
            _write_marker(work, key, wheelhouse_key, interpreter, wanted, compile_bytecode)
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


def _write_marker(
    work: Path,
    key: str,
    wheelhouse_key: str,
    interpreter: Interpreter,
    wheels: Sequence[Wheel],
    compile_bytecode: bool,
) -> None:
    """The marker of a stored environment: its key, wheelhouse, Python and wheels by content."""
    (work / MARKER).write_text(
        json.dumps(
            {
                "env_key": key,
                "wheelhouse": wheelhouse_key,
                "python": str(interpreter.executable),
                "python_version": interpreter.version,
                "wheels": [
                    {"filename": w.name, "sha256": w.sha256}
                    for w in sorted(wheels, key=lambda w: (w.name, w.sha256))
                ],
                "bytecode": compile_bytecode,
            }
        )
        + "\n",
        encoding="utf-8",
    )


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


def _fresh(
    wheels: Sequence[Wheel],
    work: Path,
    final: Path,
    interpreter: Interpreter,
    runner: Runner,
    reporter: Reporter,
    compile_bytecode: bool,
) -> Seal:
    """Make ``work`` from nothing; returns the seal of what was unpacked (to seal it cheaply).

    The venv is made while the wheels are unpacked into it: its directories are made
    first, so that neither makes one the other is making (venv keeps those it finds).
    """
    from concurrent.futures import ThreadPoolExecutor, wait

    reporter.message("step", f"Creating the environment with Python {interpreter.version}")
    site = site_packages(work, interpreter)
    for directory in (site, work / "bin", work / "include"):
        directory.mkdir(parents=True, exist_ok=True)
    venv = [str(interpreter.executable), "-m", "venv", "--without-pip", str(work)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        made = pool.submit(run_checked, runner, venv, "create the virtual environment")
        with_bytecode = ", with bytecode" if compile_bytecode else ""
        reporter.message("step", f"Installing {plural(len(wheels), 'wheel')}{with_bytecode}")
        try:
            files = install_wheels(
                wheels,
                work,
                site,
                final_root=final,
                interpreter=interpreter,
                compile_bytecode=compile_bytecode,
                reporter=reporter,
            )
        finally:
            wait([made])  # done writing before the scratch directory may go
        made.result()
    relocate(work, old=str(work), new=str(final))
    return Seal(files=files, links={})


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
    scan, _, _ = link_tree(base, work, mode="hardlink")
    check = seal.check(base, scan)
    if not check.ok:
        raise _BaseEdited(check)
    if check.restated:
        # Same bytes, new inodes (a build cache restored as a copy): the links just made
        # have the new stats, so the new seal keeps these hashes instead of taking them
        # again, and the base's seal takes them too (hashed once, not at every derive).
        seal = seal.refreshed(check.restated)
        with contextlib.suppress(OSError):
            seal.write(base)
    reporter.message(
        "step",
        f"Deriving the environment from a stored one: {plural(len(add), 'wheel')} in, "
        f"{len(remove)} out, {len(old & new.keys())} kept",
    )
    (work / MARKER).unlink(missing_ok=True)
    site = site_packages(work, interpreter)
    for filename, _ in remove:
        uninstall(site, filename)
    relocate(work, old=str(base), new=str(final))
    if add:
        files = install_wheels(
            add,
            work,
            site,
            final_root=final,
            interpreter=interpreter,
            compile_bytecode=True,
            reporter=reporter,
        )
        return Seal(files={**seal.files, **files}, links=seal.links)
    return seal
