"""The software bill of materials of a wheelhouse: one CycloneDX 1.6 JSON document, validated.

Built with the CycloneDX project's own library (``cyclonedx-python-lib``) and checked
with its strict JSON validator (the 1.6 schema with no unknown properties) before
anyone sees it. 1.6 rather than the library's newest (1.7): it is the version the
scanners and SBOM stores people feed these documents to read today, and it already has
what a wheelhouse needs (``source-distribution`` references, pedigree, the ``platform``
component type for the Python runtime).

The same store, wheelhouse and arguments give the same bytes: the serial number is
derived from the rest of the document, and the timestamp (optional in 1.6) is written
only when ``SOURCE_DATE_EPOCH`` gives one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from wheelbarrow import __version__
from wheelbarrow._core.digests import json_sha256
from wheelbarrow._core.errors import StoreError, WheelbarrowError
from wheelbarrow._core.files import atomic_write_bytes, read_kept
from wheelbarrow.store.store import SBOM_CACHE, Store
from wheelbarrow.wheelhouse import sbom_facts
from wheelbarrow.wheelhouse.assemble import manifest_of
from wheelbarrow.wheelhouse.sbom_facts import Built, Downloaded, Local, PackageFacts

if TYPE_CHECKING:
    from cyclonedx.model import XsUri
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component
    from cyclonedx.validation.json import JsonStrictValidator

    from wheelbarrow.lock.lockfile import Lock

__all__ = [
    "FILENAME",
    "MEDIA_TYPE",
    "SPEC_VERSION",
    "Runtime",
    "SbomError",
    "cyclonedx_json",
    "made_here",
    "refuse_taken",
    "source_date_epoch",
    "write_new",
]

MEDIA_TYPE = "application/vnd.cyclonedx+json"
FILENAME = "sbom.cdx.json"
SPEC_VERSION = "1.6"
# Properties wheelbarrow adds are namespaced, as the CycloneDX property taxonomy asks.
_NS = "wheelbarrow"
# A file larger than this where the document goes is not one wheelbarrow wrote (its documents
# run to a few kB a package): it is not even read.
_LARGEST_OWN = 64 << 20
# Bumped when the document wheelbarrow writes for the same inputs changes: documents made
# before (see SBOM_CACHE) are then made again.
_DOCUMENT_FORMAT = 1
# Derives the serial number from the document's content (RFC 4122 name-based UUID).
_SERIAL_NAMESPACE = uuid.UUID("0b7e58a4-52f1-5d0c-9a7e-3c1f6d2b8e90")


class SbomError(WheelbarrowError):
    """The bill of materials wheelbarrow made fails its own schema, or cannot be made."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """The Python that runs what was shipped: ``Runtime("cpython", "3.12.7")``."""

    implementation: str
    version: str


def source_date_epoch(environ: Mapping[str, str]) -> int | None:
    """``SOURCE_DATE_EPOCH`` from ``environ`` as a number, or None when unset or not a number."""
    value = environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(value) if value.isdigit() else None


def cyclonedx_json(
    store: Store,
    wheelhouse_key: str,
    *,
    subject: str,
    runtime: Runtime | None = None,
    lock: Lock | None = None,
    name: str | None = None,
    epoch: int | None = None,
) -> bytes:
    """The CycloneDX 1.6 JSON document of the wheelhouse ``wheelhouse_key`` in ``store``.

    ``subject`` says what was shipped ("wheelhouse", "environment", "slug",
    "image"), ``name`` names it (the app, the image reference), ``runtime`` is its
    Python when known. With the ``lock`` the wheelhouse was built from, each
    downloaded wheel names the index and URL it came from (credentials removed).
    ``epoch`` (``SOURCE_DATE_EPOCH``) is the document's timestamp; without it there
    is none. The document is checked against the strict 1.6 schema; one that
    fails raises :class:`SbomError` naming what is wrong.
    """
    manifest = manifest_of(store, wheelhouse_key)
    if manifest is None:
        raise StoreError(
            f"no wheelhouse {wheelhouse_key} in {store.root}",
            hint="run `wheelbarrow build` first",
        )
    facts = sbom_facts.package_facts(store, manifest, lock)
    # The document is a function of these alone: one made before is taken as it is, without
    # loading the library or its validator (an export or slug of an unchanged wheelhouse).
    inputs = [
        _DOCUMENT_FORMAT,
        __version__,
        _library_version(),
        wheelhouse_key,
        manifest.get("target"),
        [dataclasses.asdict(f) for f in facts],
        subject,
        name,
        dataclasses.asdict(runtime) if runtime is not None else None,
        epoch,
    ]
    cached = store.root / SBOM_CACHE / f"{json_sha256(inputs)}.cdx.json"
    if (document := _cached(cached)) is not None:
        return document
    bom = _bom(
        facts,
        manifest=manifest,
        key=wheelhouse_key,
        subject=subject,
        name=name,
        runtime=runtime,
        epoch=epoch,
    )
    text = _serialise(bom, with_timestamp=epoch is not None)
    _validate(text, wheelhouse_key)
    document = text.encode("utf-8")
    atomic_write_bytes(cached, document)
    return document


def _library_version() -> str:
    from cyclonedx import __version__ as version  # the package's top module only: light

    return str(version)


def _cached(path: Path) -> bytes | None:
    """A document made before for the same inputs, if it is there and whole: its serial number,
    derived from the rest of it, must still match (a damaged file is made again)."""
    try:
        document = read_kept(path)  # read is used: gc goes by the last use
        data = json.loads(document)
        serial = data.pop("serialNumber")
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None
    return document if serial == _serial(data) else None


def refuse_taken(path: Path, *, root: Path) -> None:
    """Refuse to write the document at ``path`` in the user's directory ``root`` when something
    is there already (a file, a link, a directory), or its directory is a link or no directory:
    wheelbarrow never replaces what it did not make, nor writes through a link. A document it
    wrote there before (a second compile of the same directory) is its own to replace."""
    parent = path.parent
    if parent != root and (parent.is_symlink() or (parent.exists() and not parent.is_dir())):
        clash = parent
    elif (path.is_symlink() or path.exists()) and not made_here(path):
        clash = path
    else:
        return
    raise SbomError(
        f"{root}: the app has its own {clash.relative_to(root)}, where wheelbarrow writes the "
        f"bill of materials ({path.relative_to(root)})",
        hint="rename or remove it from the app: wheelbarrow never replaces a file it did not make",
    )


def made_here(path: Path) -> bool:
    """Whether ``path`` is a plain file holding a bill of materials wheelbarrow wrote."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > _LARGEST_OWN:
        return False
    try:
        data = json.loads(path.read_bytes())
        tools = data["metadata"]["tools"]["components"]
        subject = data["metadata"]["component"]["properties"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (
        data.get("bomFormat") == "CycloneDX"
        and any(isinstance(t, dict) and t.get("name") == "wheelbarrow" for t in tools)
        and any(isinstance(p, dict) and p.get("name") == f"{_NS}:subject" for p in subject)
    )


def write_new(path: Path, document: bytes, *, root: Path) -> None:
    """Write ``document`` at ``path`` (in the user's directory ``root``), where nothing but an
    earlier document of wheelbarrow's may be: see :func:`refuse_taken`. Written whole or not
    at all."""
    refuse_taken(path, root=root)
    atomic_write_bytes(path, document)


# -- the document --------------------------------------------------------------------

_SUBJECT_TYPES = {"image": "container", "wheelhouse": "application"}


def _bom(
    facts: Sequence[PackageFacts],
    *,
    manifest: Mapping[str, Any],
    key: str,
    subject: str,
    name: str | None,
    runtime: Runtime | None,
    epoch: int | None,
) -> Bom:
    from cyclonedx import __version__ as cyclonedx_lib_version
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository

    target: Mapping[str, Any] = manifest.get("target") or {}
    properties = [
        Property(name=f"{_NS}:subject", value=subject),
        Property(name=f"{_NS}:wheelhouse-key", value=key),
    ]
    for part in ("python", "platform"):
        if isinstance(target.get(part), str):
            properties.append(Property(name=f"{_NS}:target:{part}", value=target[part]))
    root = Component(
        type=ComponentType(_SUBJECT_TYPES.get(subject, "application")),
        name=name or f"{subject} {key[:16]}",
        bom_ref=f"{_NS}:{subject}",
        properties=properties,
    )
    wheelbarrow = Component(
        type=ComponentType.APPLICATION,
        name="wheelbarrow",
        version=__version__,
        bom_ref=f"{_NS}:tool",
    )
    cyclonedx_lib = Component(
        type=ComponentType.LIBRARY,
        group="CycloneDX",
        name="cyclonedx-python-lib",
        version=cyclonedx_lib_version,
        bom_ref=f"{_NS}:tool:cyclonedx-python-lib",
    )
    components = [_component(f) for f in facts]
    if runtime is not None:
        components.append(_runtime_component(runtime))
    bom = Bom(
        components=components,
        metadata=BomMetaData(
            tools=ToolRepository(components=[wheelbarrow, cyclonedx_lib]),
            component=root,
            # Replaced (or dropped) after serialising: see _serialise.
            timestamp=datetime.fromtimestamp(epoch or 0, tz=UTC),
        ),
        # Replaced by one derived from the content: see _serialise.
        serial_number=uuid.UUID(int=0),
    )
    bom.register_dependency(root, components)
    for component in components:
        bom.register_dependency(component, [])
    return bom


def _component(facts: PackageFacts) -> Component:
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
    )
    from cyclonedx.model.component import Commit, Component, ComponentType, Pedigree
    from packageurl import PackageURL

    name = canonicalize_name(facts.name)
    wheel_hash = HashType(alg=HashAlgorithm.SHA_256, content=facts.sha256)
    properties = [Property(name=f"{_NS}:wheel", value=facts.filename)]
    references = []
    pedigree = None
    origin = facts.origin
    if isinstance(origin, Local) or (isinstance(origin, Built) and origin.kind == "vcs"):
        # Not on any index: a pkg:pypi purl would name the index project of the same
        # name, which is another package (and a scanner would report its advisories).
        purl = None
        bom_ref = f"{'local' if isinstance(origin, Local) else 'vcs'}:{name}@{facts.version}"
    else:
        purl = PackageURL(type="pypi", name=name, version=facts.version)
        bom_ref = purl.to_string()
    if isinstance(origin, Downloaded):
        properties.append(Property(name=f"{_NS}:origin", value="downloaded"))
        if origin.index is not None:
            properties.append(Property(name=f"{_NS}:index", value=origin.index))
        if origin.url is not None:
            references.append(
                ExternalReference(
                    type=ExternalReferenceType.DISTRIBUTION,
                    url=_uri(origin.url, facts),
                    hashes=[wheel_hash],
                )
            )
    if isinstance(origin, Built | Local):
        properties.append(Property(name=f"{_NS}:origin", value="built"))
        properties.append(Property(name=f"{_NS}:built-from:kind", value=origin.kind))
        if origin.commit is not None:
            properties.append(Property(name=f"{_NS}:built-from:commit", value=origin.commit))
        else:
            properties.append(Property(name=f"{_NS}:built-from:sha256", value=origin.source_sha256))
        if origin.source_filename:
            properties.append(
                Property(name=f"{_NS}:built-from:filename", value=origin.source_filename)
            )
        if origin.backend is not None:
            properties.append(Property(name=f"{_NS}:build:backend", value=origin.backend))
        if origin.repair:
            properties.append(Property(name=f"{_NS}:build:repair", value=origin.repair))
        if origin.python is not None:
            properties.append(Property(name=f"{_NS}:build:python", value=origin.python))
        for tool, version in sorted(origin.toolchain.items()):
            properties.append(Property(name=f"{_NS}:build:toolchain:{tool}", value=version))
        source_hashes = (
            [HashType(alg=HashAlgorithm.SHA_256, content=origin.source_sha256)]
            if origin.kind == "sdist"
            else []
        )
        if origin.url is not None:
            references.append(
                ExternalReference(
                    type=ExternalReferenceType.VCS
                    if origin.kind == "vcs"
                    else ExternalReferenceType.SOURCE_DISTRIBUTION,
                    url=_uri(origin.url, facts),
                    hashes=source_hashes,
                )
            )
        ancestor = Component(
            type=ComponentType.LIBRARY,
            name=name,
            version=facts.version,
            bom_ref=f"{bom_ref}#source",
            hashes=source_hashes,
            description=f"the {origin.kind} {origin.source_filename} it was built from",
        )
        commits = [Commit(uid=origin.commit)] if origin.commit is not None else []
        pedigree = Pedigree(ancestors=[ancestor], commits=commits)
    return Component(
        type=ComponentType.LIBRARY,
        name=name,
        version=facts.version,
        purl=purl,
        bom_ref=bom_ref,
        hashes=[wheel_hash],
        licenses=_licenses(facts),
        external_references=references,
        properties=properties,
        pedigree=pedigree,
    )


def _uri(url: str, facts: PackageFacts) -> XsUri:
    from cyclonedx.exception.model import InvalidUriException
    from cyclonedx.model import XsUri

    try:
        return XsUri(url)
    except InvalidUriException as exc:
        raise SbomError(
            f"{facts.name} {facts.version}: the lock gives its file the URL {url!r}, "
            "which is not a valid URI",
            hint="lock again (`wheelbarrow lock`), or correct the URL in the lock",
        ) from exc


def _licenses(facts: PackageFacts) -> list[Any]:
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model.license import LicenseAcknowledgement

    factory = LicenseFactory()
    declared = LicenseAcknowledgement.DECLARED
    license_info = facts.license
    if license_info is None:
        return []
    if license_info.expression is not None:
        # A License-Expression the library does not take for SPDX stays a name: an
        # invalid expression would fail the schema, and the words are still the author's.
        return [factory.make_from_string(license_info.expression, license_acknowledgement=declared)]
    return [
        factory.make_from_string(value, license_acknowledgement=declared)
        for value in license_info.names
    ]


def _runtime_component(runtime: Runtime) -> Component:
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    # No purl type exists for an interpreter; generic is the spec's catch-all.
    purl = PackageURL(type="generic", name=runtime.implementation, version=runtime.version)
    return Component(
        type=ComponentType.PLATFORM,
        name=runtime.implementation,
        version=runtime.version,
        purl=purl,
        bom_ref=f"{_NS}:runtime",
        description="the Python runtime",
    )


# -- bytes and validation ------------------------------------------------------------


def _serialise(bom: Bom, *, with_timestamp: bool) -> str:
    """The document as JSON, its timestamp dropped unless asked for, its serial number derived."""
    from cyclonedx.output.json import JsonV1Dot6

    data = json.loads(JsonV1Dot6(bom).output_as_string())
    if not with_timestamp:
        data.get("metadata", {}).pop("timestamp", None)
    data.pop("serialNumber", None)
    data["serialNumber"] = _serial(data)
    # The order of the specification's examples: what the document is first, then its parts.
    first = ("$schema", "bomFormat", "specVersion", "serialNumber", "version", "metadata")
    ordered = {k: data[k] for k in first if k in data}
    ordered.update((k, v) for k, v in data.items() if k not in ordered)
    return _dumps(ordered)


def _serial(data: Mapping[str, Any]) -> str:
    """The serial number of a document (``data`` without one): a name-based UUID of its JSON,
    whatever order its fields are in."""
    content = {k: v for k, v in data.items() if k != "serialNumber"}
    return f"urn:uuid:{uuid.uuid5(_SERIAL_NAMESPACE, json_sha256(content))}"


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@functools.cache
def _validator() -> JsonStrictValidator:
    """The library's strict 1.6 validator, once per process: it compiles the schema on first use."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6)


def _validate(text: str, key: str) -> None:
    error = _validator().validate_str(text)
    if error is not None:
        detail = getattr(error, "data", error)
        where = "/".join(str(p) for p in getattr(detail, "absolute_path", ()))
        message = getattr(detail, "message", str(error))
        raise SbomError(
            f"the CycloneDX {SPEC_VERSION} document of wheelhouse {key} fails its schema"
            + (f" at {where}" if where else "")
            + f": {message}",
            hint="this is a bug in wheelbarrow: report it with the wheelhouse's wheelhouse.json",
        )
