"""The bill of materials as an SPDX 2.3 JSON document, the second format (``sbom --format spdx``).

Built with the SPDX project's own Python library (``spdx-tools``, the ``[spdx]`` extra) and
checked with its validator before it is written. It says what the CycloneDX document says
(sbom.py), in SPDX's terms: a package per wheel with its sha256, purl, declared license and
download location, the build facts of source-built wheels as their ``sourceInfo``, the
Python runtime, and the subject that depends on them. SPDX requires a creation time: it is
``SOURCE_DATE_EPOCH`` when given (then the same inputs give the same bytes), else now.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from wheelbarrow import __version__
from wheelbarrow._core.errors import StoreError
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse import sbom_facts
from wheelbarrow.wheelhouse.assemble import manifest_of
from wheelbarrow.wheelhouse.sbom import Runtime, SbomError
from wheelbarrow.wheelhouse.sbom_facts import Built, Downloaded, Local, PackageFacts

if TYPE_CHECKING:
    from spdx_tools.spdx.model.document import Document
    from spdx_tools.spdx.model.extracted_licensing_info import ExtractedLicensingInfo
    from spdx_tools.spdx.model.package import Package

    from wheelbarrow.lock.lockfile import Lock

MEDIA_TYPE = "application/spdx+json"
FILENAME = "sbom.spdx.json"
SPDX_VERSION = "SPDX-2.3"
_NOT_ID = re.compile(r"[^A-Za-z0-9.-]+")
_NAMESPACE = uuid.UUID("5b2f1c0e-8a3d-5e47-b6f1-2d9c4e7a0b13")


def spdx_json(
    store: Store,
    wheelhouse_key: str,
    *,
    subject: str,
    runtime: Runtime | None = None,
    lock: Lock | None = None,
    name: str | None = None,
    epoch: int | None = None,
    clock: Callable[[], float] = time.time,
) -> bytes:
    """The SPDX 2.3 JSON document of the wheelhouse ``wheelhouse_key`` in ``store``.

    The arguments are :func:`wheelbarrow.wheelhouse.sbom.cyclonedx_json`'s; ``clock`` gives
    the creation time when ``epoch`` does not. Raises :class:`SbomError` when the
    ``[spdx]`` extra is not installed or the document fails the SPDX validator.
    """
    manifest = manifest_of(store, wheelhouse_key)
    if manifest is None:
        raise StoreError(
            f"no wheelhouse {wheelhouse_key} in {store.root}",
            hint="run `wheelbarrow build` first",
        )
    try:
        import spdx_tools  # noqa: F401
    except ImportError as exc:
        raise SbomError(
            "SPDX documents need the SPDX project's library (spdx-tools), which is not installed",
            hint="install wheelbarrow[spdx], or use the default --format cyclonedx",
        ) from exc
    facts = sbom_facts.package_facts(store, manifest, lock)
    created = datetime.fromtimestamp(epoch if epoch is not None else int(clock()), tz=UTC)
    document = _document(
        facts,
        key=wheelhouse_key,
        subject=subject,
        name=name,
        runtime=runtime,
        created=created,
        target=manifest.get("target") or {},
    )
    _validate(document, wheelhouse_key)
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

    out = io.StringIO()
    write_document_to_stream(document, out, validate=False)
    return (out.getvalue() + "\n").encode("utf-8")


def _spdx_id(*parts: str) -> str:
    return "SPDXRef-" + "-".join(_NOT_ID.sub("-", p).strip("-") for p in parts)


def _document(
    facts: Sequence[PackageFacts],
    *,
    key: str,
    subject: str,
    name: str | None,
    runtime: Runtime | None,
    created: datetime,
    target: dict[str, Any],
) -> Document:
    from spdx_tools.spdx.model.actor import Actor, ActorType
    from spdx_tools.spdx.model.document import CreationInfo, Document
    from spdx_tools.spdx.model.package import Package, PackagePurpose
    from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion

    title = name or f"{subject} {key[:16]}"
    # Unique per content, as the spec asks of a namespace, and the same for the same content.
    seed = repr((key, subject, title, runtime, created.isoformat(), tuple(facts), target))
    namespace = f"urn:uuid:{uuid.uuid5(_NAMESPACE, hashlib.sha256(seed.encode()).hexdigest())}"
    root = Package(
        spdx_id=_spdx_id("Subject"),
        name=title,
        download_location=SpdxNoAssertion(),
        files_analyzed=False,
        primary_package_purpose=(
            PackagePurpose.CONTAINER if subject == "image" else PackagePurpose.APPLICATION
        ),
        comment=f"wheelbarrow {subject}: wheelhouse {key}"
        + "".join(
            f", target {part} {target[part]}" for part in ("python", "platform") if part in target
        ),
    )
    licences: list[ExtractedLicensingInfo] = []
    packages = [_package(f, licences) for f in facts]
    if runtime is not None:
        packages.append(
            Package(
                spdx_id=_spdx_id("Runtime", runtime.implementation),
                name=runtime.implementation,
                version=runtime.version,
                download_location=SpdxNoAssertion(),
                files_analyzed=False,
                primary_package_purpose=PackagePurpose.APPLICATION,
                comment="the Python runtime",
            )
        )
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, root.spdx_id)]
    relationships += [
        Relationship(root.spdx_id, RelationshipType.DEPENDS_ON, p.spdx_id) for p in packages
    ]
    return Document(
        creation_info=CreationInfo(
            spdx_version=SPDX_VERSION,
            spdx_id="SPDXRef-DOCUMENT",
            name=title,
            document_namespace=namespace,
            creators=[Actor(ActorType.TOOL, f"wheelbarrow-{__version__}")],
            created=created,
        ),
        packages=[root, *packages],
        relationships=relationships,
        extracted_licensing_info=_unique(licences),
    )


def _package(facts: PackageFacts, licences: list[ExtractedLicensingInfo]) -> Package:
    from spdx_tools.spdx.model.checksum import Checksum, ChecksumAlgorithm
    from spdx_tools.spdx.model.package import (
        ExternalPackageRef,
        ExternalPackageRefCategory,
        Package,
        PackagePurpose,
    )
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion
    from spdx_tools.spdx.validation.uri_validators import validate_download_location

    name = canonicalize_name(facts.name)
    origin = facts.origin
    local = isinstance(origin, Local)
    vcs = isinstance(origin, Built) and origin.kind == "vcs"
    references = (
        []
        if local or vcs
        else [
            ExternalPackageRef(
                ExternalPackageRefCategory.PACKAGE_MANAGER,
                "purl",
                f"pkg:pypi/{name}@{facts.version}",
            )
        ]
    )
    notes = []
    if isinstance(origin, Downloaded) and origin.index is not None:
        notes.append(f"downloaded from the index {origin.index}")
    location: str | None = origin.url
    if vcs and location is not None and isinstance(origin, Built) and origin.commit:
        location = f"{location}@{origin.commit}"  # SPDX's form: VCS+URL@REVISION
    if location is not None and validate_download_location(location):
        # SPDX's pattern takes host names only (no IP address, no localhost): the URL is
        # still said, in the comment.
        notes.append(f"from {location}")
        location = None
    comment = "; ".join(notes) or None
    return Package(
        spdx_id=_spdx_id("Local" if local else "Vcs" if vcs else "Package", name, facts.version),
        name=name,
        version=facts.version,
        file_name=facts.filename,
        download_location=location or SpdxNoAssertion(),
        files_analyzed=False,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, facts.sha256)],
        license_concluded=SpdxNoAssertion(),
        license_declared=_declared(facts, licences),
        copyright_text=SpdxNoAssertion(),
        external_references=references,
        primary_package_purpose=PackagePurpose.LIBRARY,
        source_info=_source_info(origin) if isinstance(origin, Built) else None,
        comment=comment,
    )


def _declared(facts: PackageFacts, licences: list[ExtractedLicensingInfo]) -> Any:
    """The declared license as an SPDX expression; names SPDX does not know become
    ``LicenseRef-`` identifiers with their words as extracted licensing info."""
    from license_expression import ExpressionError  # type: ignore[import-untyped]
    from spdx_tools.common.spdx_licensing import spdx_licensing  # type: ignore[import-untyped]
    from spdx_tools.spdx.model.extracted_licensing_info import ExtractedLicensingInfo
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion

    info = facts.license
    if info is None:
        return SpdxNoAssertion()
    texts = [info.expression] if info.expression is not None else list(info.names)
    parts = []
    for text in texts:
        try:
            parsed = spdx_licensing.parse(text, validate=True, strict=True)
        except ExpressionError:
            parsed = None
        if parsed is not None:
            parts.append(str(parsed))
            continue
        ref = "LicenseRef-" + _NOT_ID.sub("-", text).strip("-")[:64]
        licences.append(
            ExtractedLicensingInfo(
                license_id=ref,
                extracted_text=text,
                license_name=text,
                comment=f"as the {info.field} metadata of the wheel names it",
            )
        )
        parts.append(ref)
    expression = (
        " OR ".join(f"({p})" if " " in p else p for p in parts) if len(parts) > 1 else parts[0]
    )
    return spdx_licensing.parse(expression)


def _source_info(origin: Built) -> str:
    facts = [f"built by wheelbarrow from the {origin.kind} {origin.source_filename}"]
    facts.append(f"commit {origin.commit}" if origin.commit else f"sha256 {origin.source_sha256}")
    if origin.backend:
        facts.append(f"backend {origin.backend}")
    if origin.python:
        facts.append(f"Python {origin.python}")
    if origin.repair:
        facts.append(origin.repair)
    facts += [f"{tool} {version}" for tool, version in sorted(origin.toolchain.items())]
    return "; ".join(facts)


def _unique(licences: list[ExtractedLicensingInfo]) -> list[ExtractedLicensingInfo]:
    seen: dict[str | None, ExtractedLicensingInfo] = {}
    for licence in licences:
        seen.setdefault(licence.license_id, licence)
    return [seen[k] for k in sorted(seen, key=str)]


def _validate(document: Document, key: str) -> None:
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    problems = validate_full_spdx_document(document)
    if problems:
        listed = "\n".join(f"  {p.validation_message}" for p in problems[:10])
        raise SbomError(
            f"the SPDX 2.3 document of wheelhouse {key} fails the SPDX validator:\n{listed}",
            hint="this is a bug in wheelbarrow: report it with the wheelhouse's wheelhouse.json",
        )
