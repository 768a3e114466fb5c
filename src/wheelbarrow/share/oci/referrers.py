"""OCI 1.1 referrers: manifests whose ``subject`` names another, attached and found again.

A registry with the referrers API answers a manifest ``PUT`` that has a ``subject``
with an ``OCI-Subject`` header and lists the referrers at
``GET /v2/<name>/referrers/<digest>``. One without it (Debian's docker-registry)
gets the referrers tag schema of the distribution spec instead: the tag
``<alg>-<hex>`` of the subject's digest holds an image index of the referrers'
descriptors, which every tool that attaches something reads, adds to and writes
back, so entries of other tools are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wheelbarrow._core.errors import ImageNotFoundError, RegistryError
from wheelbarrow.share.oci.mediatypes import OCI_INDEX
from wheelbarrow.share.oci.reference import ImageReference, check_digest

if TYPE_CHECKING:
    from wheelbarrow.share.oci.registry import RegistryClient

__all__ = [
    "EMPTY_CONFIG",
    "EMPTY_MEDIA_TYPE",
    "Attached",
    "Referrer",
    "add_referrer",
    "attach",
    "referrer_of",
    "referrers_in",
    "referrers_tag",
]

# The empty descriptor of image-spec manifest.md: an artifact without a config has this one.
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
# The spec's limit on the digest part of a referrers tag (tags are at most 128 characters).
_TAG_DIGEST_CHARS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Referrer:
    """One entry of a referrers list: the referring manifest's descriptor, with its
    ``artifactType`` and annotations (copied from the manifest, as the spec says)."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> Referrer:
        if not isinstance(data, dict):
            raise RegistryError(f"{where}: a referrer entry is not a JSON object")
        size = data.get("size")
        media_type, digest = data.get("mediaType"), data.get("digest")
        annotations = data.get("annotations") or {}
        artifact_type = data.get("artifactType")
        if (
            not isinstance(media_type, str)
            or not isinstance(digest, str)
            or isinstance(size, bool)
            or not isinstance(size, int)
            or not isinstance(annotations, dict)
            or not all(isinstance(v, str) for v in annotations.values())
            or (artifact_type is not None and not isinstance(artifact_type, str))
        ):
            raise RegistryError(
                f"{where}: a referrer entry lacks a mediaType, digest or size, or has "
                f"annotations that are not strings: {json.dumps(data)[:200]}",
                hint="the registry or the tool that wrote the list does not follow the OCI spec",
            )
        check_digest(digest)
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            artifact_type=artifact_type,
            annotations=dict(annotations),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Attached:
    """Where a referrer went: its digest, and the referrers tag it was listed in (None when
    the registry's referrers API took its subject)."""

    digest: str
    subject: str
    tag: str | None

    def to_dict(self) -> dict[str, object]:
        return {"digest": self.digest, "subject": self.subject, "referrers_tag": self.tag}


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for the subject ``digest``: ``sha256-<hex>``."""
    algorithm, _, encoded = check_digest(digest).partition(":")
    return f"{algorithm}-{encoded[:_TAG_DIGEST_CHARS]}"


def referrer_of(manifest: bytes, media_type: str) -> tuple[Referrer, str]:
    """The referrers-list entry of ``manifest`` and the digest of its subject.

    Its ``artifactType`` is the manifest's, else its config's media type, as
    registries list it.
    """
    import hashlib

    try:
        doc = json.loads(manifest)
    except ValueError as exc:
        raise RegistryError(f"a referrer manifest is not JSON: {exc}") from exc
    subject = doc.get("subject") if isinstance(doc, dict) else None
    if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
        raise RegistryError("the manifest has no subject, so it refers to nothing")
    artifact_type = doc.get("artifactType")
    if not isinstance(artifact_type, str):
        config = doc.get("config")
        artifact_type = config.get("mediaType") if isinstance(config, dict) else None
    annotations = doc.get("annotations") or {}
    entry = Referrer(
        media_type=media_type,
        digest=f"sha256:{hashlib.sha256(manifest).hexdigest()}",
        size=len(manifest),
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        annotations=annotations if isinstance(annotations, dict) else {},
    )
    return entry, check_digest(subject["digest"])


def referrers_in(index: bytes, *, where: str) -> tuple[Referrer, ...]:
    """The entries of a referrers list (an OCI image index)."""
    return tuple(
        Referrer.from_dict(m, where=where) for m in _index_document(index, where)["manifests"]
    )


def add_referrer(
    index: bytes | None,
    entry: Referrer,
    *,
    replaces: Callable[[Referrer], bool] = lambda _: False,
    where: str,
) -> bytes | None:
    """The referrers index ``index`` (None: there is none yet) with ``entry`` in it, or None
    when it is there already and nothing ``replaces`` says to drop is.

    Every other entry, and every field of the index and of its entries, is kept as
    it was: other tools' referrers are theirs. ``replaces`` names earlier entries
    of the same writer that ``entry`` supersedes.
    """
    doc: dict[str, Any] = (
        _index_document(index, where)
        if index is not None
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    kept: list[Any] = []
    dropped = False
    present = False
    for raw in doc["manifests"]:
        existing = Referrer.from_dict(raw, where=where)
        if existing.digest == entry.digest:
            present = True
            kept.append(raw)
        elif replaces(existing):
            dropped = True
        else:
            kept.append(raw)
    if present and not dropped:
        return None
    if not present:
        kept.append(entry.to_dict())
    doc["manifests"] = kept
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def attach(
    client: RegistryClient,
    ref: ImageReference,
    manifest: bytes,
    media_type: str,
    *,
    replaces: Callable[[Referrer], bool] = lambda _: False,
) -> Attached:
    """Push the referrer ``manifest`` (its blobs pushed already) to ``ref``'s repository.

    When the registry answers with ``OCI-Subject`` it lists the referrer itself;
    otherwise the subject's referrers tag is read, given the entry (and rid of
    the ones ``replaces`` names) and written back.
    """
    entry, subject = referrer_of(manifest, media_type)
    # By its digest alone: under ref's tag it would take the image's place.
    by_digest = ImageReference(
        registry=ref.registry, repository=ref.repository, digest=entry.digest
    )
    if client.put_referrer(by_digest, manifest, media_type):
        return Attached(digest=entry.digest, subject=subject, tag=None)
    tag = referrers_tag(subject)
    tagged = ref.with_tag(tag)
    try:
        current, current_type, _ = client.get_manifest(tagged, accept=(OCI_INDEX,))
    except ImageNotFoundError:
        current = None
    else:
        if current_type != OCI_INDEX:
            raise RegistryError(
                f"{tagged} holds a {current_type}, not the OCI image index the referrers "
                "tag schema keeps there; the referrer was pushed but is not listed",
                hint=f"the tag {tag} is taken by something else: move it, then push again",
            )
    updated = add_referrer(current, entry, replaces=replaces, where=str(tagged))
    if updated is not None:
        client.put_manifest(tagged, updated, OCI_INDEX)
    return Attached(digest=entry.digest, subject=subject, tag=tag)


def _index_document(index: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(index)
    except ValueError as exc:
        raise RegistryError(f"{where}: the referrers list is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise RegistryError(
            f"{where}: the referrers list is not an OCI image index (no 'manifests' list)",
            hint="the registry or the tool that wrote it does not follow the OCI spec",
        )
    return doc
