"""The build cache: a source build's key, the wheels built for it, whether one holds here."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelbarrow._core.digests import json_sha256
from wheelbarrow._core.files import atomic_write_bytes, atomic_write_text
from wheelbarrow.build import hostcpu, portability
from wheelbarrow.build.blas import BlasFinding, check_built_wheel
from wheelbarrow.build.context import Built, SourceContext, system_libraries
from wheelbarrow.build.links import SystemLibraries, links_problem
from wheelbarrow.build.provenance import PROVENANCE, dumps, is_statement_of, read_provenance
from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.store.remote import BUILD_RECORD
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from filelock import FileLock

    from wheelbarrow.store.remote import RemoteStore


# 2: the key is the part known before building; what a wheel links is checked apart.
# 3: builds are reproducible (SOURCE_DATE_EPOCH, prefix maps, normalised zips): a wheel
# built before is not the one a build makes now, so it is not reused as if it were.
BUILD_KEY_FORMAT = 3
# Libraries in the toolchain fingerprint: a build counts them only when its wheel
# links them (the second part of the key, see links.py), not by being installed.
LINKED_FINGERPRINTS = frozenset({"openblas"})


def build_key_inputs(source: Artefact, ctx: SourceContext) -> dict[str, Any]:
    """The first part of a build's cache key: what a built wheel depends on, known before building.

    Equal inputs find the candidate wheels (:func:`candidates`); the libraries
    a candidate links, known only after it was built, decide whether it still
    holds here (:func:`candidate_problem`). A field added here is part of the
    key at once, and :func:`why_rebuilt` names it when it changes.
    """
    inputs: dict[str, Any] = {
        "format": BUILD_KEY_FORMAT,
        "name": source.name,
        "version": source.version,
        "source": source.sha256,
        "settings": ctx.config.for_package(source.name).digest(),
        "toolchain": {
            tool: version
            for tool, version in sorted(ctx.toolchain.items())
            if tool not in LINKED_FINGERPRINTS
        },
        "python": ctx.interpreter.version,
        "target": ctx.target.as_dict(),
        "repair": ctx.config.repair,
    }
    # Present only for builds asked for this machine's CPU: other keys stay as they were.
    settings = ctx.config.for_package(source.name)
    cpu = hostcpu.cpu_key_part(
        settings.env, settings.config_settings, ctx.environ, ctx.cpu_features
    )
    if cpu is not None:
        inputs["cpu"] = cpu
    return inputs


def build_key(inputs: Mapping[str, Any]) -> str:
    """The cache key of a source build's first part (32 hex digits)."""
    return json_sha256(inputs)[:32]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A wheel built earlier for the same first part of the key, as recorded with it.

    ``links`` is what it linked when it was built (see
    :func:`wheelbarrow.build.links.linked_libraries`), ``build_env`` the store key of
    the build environment it was built in.
    """

    entry: str
    key: str
    wheel: str
    sha256: str
    repair: str
    links: Mapping[str, Any]
    build_env: str | None
    path: Path
    needs_cpu: tuple[str, ...] = ()  # /proc/cpuinfo flags its code needs (hostcpu.py)
    # A numpy-like build that found no BLAS (blas.py): the OpenBLAS the machine had then.
    without_blas: str | None = None

    @classmethod
    def read(cls, path: Path) -> Candidate | None:
        """The candidate recorded in the build cache entry ``path``, or None if it is incomplete."""
        try:
            data = json.loads((path / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cls.from_record(data, path)

    @classmethod
    def from_record(cls, data: Any, path: Path) -> Candidate | None:
        """The candidate a build's ``result.json`` (parsed) records, or None if it is incomplete."""
        try:
            return cls(
                entry=path.name,
                key=str(data["key"]),
                wheel=str(data["wheel"]),
                sha256=str(data["sha256"]),
                repair=str(data["repair"]),
                links=data["links"] if isinstance(data.get("links"), dict) else {},
                build_env=data.get("build_env") if isinstance(data.get("build_env"), str) else None,
                path=path,
                needs_cpu=hostcpu.recorded_cpu_needs(data.get("portability")),
                without_blas=_without_blas(data.get("blas")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def entry_name(key: str, links: Mapping[str, Any]) -> str:
    """The build cache entry of a wheel: the first part's key, then a digest of what it links.

    Entries of one first part share their first 16 digits, so
    :func:`candidates` finds them by prefix.
    """
    return key[:16] + links_digest(links)


def links_digest(links: Mapping[str, Any]) -> str:
    """The second part of a build's key: a digest of what its wheel links (16 hex digits)."""
    return json_sha256(links)[:16]


def candidates(store: Store, key: str) -> list[Candidate]:
    """The wheels built for the first part ``key`` in ``store``, the most recent first."""
    found = []
    for path in (store.root / "built").glob(f"{key[:16]}*"):
        candidate = Candidate.read(path)
        if candidate is not None and candidate.key == key:
            found.append(candidate)
    return sorted(found, key=lambda c: _mtime(c.path / "result.json"), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def candidate_problem(
    candidate: Candidate,
    store: Store,
    libraries: SystemLibraries,
    cpu: frozenset[str] | None = None,
    openblas: str | None = None,
) -> str | None:
    """Why ``candidate`` is not what a build on this machine would make, or None if it holds.

    Its wheel must still be in ``store``, and every library it links must be
    here with the same content; ``cpu`` (this machine's instruction set flags,
    None to skip) must have what its code uses unchecked beyond the baseline.
    A build that found no BLAS links none, so ``openblas`` (the version
    pkg-config finds here, or ``absent``) other than when it was built makes it stale.
    """
    if not store.has(candidate.sha256):
        return "the cached wheel is missing"
    return machine_problem(candidate, libraries, cpu, openblas)


def machine_problem(
    candidate: Candidate,
    libraries: SystemLibraries,
    cpu: frozenset[str] | None = None,
    openblas: str | None = None,
) -> str | None:
    """:func:`candidate_problem` but for the wheel's presence: the second part of the key (what
    it links) and what its code needs, checked against this machine."""
    then = candidate.without_blas
    if then is not None and openblas not in (None, "", "absent", then):
        return f"it was built without BLAS while OpenBLAS was {then}, and {openblas} is here now"
    if cpu is not None and (problem := hostcpu.cpu_problem(candidate.needs_cpu, cpu)):
        return problem
    return links_problem(candidate.links, libraries)


def _without_blas(recorded: object) -> str | None:
    """For a recorded BLAS finding that misses one, the OpenBLAS here at the time."""
    finding = BlasFinding.from_json(recorded)
    if finding is None or not finding.missing or not isinstance(recorded, dict):
        return None
    return str(recorded.get("openblas_here") or "absent")


def reusable(key: str, source: Artefact, ctx: SourceContext) -> tuple[Built | None, str | None]:
    """A cached wheel for ``key`` that holds here, or None and why the newest one does not.

    The build cache is asked first, then the remote store, if there is one
    (:func:`from_remote`): a wheel found there is in the build cache afterwards.
    """
    built, problem = _reusable_here(key, source, ctx)
    if built is not None or ctx.remote is None:
        return built, problem
    built, remote_problem = from_remote(ctx.remote, key, source, ctx)
    return built, problem or remote_problem


def _reusable_here(
    key: str, source: Artefact, ctx: SourceContext
) -> tuple[Built | None, str | None]:
    first_problem = None
    libraries = system_libraries(ctx)
    for candidate in candidates(ctx.store, key):
        problem = candidate_problem(
            candidate, ctx.store, libraries, ctx.cpu_features, ctx.toolchain.get("openblas")
        )
        if problem is None:
            built = Built(
                source=source,
                wheel=candidate.wheel,
                sha256=candidate.sha256,
                repair=candidate.repair,
                reused=True,
                why=None,
                log=candidate.path / "build.log",
            )
            return built, None
        first_problem = first_problem or problem
    return None, first_problem


def from_remote(
    remote: RemoteStore, key: str, source: Artefact, ctx: SourceContext
) -> tuple[Built | None, str | None]:
    """A wheel another machine built for ``key`` and pushed to ``remote`` that holds here, or
    None and why the first one found does not.

    Each record must be one of ``key`` (its inputs hash to it); what it links and
    what its code needs are checked against this machine as a local
    candidate's are (:func:`machine_problem`). The wheel is downloaded
    hash-checked and the build recorded in the build cache, its log saying
    where it came from.
    """
    first_problem = None
    libraries = system_libraries(ctx)
    for record, candidate in _remote_candidates(remote, key):
        problem = machine_problem(
            candidate, libraries, ctx.cpu_features, ctx.toolchain.get("openblas")
        )
        if problem is not None:
            first_problem = first_problem or f"{problem} (in the build pushed to {remote.url})"
            continue
        ctx.reporter.message(
            "info",
            f"{source.label}: {candidate.wheel} from {remote.url}, "
            "built by another machine with the same build key",
        )
        if not ctx.store.has(candidate.sha256):
            remote.get_blob(candidate.sha256, ctx.store, filename=candidate.wheel)
        entry = record_fetched(ctx.store, key, record, remote.url, source.label)
        built = Built(
            source=source,
            wheel=candidate.wheel,
            sha256=candidate.sha256,
            repair=candidate.repair,
            reused=True,
            why=None,
            log=entry / "build.log",
            remote=remote.url,
        )
        return built, None
    return None, first_problem


def _remote_candidates(remote: RemoteStore, key: str) -> list[tuple[dict[str, Any], Candidate]]:
    """The build records of ``key`` in ``remote`` that are whole and truly of that key."""
    found = []
    for data in remote.get_builds(key):
        record = remote_record(data, key)
        candidate = Candidate.from_record(record, Path(key)) if record is not None else None
        if record is not None and candidate is not None and _plain_names(candidate):
            found.append((record, candidate))
    return found


def remote_record(data: bytes, key: str) -> dict[str, Any] | None:
    """A build record read from the remote store, when it is one of ``key``'s."""
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    inputs = record.get("inputs")
    if not isinstance(inputs, dict) or build_key(inputs) != key:
        return None
    return record


def _plain_names(candidate: Candidate) -> bool:
    """Whether the record names its wheel by a plain file name and a sha256 (no path)."""
    name, digest = candidate.wheel, candidate.sha256
    return (
        name.endswith(".whl")
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    )


def record_fetched(store: Store, key: str, record: Mapping[str, Any], url: str, label: str) -> Path:
    """Put a build fetched from ``url`` in the build cache; its log says where it came from."""
    links = record.get("links") if isinstance(record.get("links"), dict) else {}
    entry = entry_name(key, links or {})
    # The provenance travels inside the pushed record (see _push_record); it is kept here
    # as the build machine wrote it, when it is the statement of this very wheel.
    carried = _carried_provenance(record)
    record = {k: v for k, v in record.items() if k != "provenance"}
    (store.root / "built").mkdir(parents=True, exist_ok=True)
    with store.scratch("fetched-build-") as work:
        log = work / "log" / "build.log"
        log.parent.mkdir()
        log.write_text(
            f"# {label}: not built here; {record['wheel']} came from the remote store {url},\n"
            f"# built by another machine with the same build key ({key})\n",
            encoding="utf-8",
        )
        try:
            return record_build(
                store, work / "entry", entry, {**record, "fetched": url}, log, provenance=carried
            )
        except OSError:
            # Another process of this store recorded the same build meanwhile.
            final = store.root / "built" / entry
            if Candidate.read(final) is None:
                raise
            return final


def push_build(remote: RemoteStore, store: Store, built: Built) -> None:
    """Upload a build made here: its wheel's blob (unless the remote has it), then its record,
    last, so a reader never finds a record whose wheel is not there."""
    _push_record(remote, store, built.sha256, built.log.parent)


def _push_record(remote: RemoteStore, store: Store, sha256: str, entry: Path) -> None:
    """Upload the record in the build cache ``entry``, its provenance statement inside it (the
    remote store keeps one file per build)."""
    data = (entry / BUILD_RECORD).read_bytes()
    record = json.loads(data)
    statement = read_provenance(entry)
    if statement is not None:
        data = (json.dumps({**record, "provenance": statement}, indent=2) + "\n").encode()
    if not remote.has_blob(sha256):
        remote.put_blob(sha256, store.blob(sha256))
    remote.put_build(str(record["key"]), links_digest(record["links"]), data)


def push_builds_of(remote: RemoteStore, store: Store, sha256s: Iterable[str]) -> int:
    """Upload the records of the builds made in ``store`` whose wheels are among ``sha256s``
    (wheels built here before, pushed now with a wheelhouse that holds them); how many.

    Builds fetched from a remote store are not pushed again; each record goes
    after its wheel's blob, as :func:`push_build` does.
    """
    wanted = set(sha256s)
    pushed = 0
    for result in sorted((store.root / "built").glob("*/" + BUILD_RECORD)):
        candidate = Candidate.read(result.parent)
        if candidate is None or candidate.sha256 not in wanted or not store.has(candidate.sha256):
            continue
        record = json.loads(result.read_bytes())
        if record.get("fetched") or not isinstance(record.get("links"), dict):
            continue
        _push_record(remote, store, candidate.sha256, result.parent)
        pushed += 1
    return pushed


def _carried_provenance(record: Mapping[str, Any]) -> bytes | None:
    """The provenance statement a fetched record carried, as its file's bytes, when
    it is the statement of the record's own wheel (None otherwise: a record pushed by a
    wheelbarrow without provenance, or a statement of something else)."""
    statement = record.get("provenance")
    if not is_statement_of(statement, str(record.get("wheel")), str(record.get("sha256"))):
        return None
    return dumps(statement)


def why_rebuilt(previous: Mapping[str, Any] | None, now: Mapping[str, Any]) -> str:
    """One line saying what changed since the package was last built for this target."""
    if previous is None:
        return "first build for this target"
    reasons = []
    if previous.get("source") != now["source"]:
        old, new = previous.get("version"), now["version"]
        reasons.append(f"source changed ({old} -> {new})" if old != new else "source changed")
    if previous.get("settings") != now["settings"]:
        reasons.append("build settings changed")
    old_tools, new_tools = previous.get("toolchain", {}), now["toolchain"]
    tools = [
        f"{t}: {old_tools.get(t, 'absent')} -> {new_tools.get(t, 'absent')}"
        for t in sorted(set(old_tools) | set(new_tools))
        if old_tools.get(t) != new_tools.get(t)
    ]
    if tools:
        reasons.append("toolchain changed (" + "; ".join(tools) + ")")
    if previous.get("python") != now["python"]:
        reasons.append(f"Python changed ({previous.get('python')} -> {now['python']})")
    if previous.get("repair") != now["repair"]:
        reasons.append(f"repair mode changed ({previous.get('repair')} -> {now['repair']})")
    if previous.get("format") != now["format"]:
        reasons.append("wheelbarrow's build format changed")
    if previous.get("cpu") != now.get("cpu"):
        reasons.append(
            "built for this machine's CPU (-march=native)"
            if previous.get("cpu") is None or now.get("cpu") is None
            else "the CPU differs from the one it was built for (-march=native)"
        )
    described = {"cpu", "source", "version", "settings", "toolchain", "python", "repair", "format"}
    reasons += [
        f"{field} changed"
        for field in sorted(set(previous) | set(now))
        if field not in described
        and field not in ("name", "target")
        and previous.get(field) != now.get(field)
    ]
    return "; ".join(reasons) or "the cached wheel is missing"


def build_lock(store: Store, key: str) -> FileLock:
    """The lock held while a build of ``key`` runs: one at a time across processes, so the
    second finds the first's wheel instead of building it again."""
    return store.lock(f"build-{key}")


def record_build(
    store: Store,
    staged: Path,
    entry: str,
    result: Mapping[str, Any],
    log: Path,
    *,
    provenance: bytes | None = None,
) -> Path:
    """Put a finished build in ``built/ENTRY`` (its result, log and provenance) with one rename.

    ``staged`` is a new directory in scratch space; the log moves there from
    the attempt's directory, which goes. ``provenance`` (the in-toto statement
    of provenance.py) is written beside the result, so no record is ever
    without it. An entry of the same name (a build whose wheel was lost) is replaced.
    """
    staged.mkdir()
    atomic_write_text(staged / "result.json", json.dumps(result, indent=2) + "\n")
    if provenance is not None:
        atomic_write_bytes(staged / PROVENANCE, provenance)
    log.replace(staged / "build.log")
    with contextlib.suppress(OSError):
        log.parent.rmdir()
    final = store.root / "built" / entry
    if final.exists():
        with store.scratch("built-old-") as old:
            final.rename(old / "entry")
            staged.rename(final)
    else:
        staged.rename(final)
    return final


def previous_path(store: Store, source: Artefact, ctx: SourceContext) -> Path:
    # Kept apart from built/: clearing the build cache should not hide why a rebuild happens.
    target = ctx.target.as_dict()
    name = f"{source.name}-{target['python']}-{target['platform']}.json"
    return store.root / "build-history" / name


def previous_inputs(store: Store, source: Artefact, ctx: SourceContext) -> dict[str, Any] | None:
    try:
        data = json.loads(previous_path(store, source, ctx).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def check_reused_blas(built: Built, ctx: SourceContext) -> Built:
    """``built`` (from the build cache) with its BLAS finding, warned about or refused now."""
    try:
        recorded = json.loads((built.log.parent / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    blas = check_built_wheel(
        ctx.store.named(built.sha256, built.wheel),
        label=f"{built.source.label} (from the build cache)",
        required=ctx.config.requires_blas(built.source.name),
        expected=ctx.config.expects_blas(built.source.name),
        log=None,
        reporter=ctx.reporter,
        finding=BlasFinding.from_json(recorded.get("blas") if isinstance(recorded, dict) else None),
    )
    return replace(built, blas=blas)


def check_reused_portability(built: Built, ctx: SourceContext) -> Built:
    """``built`` (from the build cache) with its portability finding, warned about or
    refused now as the settings say."""
    try:
        recorded = json.loads((built.log.parent / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    code = portability.check_built_wheel(
        ctx.store.named(built.sha256, built.wheel),
        label=f"{built.source.label} (from the build cache)",
        package=built.source.name,
        mode=ctx.config.portable_mode(built.source.name),
        baseline=ctx.config.cpu_baseline,
        log=None,
        reporter=ctx.reporter,
        finding=portability.PortabilityFinding.from_json(
            recorded.get("portability") if isinstance(recorded, dict) else None
        ),
    )
    return replace(built, portability=code)
