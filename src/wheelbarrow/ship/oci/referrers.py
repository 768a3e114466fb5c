"""An image's SBOM as an OCI 1.1 referrer: an artifact manifest whose ``subject`` is the image.

The artifact is an image manifest with ``artifactType`` the SBOM's media type, the
empty config (``application/vnd.oci.empty.v1+json``, ``{}``) and one layer, the
SBOM document. It goes where the image goes: into an OCI layout, listed in its
``index.json`` without a ref name (as ``oras attach --oci-layout`` lists what it
attaches), and to the registry, after the image, through the referrers API or
the referrers tag schema (:mod:`wheelbarrow.share.oci.referrers`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.files import atomic_write_bytes, read_kept
from wheelbarrow.share.oci.mediatypes import INDEX_TYPES, OCI_MANIFEST
from wheelbarrow.share.oci.referrers import EMPTY_CONFIG, EMPTY_MEDIA_TYPE, Attached, Referrer
from wheelbarrow.ship.oci.image import Descriptor, Index, canonical_json, epoch_timestamp
from wheelbarrow.store.store import IMAGE_SBOM_CACHE

if TYPE_CHECKING:
    from wheelbarrow.lock.lockfile import Lock
    from wheelbarrow.share.oci.reference import ImageReference
    from wheelbarrow.share.oci.registry import RegistryClient
    from wheelbarrow.store.store import Store

__all__ = [
    "SBOM_FILENAME",
    "SBOM_MEDIA_TYPE",
    "SBOM_SUBJECT",
    "Artifact",
    "image_sbom",
    "push_referrer",
    "sbom_artifact",
    "sbom_document",
    "write_referrer_layout",
]

# On wheelbarrow's SBOM manifests: the digest of the image they describe. A referrers
# list copies the manifest's annotations, so an older SBOM of the same image is known
# from the list alone and replaced, and another tool's entry never is.
SBOM_SUBJECT = "io.wheelbarrow.sbom.subject"
# wheelhouse.sbom's MEDIA_TYPE and FILENAME, without importing it on a rebuild that
# reads the document back.
SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
SBOM_FILENAME = "sbom.cdx.json"
_TITLE = "org.opencontainers.image.title"
_CREATED = "org.opencontainers.image.created"
_REF_NAME = "org.opencontainers.image.ref.name"
_MAX_DOCUMENT = 16 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact:
    """A referrer: its manifest, the blobs it names (config and layers, by digest), and the
    descriptor of the manifest it refers to."""

    manifest: bytes
    blobs: Mapping[str, bytes]
    subject: Descriptor
    artifact_type: str

    @property
    def digest(self) -> str:
        """The referrer manifest's digest."""
        return f"sha256:{hashlib.sha256(self.manifest).hexdigest()}"

    @property
    def descriptor(self) -> Descriptor:
        """The manifest's descriptor as a referrers list (and a layout's index.json) has it."""
        return Descriptor(
            media_type=OCI_MANIFEST,
            digest=self.digest,
            size=len(self.manifest),
            annotations=json.loads(self.manifest).get("annotations", {}),
            extra={"artifactType": self.artifact_type},
        )


def sbom_document(
    store: Store,
    wheelhouse_key: str,
    *,
    lock_sha256: str,
    lock: Callable[[], Lock],
    python: str,
    name: str,
    epoch: int | None,
) -> bytes:
    """The CycloneDX SBOM of an image (named ``name``) whose environment is the wheelhouse
    ``wheelhouse_key`` for CPython ``python``, from the lock of digest ``lock_sha256``
    (``lock`` parses it: asked only when the document is made).

    The document depends on nothing else (and wheelbarrow's version), so it is made
    once and kept in the store beside the environment layers: an image rebuilt for
    an app change reads it back instead of assembling and validating it again.
    """
    path = _kept_path(store, wheelhouse_key, lock_sha256, python=python, name=name, epoch=epoch)
    if (kept := _read_kept(path)) is not None:
        return kept
    # Only now: the SBOM's modules (and the CycloneDX library's) cost an app-only rebuild time.
    from wheelbarrow.wheelhouse.sbom import Runtime, cyclonedx_json

    document = cyclonedx_json(
        store,
        wheelhouse_key,
        subject="image",
        name=name,
        runtime=Runtime("cpython", python),
        lock=lock(),
        epoch=epoch,
    )
    atomic_write_bytes(path, document)
    return document


def kept_sbom_document(
    store: Store,
    wheelhouse_key: str,
    *,
    lock_sha256: str,
    python: str,
    name: str,
    epoch: int | None,
) -> bytes | None:
    """:func:`sbom_document`'s document when the store keeps it, else None."""
    return _read_kept(
        _kept_path(store, wheelhouse_key, lock_sha256, python=python, name=name, epoch=epoch)
    )


def _read_kept(path: Path) -> bytes | None:
    try:
        return read_kept(path)  # read is used: gc goes by the last use
    except FileNotFoundError:
        return None


def _kept_path(
    store: Store,
    wheelhouse_key: str,
    lock_sha256: str,
    *,
    python: str,
    name: str,
    epoch: int | None,
) -> Path:
    from wheelbarrow import __version__

    inputs = [wheelhouse_key, lock_sha256, python, name, epoch, __version__]
    key = hashlib.sha256(canonical_json(inputs)).hexdigest()
    return store.root / IMAGE_SBOM_CACHE / f"{key}.cdx.json"


def image_sbom(document: bytes, subject: Descriptor, *, mtime: int) -> Artifact:
    """The referrer carrying the CycloneDX ``document`` of the image manifest ``subject``."""
    return sbom_artifact(
        document, subject, media_type=SBOM_MEDIA_TYPE, filename=SBOM_FILENAME, mtime=mtime
    )


def sbom_artifact(
    sbom: bytes, subject: Descriptor, *, media_type: str, filename: str, mtime: int
) -> Artifact:
    """The referrer carrying ``sbom`` (of ``media_type``, titled ``filename``) for the image
    manifest ``subject``; its creation time is ``mtime``, so the same SBOM of the same image
    is the same manifest, to the byte."""
    layer = Descriptor.of(sbom, media_type)
    config = Descriptor.of(EMPTY_CONFIG, EMPTY_MEDIA_TYPE)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": media_type,
            "config": {**config.to_dict(), "data": "e30="},  # the two bytes, inline
            "layers": [{**layer.to_dict(), "annotations": {_TITLE: filename}}],
            "subject": {
                "mediaType": subject.media_type,
                "digest": subject.digest,
                "size": subject.size,
            },
            "annotations": {_CREATED: epoch_timestamp(mtime), SBOM_SUBJECT: subject.digest},
        }
    )
    return Artifact(
        manifest=manifest,
        blobs={layer.digest: sbom, config.digest: EMPTY_CONFIG},
        subject=subject,
        artifact_type=media_type,
    )


def write_referrer_layout(directory: Path, artifacts: list[Artifact]) -> None:
    """List ``artifacts`` in the OCI layout at ``directory``, whose images they refer to.

    Their blobs go in first; ``index.json``, written last and whole, then lists each
    referrer without a ref name, beside what it had. wheelbarrow's own SBOMs of an
    image no longer named there (a ref name moved to a new image), or of the same
    image before, are dropped from it; every other entry is kept.
    """
    for artifact in artifacts:
        for digest, data in (*artifact.blobs.items(), (artifact.digest, artifact.manifest)):
            path = _blob_path(directory, digest)
            if not path.exists():
                atomic_write_bytes(path, data)
    index_path = directory / "index.json"
    index = Index.from_json(index_path.read_bytes(), where=str(index_path))
    named = _named_manifests(directory, index)
    ours = {a.digest for a in artifacts}
    subjects = {a.subject.digest for a in artifacts}
    kept = [
        m
        for m in index.manifests
        if m.digest in ours
        or SBOM_SUBJECT not in m.annotations
        or (m.annotations[SBOM_SUBJECT] in named and m.annotations[SBOM_SUBJECT] not in subjects)
    ]
    present = {m.digest for m in kept}
    added = [a.descriptor for a in artifacts if a.digest not in present]
    if added or len(kept) != len(index.manifests):
        atomic_write_bytes(
            index_path,
            Index(
                manifests=(*kept, *added),
                media_type=index.media_type,
                annotations=index.annotations,
                extra=index.extra,
            ).to_json(),
        )


def push_referrer(client: RegistryClient, ref: ImageReference, artifact: Artifact) -> Attached:
    """Push the referrer's blobs, then its manifest, to ``ref``'s repository (its subject
    pushed already); an older SBOM of the same image in the referrers tag gives way.

    A registry refusing it fails the push with what was and was not pushed: the
    image is there, under its tag, without its SBOM.
    """
    from wheelbarrow._core.errors import RegistryError
    from wheelbarrow.share.oci.referrers import attach

    def replaces(entry: Referrer) -> bool:
        return entry.annotations.get(SBOM_SUBJECT) == artifact.subject.digest

    try:
        for digest, data in artifact.blobs.items():
            client.push_blob(ref, digest, data, len(data))
        return attach(client, ref, artifact.manifest, OCI_MANIFEST, replaces=replaces)
    except RegistryError as exc:
        raise RegistryError(
            f"{ref.name}: the image {artifact.subject.digest} was pushed, but not its SBOM "
            f"(the referrer {artifact.digest}): {exc.message}",
            hint=(exc.hint + "; or " if exc.hint else "")
            + "push again with --no-sbom to go without it",
        ) from exc


def _named_manifests(directory: Path, index: Index) -> set[str]:
    """The digests of the manifests the layout's ref names lead to, through nested indexes."""
    found: set[str] = set()
    pending = [m for m in index.manifests if _REF_NAME in m.annotations]
    for _ in range(3):  # indexes nest this deep at most, as read_oci_layout follows them
        nested: list[Descriptor] = []
        for descriptor in pending:
            found.add(descriptor.digest)
            if descriptor.media_type in INDEX_TYPES and descriptor.size <= _MAX_DOCUMENT:
                path = _blob_path(directory, descriptor.digest)
                if path.is_file():
                    nested.extend(Index.from_json(path.read_bytes(), where=str(path)).manifests)
        pending = nested
    found.update(d.digest for d in pending)
    return found


def _blob_path(directory: Path, digest: str) -> Path:
    algorithm, _, encoded = digest.partition(":")
    return directory / "blobs" / algorithm / encoded
