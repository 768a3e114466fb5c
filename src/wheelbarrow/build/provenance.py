"""The provenance of a source-built wheel: an in-toto Statement v1 with a SLSA Provenance v1
predicate, kept beside the build's record and unsigned.

The statement is made from what the build already knows (the first part of its
key, the record :func:`wheelbarrow.build.buildcache.record_build` writes, the
wheels of its build environment), never recomputed. It is written as the JSON
payload a DSSE envelope would carry (``payloadType`` :data:`PAYLOAD_TYPE`):
no signing service is reachable where wheelbarrow runs, so nothing signs it, and
a signed envelope would go beside it (:data:`ENVELOPE`, or a Sigstore bundle
:data:`SIGSTORE_BUNDLE`). The JSON is built here by hand rather than through the
in-toto project's Python bindings, which need protobuf at run time; the tests
check every statement against those bindings' messages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

from packaging.utils import canonicalize_name

from wheelbarrow import __version__
from wheelbarrow._core.digests import file_sha256
from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow._core.redact import redact_data, strip_credentials
from wheelbarrow.app.config import BuildConfig, PackageSettings
from wheelbarrow.lock.lockfile import Artefact

__all__ = [
    "BUILDER_ID",
    "BUILD_TYPE",
    "ENVELOPE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "PROVENANCE",
    "SIGSTORE_BUNDLE",
    "STATEMENT_TYPE",
    "BuildFacts",
    "Dependency",
    "dumps",
    "find_provenance",
    "provenance_statement",
    "read_provenance",
    "utc_now",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"  # a DSSE envelope's payloadType for it
# wheelbarrow's PEP 517 source build, as the README's "Provenance" section describes it.
# A name, not a page: the project has no public home to resolve it to yet.
BUILD_TYPE = "urn:wheelbarrow:build-type:pep517-wheel:v1"
BUILDER_ID = f"pkg:pypi/wheelbarrow@{__version__}"
PROVENANCE = "provenance.intoto.json"  # in built/ENTRY/, beside result.json and build.log
ENVELOPE = "provenance.intoto.jsonl"  # where a signed DSSE envelope would go
SIGSTORE_BUNDLE = "provenance.sigstore.json"  # or a Sigstore bundle
TREE_DIGEST = "wheelbarrowTreeSha256"  # the DigestSet name of _core.digests.tree_digest


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """A file the build used: a build-environment wheel, named by file name and sha256.

    ``role`` says how it came: ``build-requirement`` (a wheel from the index) or
    ``built-requirement`` (a wheel built from source first, in this store).
    """

    name: str
    sha256: str
    uri: str | None = None
    role: str = "build-requirement"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildFacts:
    """What a provenance statement says of one finished build, beyond its record."""

    source: Artefact
    settings: PackageSettings
    config: BuildConfig
    backend: str | None
    backend_path: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    dependencies: tuple[Dependency, ...] = ()
    toolchain: Mapping[str, str]
    python: str
    started: datetime
    finished: datetime
    invocation: str
    log_sha256: str | None = None
    source_date_epoch: int | None = None  # SOURCE_DATE_EPOCH the backend was given


def utc_now() -> datetime:
    """The wall-clock time now, in UTC: the default clock of a build's start and end."""
    return datetime.now(UTC)


def new_invocation() -> str:
    """A new invocation id (a UUID URN): it names one build run, not its inputs."""
    return f"urn:uuid:{uuid.uuid4()}"


def provenance_statement(record: Mapping[str, Any], facts: BuildFacts) -> dict[str, Any]:
    """The in-toto statement of the wheel ``record`` (a build's ``result.json``) names.

    Its subject is the wheel's file name and sha256; the predicate's external
    parameters are what the user chose (the package, its build settings, the
    no-binary choice, the repair mode), the internal ones what wheelbarrow
    chose (the target, the build key, the backend, the toolchain, the repair
    it did), and the resolved dependencies the source and every wheel of the
    build environment, each with its sha256, then the libraries the wheel links.
    """
    source = facts.source
    given = record.get("inputs")
    inputs: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": _external(facts),
            "internalParameters": {
                "buildKey": record.get("key"),
                "target": inputs.get("target"),
                "python": facts.python,
                "backend": {
                    "name": facts.backend,
                    "path": list(facts.backend_path),
                    "requires": list(facts.requires),
                },
                "toolchain": dict(sorted(facts.toolchain.items())),
                "repair": {"mode": facts.config.repair, "result": record.get("repair")},
                "cpuBaseline": facts.config.cpu_baseline,
                "buildEnvironment": record.get("build_env"),
                **(
                    {"sourceDateEpoch": facts.source_date_epoch}
                    if facts.source_date_epoch is not None
                    else {}
                ),
            },
            "resolvedDependencies": [
                _source_descriptor(source),
                *(_wheel_descriptor(d) for d in facts.dependencies),
                *_library_descriptors(record.get("links")),
            ],
        },
        "runDetails": {
            "builder": {
                "id": BUILDER_ID,
                "version": {"wheelbarrow": __version__},
            },
            "metadata": {
                "invocationId": facts.invocation,
                "startedOn": _timestamp(facts.started),
                "finishedOn": _timestamp(facts.finished),
            },
            "byproducts": (
                [{"name": "build.log", "digest": {"sha256": facts.log_sha256}}]
                if facts.log_sha256
                else []
            ),
        },
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": str(record["wheel"]), "digest": {"sha256": str(record["sha256"])}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def _external(facts: BuildFacts) -> dict[str, Any]:
    source, settings, config = facts.source, facts.settings, facts.config
    package: dict[str, Any] = {"name": source.name, "version": source.version, "kind": source.kind}
    if source.url:
        package["uri"] = strip_credentials(source.url)
    if source.subdirectory:
        package["subdirectory"] = source.subdirectory
    chosen = {canonicalize_name(n) for n in config.no_binary if n != ":all:"}
    return {
        "package": package,
        # A setting may hold an index URL with its password, or a secret this run knows
        # (an index's credentials): the statement ships with the wheel, so both are masked.
        "settings": {
            "env": redact_data(dict(sorted(settings.env.items()))),
            "configSettings": redact_data(settings.config_settings_dict()),
            "patches": [_patch(p, config.source) for p in settings.patches],
            "system": list(settings.system),
        },
        "noBinary": ":all:" in config.no_binary or source.name in chosen,
        "repair": config.repair,
    }


def _patch(path: Path, config_file: Path | None) -> dict[str, Any]:
    """A patch by the name the settings gave it (relative to their file) and its sha256."""
    shown = path
    if config_file is not None and path.is_absolute():
        try:
            shown = path.relative_to(config_file.parent)
        except ValueError:
            shown = path
    return {"path": shown.as_posix(), "digest": {"sha256": file_sha256(path)}}


def _source_descriptor(source: Artefact) -> dict[str, Any]:
    annotations = {"role": "source", "kind": source.kind}
    if source.kind == "vcs":
        uri = strip_credentials(source.url or "")
        commit = source.commit or source.sha256
        return {
            "name": source.name,
            "uri": f"{uri}@{commit}" if uri else "",
            "digest": {"gitCommit": commit},
            "annotations": annotations,
        }
    if source.kind == "directory":
        descriptor: dict[str, Any] = {
            "name": source.path.name if source.path is not None else source.name,
            "digest": {TREE_DIGEST: source.sha256},
            "annotations": annotations,
        }
        if source.path is not None:
            descriptor["uri"] = source.path.absolute().as_uri()
        return descriptor
    descriptor = {"name": source.filename, "digest": {"sha256": source.sha256}}
    if source.url:
        descriptor["uri"] = strip_credentials(source.url)
    descriptor["annotations"] = annotations
    return descriptor


def _wheel_descriptor(dependency: Dependency) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "name": dependency.name,
        "digest": {"sha256": dependency.sha256},
    }
    if dependency.uri:
        descriptor["uri"] = strip_credentials(dependency.uri)
    descriptor["annotations"] = {"role": dependency.role}
    return descriptor


def _library_descriptors(links: object) -> list[dict[str, Any]]:
    """The system libraries the wheel linked as built (before repair vendored copies)."""
    libraries = links.get("libraries") if isinstance(links, Mapping) else None
    if not isinstance(libraries, Mapping):
        return []
    found = []
    for soname, where in sorted(libraries.items()):
        if not isinstance(where, Mapping) or not where.get("sha256"):
            continue
        descriptor: dict[str, Any] = {
            "name": str(soname),
            "digest": {"sha256": str(where["sha256"])},
        }
        if where.get("file"):
            descriptor["uri"] = Path(str(where["file"])).as_uri()
        descriptor["annotations"] = {"role": "linked-library"}
        found.append(descriptor)
    return found


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(statement: Mapping[str, Any]) -> bytes:
    """The statement's file bytes: the same statement always gives the same bytes, so one
    that travelled in a record through a remote store is written back byte for byte."""
    return (json.dumps(statement, indent=2, ensure_ascii=False) + "\n").encode()


def read_provenance(entry: Path) -> dict[str, Any] | None:
    """The statement kept in the build cache entry ``entry``, or None (a build recorded by a
    wheelbarrow without provenance, or not a statement)."""
    try:
        data = json.loads((entry / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if is_statement_of(data) else None


def is_statement_of(
    data: object, wheel: str | None = None, sha256: str | None = None
) -> TypeGuard[dict[str, Any]]:
    """Whether ``data`` is a provenance statement (of that wheel and sha256, when given)."""
    if not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
        return False
    subjects = data.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        return False
    subject = subjects[0]
    digest = subject.get("digest")
    return (
        data.get("predicateType") == PREDICATE_TYPE
        and isinstance(digest, dict)
        and (wheel is None or subject.get("name") == wheel)
        and (sha256 is None or digest.get("sha256") == sha256)
    )


def find_provenance(built: Path, wheels: Iterable[tuple[str, str]]) -> dict[str, Path]:
    """The provenance files in the build cache ``built`` of the wheels named by (file name,
    sha256): by file name, the most recently recorded build's for a wheel built more than once."""
    wanted = dict(wheels)
    if not wanted:
        return {}
    found: dict[str, tuple[float, Path]] = {}
    for record in built.glob("*/result.json"):
        statement = record.parent / PROVENANCE
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            when = record.stat().st_mtime
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not statement.is_file():
            continue
        name, sha256 = data.get("wheel"), data.get("sha256")
        if not isinstance(name, str) or wanted.get(name) != sha256:
            continue
        if name not in found or when > found[name][0]:
            found[name] = (when, statement)
    return {name: path for name, (_, path) in found.items()}


def build_facts(
    *,
    source: Artefact,
    settings: PackageSettings,
    config: BuildConfig,
    src_dir: Path,
    requires: Sequence[str],
    dependencies: Sequence[Dependency],
    toolchain: Mapping[str, str],
    python: str,
    started: datetime,
    clock: Callable[[], datetime] = utc_now,
    invocation: str | None = None,
    log: Path | None = None,
    source_date_epoch: int | None = None,
) -> BuildFacts:
    """The facts of a build that just finished (its end read from ``clock``), the backend read
    from the source tree it was built from."""
    from wheelbarrow.build.sourcetree import read_build_system

    try:
        system = read_build_system(src_dir, label=source.label)
        backend: str | None = system.backend
        backend_path = system.backend_path
    except WheelbarrowError:  # it was read before the build: a record is not refused for it
        backend, backend_path = None, ()
    return BuildFacts(
        source=source,
        settings=settings,
        config=config,
        backend=backend,
        backend_path=tuple(backend_path),
        requires=tuple(requires),
        dependencies=tuple(dependencies),
        toolchain=toolchain,
        python=python,
        started=started,
        finished=clock(),
        invocation=invocation or new_invocation(),
        log_sha256=file_sha256(log) if log is not None and log.is_file() else None,
        source_date_epoch=source_date_epoch,
    )
