"""Unpacking wheels into an environment, and compiling their bytecode, across processes.

This process reads each wheel's metadata (from the file it hashed), writes its
scripts and RECORD, and cuts its other members into tasks; workers running the
environment's own interpreter (:mod:`wheelbarrow.environment.unpack_worker`)
write the members and compile the Python sources among them as they go, the
biggest tasks first. Every written file comes back with its size, stat and
sha256, so the environment's seal need not read them again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import posixpath
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from wheelbarrow._core.errors import InstallError, MalformedWheelError, StoreError
from wheelbarrow.environment.seal import SealedFile
from wheelbarrow.environment.unpack_pool import Workers

if TYPE_CHECKING:
    from installer.destinations import SchemeDictionaryDestination
    from installer.records import RecordEntry
    from installer.sources import WheelFile
    from installer.utils import Scheme

    from wheelbarrow.environment.site import Wheel

# Compiling a byte of Python source costs about as much as unpacking twenty of anything.
_SOURCE_WEIGHT = 20
_FILE_WEIGHT = 4096  # a file's own cost (open, write, close), in bytes unpacked
_MIN_TASK = 1 << 20
_SIZE_TO_WEIGHT = 10  # a wheel's size on disk to its members' weight, about, for cutting tasks
_SCHEMES = ("purelib", "platlib", "headers", "scripts", "data")
_DAMAGED_HINT = (
    "the store was damaged: run `wheelbarrow verify --repair`, then build and install again"
)
_MALFORMED_HINT = (
    "the wheel is malformed (RECORD, entry_points.txt or paths): "
    "report it to its maintainers, or pin another version"
)
_CLASH_HINT = "two packages of the lock ship the same file: drop one of them"


@dataclass(frozen=True, slots=True, kw_only=True)
class Installed:
    """What unpacking wrote: every file by path relative to the root, and the sources that
    did not compile (absolute paths)."""

    files: dict[str, SealedFile]
    uncompiled: list[str]


@dataclass(slots=True, kw_only=True)
class _Member:
    name: str  # in the archive
    scheme: str
    path: str  # within its scheme, as RECORD lists it
    dest: str  # absolute
    size: int  # uncompressed
    executable: bool
    # Where its bytes are in the archive (its local header's offset, compressed size,
    # compression, flags), and the sha256 its RECORD gives (hex; None if none).
    where: tuple[int, int, int, int]
    sha256: str | None
    record: RecordEntry | None = None  # once written


@dataclass(slots=True, kw_only=True)
class _Plan:
    """One wheel: the members for workers, and the records of what this process wrote."""

    wheel: Wheel
    root_scheme: Scheme
    record_path: str
    head: list[tuple[Scheme, RecordEntry]] = field(default_factory=list)  # entry-point scripts
    members: list[_Member] = field(default_factory=list)  # in archive order
    tail: list[tuple[Scheme, RecordEntry]] = field(default_factory=list)  # INSTALLER


@dataclass(frozen=True, slots=True, kw_only=True)
class _Task:
    plan: _Plan
    members: tuple[_Member, ...]
    weight: int


def unpack_wheels(
    wheels: Sequence[Wheel],
    destination: SchemeDictionaryDestination,
    *,
    python: Path,
    root: Path,
    final_root: Path,
    compile_bytecode: bool,
    workers: int | None = None,
) -> Installed:
    """Unpack ``wheels`` through ``destination`` (its scheme under ``root``), with ``python``'s
    bytecode for every source under purelib and platlib when ``compile_bytecode``.

    The bytecode records each source under ``final_root``, where the
    environment will be, instead of ``root``. Errors: a wheel whose bytes are
    not its sha256 is a :class:`StoreError`; one that cannot be read as a
    wheel a :class:`MalformedWheelError`; two wheels writing one file an
    :class:`InstallError`; the filesystem's own (a full disk) propagate.
    """
    site_dirs = {destination.scheme_dict["purelib"], destination.scheme_dict["platlib"]}
    # The biggest wheels are read and sent first: the workers start on them while the
    # rest are read, and the small ones even out the end.
    ordered = sorted(wheels, key=lambda w: -w.path.stat().st_size)
    estimate = sum(w.path.stat().st_size for w in ordered) * _SIZE_TO_WEIGHT
    # A worker per CPU, but one for what one task holds (a build environment's few wheels).
    count = max(1, workers or (_cpus() if estimate > _MIN_TASK else 1))
    target = max(_MIN_TASK, estimate // (count * 8))
    plans: list[_Plan] = []
    tasks: list[_Task] = []
    with Workers(python, count) as pool:
        for wheel in ordered:
            if pool.failed:
                break
            plans.append(_plan(wheel, destination))
            for task in _tasks(plans[-1], target, compile_bytecode):
                pool.submit(_task_json(task, site_dirs, root, final_root, compile_bytecode))
                tasks.append(task)
        answers = pool.answers()
    files: dict[str, SealedFile] = {}
    uncompiled: list[str] = []
    base = os.fspath(root) + os.sep
    for task, answer in zip(tasks, answers, strict=True):
        if answer.get("error") not in (None, "skipped"):
            _raise_for(answer, task.plan.wheel)
    for task, answer in zip(tasks, answers, strict=True):
        written = {row[0]: row for row in answer["files"]}
        for member in task.members:
            size, sha256 = written[member.dest][1], written[member.dest][4]
            member.record = _record_entry(member.path, sha256, size)
        for dest, size, mtime_ns, inode, sha256 in answer["files"]:
            files[dest.removeprefix(base)] = SealedFile(size, mtime_ns, inode, sha256)
        uncompiled += answer["failed"]
    for plan in plans:
        _finalize(plan, destination)
    return Installed(files=files, uncompiled=sorted(uncompiled))


def _cpus() -> int:
    """The CPUs this process may use (Linux tells; elsewhere, all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _record_entry(path: str, sha256: str, size: int) -> RecordEntry:
    from installer.records import Hash, RecordEntry

    value = base64.urlsafe_b64encode(bytes.fromhex(sha256)).decode("ascii").rstrip("=")
    return RecordEntry(path, Hash("sha256", value), size)


def _plan(wheel: Wheel, destination: SchemeDictionaryDestination) -> _Plan:
    """Read ``wheel``'s metadata from the file it was hashed from, and write its scripts."""
    from installer.exceptions import InstallerError

    with wheel.path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != wheel.sha256:
            raise StoreError(
                f"{wheel.path}: sha256 is {digest}, the wheelhouse says {wheel.sha256}",
                hint=_DAMAGED_HINT,
            )
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                return _plan_archive(wheel, archive, destination)
        except FileExistsError as exc:
            raise InstallError(
                f"{wheel.name}: cannot be installed: {exc}", hint=_CLASH_HINT
            ) from exc
        except (
            InstallerError,
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            ValueError,
            KeyError,
        ) as exc:
            raise _malformed(wheel, f"{type(exc).__name__}: {exc}") from exc


def _plan_archive(
    wheel: Wheel, archive: zipfile.ZipFile, destination: SchemeDictionaryDestination
) -> _Plan:
    from installer.sources import WheelFile
    from installer.utils import parse_entrypoints

    source = WheelFile(archive)
    dist_info = source.dist_info_dir
    plan = _Plan(
        wheel=wheel,
        root_scheme=_root_scheme(source),
        record_path=posixpath.join(dist_info, "RECORD"),
    )
    if "entry_points.txt" in source.dist_info_filenames:
        for name, module, attr, section in parse_entrypoints(
            source.read_dist_info("entry_points.txt")
        ):
            record = destination.write_script(name=name, module=module, attr=attr, section=section)
            plan.head.append((cast("Scheme", "scripts"), record))
    plan.members = _members(wheel, archive, source, plan, destination)
    with_installer = posixpath.join(dist_info, "INSTALLER")
    import io

    record = destination.write_file(
        scheme=plan.root_scheme,
        path=with_installer,
        stream=io.BytesIO(b"wheelbarrow\n"),
        is_executable=False,
    )
    plan.tail.append((plan.root_scheme, record))
    return plan


def _members(
    wheel: Wheel,
    archive: zipfile.ZipFile,
    source: WheelFile,
    plan: _Plan,
    destination: SchemeDictionaryDestination,
) -> list[_Member]:
    """The archive's members to install, in its order; those of the scripts scheme written
    here (their shebang is rewritten)."""
    members = []
    data_dir = source.data_dir
    recorded = _record_sha256(source.read_dist_info("RECORD"))
    for info in archive.infolist():
        name = info.filename
        # Directories, RECORD (written at the end), and bytecode shipped in the wheel
        # (installer skips it too: we compile our own).
        if name.endswith("/") or name == plan.record_path or "__pycache__" in name.split("/")[:-1]:
            continue
        scheme, path = _scheme_of(name, data_dir, plan.root_scheme, wheel)
        mode = info.external_attr >> 16
        executable = bool(mode and stat.S_ISREG(mode) and mode & 0o111)
        member = _Member(
            name=name,
            scheme=scheme,
            path=path,
            dest=_dest(destination, scheme, path),
            size=info.file_size,
            executable=executable,
            where=(info.header_offset, info.compress_size, info.compress_type, info.flag_bits),
            sha256=recorded.get(name),
        )
        if scheme == "scripts":  # few, and their shebang is rewritten: written here
            with archive.open(info) as stream:
                member.record = destination.write_file(
                    scheme=cast("Scheme", scheme),
                    path=path,
                    stream=cast("BinaryIO", stream),
                    is_executable=executable,
                )
        members.append(member)
    return members


def _record_sha256(text: str) -> dict[str, str]:
    """The hex sha256 RECORD gives each member it hashes with sha256."""
    import csv

    found = {}
    for row in csv.reader(text.splitlines()):
        if len(row) >= 2 and row[1].startswith("sha256="):
            value = row[1].removeprefix("sha256=")
            with contextlib.suppress(ValueError):  # not base64: no hash to check it by
                found[row[0]] = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    return found


def _root_scheme(source: WheelFile) -> Scheme:
    """Where the archive's root goes, by its WHEEL file."""
    from installer.exceptions import InvalidWheelSource
    from installer.utils import parse_metadata_file

    metadata = parse_metadata_file(source.read_dist_info("WHEEL"))
    version = metadata["Wheel-Version"]
    if not (version and version.startswith("1.")):
        raise InvalidWheelSource(source, f"Incompatible Wheel-Version {version}, only 1.x")
    return cast("Scheme", "purelib" if metadata["Root-Is-Purelib"] == "true" else "platlib")


def _scheme_of(name: str, data_dir: str, root_scheme: str, wheel: Wheel) -> tuple[str, str]:
    """The scheme a member goes to, and its path within it."""
    first, _, rest = name.partition("/")
    if first != data_dir:
        return root_scheme, name
    scheme, _, path = rest.partition("/")
    if scheme not in _SCHEMES or not path:
        raise _malformed(wheel, f"{name} is not in a valid .data subdirectory")
    return scheme, path


def _dest(destination: SchemeDictionaryDestination, scheme: str, path: str) -> str:
    """The absolute path of a member, refused when it would land outside its scheme."""
    base = os.path.abspath(destination.scheme_dict[scheme])  # noqa: PTH100 - no symlinks resolved
    dest = os.path.abspath(os.path.join(base, path))  # noqa: PTH100, PTH118
    if not dest.startswith(base + os.sep):
        raise ValueError(f"Attempting to write {path} outside of the target directory")
    return dest


def _malformed(wheel: Wheel, why: str) -> MalformedWheelError:
    return MalformedWheelError(
        f"{wheel.name}: cannot be installed: {why}", path=str(wheel.path), hint=_MALFORMED_HINT
    )


def _weight(member: _Member, compile_bytecode: bool) -> int:
    source = compile_bytecode and member.dest.endswith(".py")
    return member.size * (_SOURCE_WEIGHT if source else 1) + _FILE_WEIGHT


def _tasks(plan: _Plan, target: int, compile_bytecode: bool) -> list[_Task]:
    """The members of ``plan`` for workers, cut into tasks of about ``target`` cost.

    Small enough that the last ones even out the workers; big enough that
    each costs far more than sending it.
    """
    tasks: list[_Task] = []
    chunk: list[_Member] = []
    weight = 0
    for member in plan.members:
        if member.record is not None:  # written here
            continue
        chunk.append(member)
        weight += _weight(member, compile_bytecode)
        if weight >= target:
            tasks.append(_Task(plan=plan, members=tuple(chunk), weight=weight))
            chunk, weight = [], 0
    if chunk:
        tasks.append(_Task(plan=plan, members=tuple(chunk), weight=weight))
    return tasks


def _task_json(
    task: _Task, site_dirs: set[str], root: Path, final_root: Path, compile_bytecode: bool
) -> str:
    old, new = os.fspath(root), os.fspath(final_root)
    sites = tuple(os.path.abspath(d) + os.sep for d in site_dirs)  # noqa: PTH100
    members = []
    for m in task.members:
        source = compile_bytecode and m.dest.endswith(".py") and m.dest.startswith(sites)
        dfile = new + m.dest[len(old) :] if source else None
        members.append([m.name, m.dest, m.executable, dfile, m.sha256, m.size, *m.where])
    wheel = task.plan.wheel
    return json.dumps({"wheel": str(wheel.path), "sha256": wheel.sha256, "members": members})


def _raise_for(answer: dict[str, Any], wheel: Wheel) -> None:
    """Raise the error a worker answered for a task of ``wheel``, if any."""
    kind = answer.get("error")
    if kind is None:
        return
    message = str(answer.get("message"))
    if kind == "mismatch":
        raise StoreError(message, hint=_DAMAGED_HINT)
    if kind == "malformed":
        raise _malformed(wheel, message)
    code = int(answer.get("errno") or 0)
    if code == 17:  # EEXIST
        raise InstallError(f"{wheel.name}: cannot be installed: {message}", hint=_CLASH_HINT)
    raise OSError(code, os.strerror(code), answer.get("filename"))


def _finalize(plan: _Plan, destination: SchemeDictionaryDestination) -> None:
    """Write the RECORD of one wheel, listing what was written in installer's order."""
    from installer.records import RecordEntry

    records = list(plan.head)
    records += [(cast("Scheme", m.scheme), m.record) for m in plan.members if m.record]
    records += plan.tail
    records.append((plan.root_scheme, RecordEntry(plan.record_path, None, None)))
    destination.finalize_installation(
        scheme=plan.root_scheme, record_file_path=plan.record_path, records=records
    )
