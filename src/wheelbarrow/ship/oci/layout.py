"""OCI image layouts on disk: images written into one and read back to build on."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import BinaryIO, NamedTuple

from wheelbarrow._core.errors import BlobNotFoundError, ImageError, ImageFormatError
from wheelbarrow._core.files import atomic_write_bytes, temporary_sibling
from wheelbarrow._core.text import agree, plural
from wheelbarrow.share.oci.mediatypes import INDEX_TYPES, MANIFEST_TYPES
from wheelbarrow.ship.oci.blobs import (
    CHUNK,
    Blobs,
    BlobSource,
    chain_blobs,
    check_config,
    verify_blob,
)
from wheelbarrow.ship.oci.image import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    canonical_json,
    check_document_digest,
)

LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
# Manifests, indexes and configs are read whole; nothing legitimate comes near this.
_MAX_DOCUMENT = 16 << 20
_MAX_INDEX_DEPTH = 3
# The grammar of org.opencontainers.image.ref.name (image-spec annotations.md).
_REF_NAME = re.compile(
    r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*"
)


class LayoutImage(NamedTuple):
    """An image read from an OCI layout: its manifest and config bytes, and its blobs."""

    manifest: bytes
    config: bytes
    open_blob: BlobSource
    descriptor: Descriptor


def layout_blobs(directory: Path) -> BlobSource:
    """The :data:`BlobSource` of the OCI layout at ``directory`` (``blobs/<alg>/<hex>``)."""

    def open_blob(digest: str) -> BinaryIO:
        try:
            return _blob_path(directory, digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(
                f"{directory}: the OCI layout has no blob {digest}", digest=digest
            ) from None

    return open_blob


def write_oci_layout(
    directory: Path,
    *,
    manifest: bytes,
    config: bytes,
    blobs: Blobs | None = None,
    ref_name: str,
) -> Descriptor:
    """Add the image to the OCI layout at ``directory`` (made if needed), tagged ``ref_name``.

    Blobs the layout lacks are copied from ``blobs`` with their digests checked;
    those it has are kept. Other refs stay; an older image of the same ref name
    is replaced in ``index.json``, which is written last, so a reader sees the
    old image or the new one, complete. Returns the manifest's descriptor, as
    ``index.json`` lists it.
    """
    _check_ref_name(ref_name)
    parsed = Manifest.from_json(manifest)
    check_config(parsed, config)
    blobs_dir = directory / "blobs"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    _write_layout_marker(directory)
    source = chain_blobs(blobs) if blobs is not None else chain_blobs()
    missing: list[str] = []
    for layer in parsed.layers:
        try:
            _ensure_blob(directory, layer, source)
        except BlobNotFoundError:
            missing.append(layer.digest)
    if missing:
        raise BlobNotFoundError(
            f"{directory}: {plural(len(missing), 'layer blob')} of the image "
            f"{agree(len(missing), 'is', 'are')} neither in the layout "
            "nor in the blobs given:\n" + "\n".join(f"  - {d}" for d in missing),
            digest=missing[0],
            hint="pass the base image's blobs, or write into the base image's own layout",
        )
    for data in (config, manifest):
        path = _blob_path(directory, f"sha256:{hashlib.sha256(data).hexdigest()}")
        if not path.exists():
            atomic_write_bytes(path, data)
    descriptor = Descriptor(
        media_type=parsed.media_type,
        digest=f"sha256:{hashlib.sha256(manifest).hexdigest()}",
        size=len(manifest),
        annotations={REF_NAME: ref_name},
    )
    return tag_in_layout(directory, descriptor, ref_name)


def tag_in_layout(directory: Path, descriptor: Descriptor, ref_name: str) -> Descriptor:
    """Name ``descriptor`` ``ref_name`` in the layout's index.json (replacing that name's
    entry, keeping the others), written whole or not at all; returns it."""
    index_path = directory / "index.json"
    index = Index.from_json(index_path.read_bytes()) if index_path.exists() else Index()
    kept = tuple(m for m in index.manifests if m.annotations.get(REF_NAME) != ref_name)
    atomic_write_bytes(
        index_path,
        Index(
            manifests=(*kept, descriptor),
            media_type=index.media_type,
            annotations=index.annotations,
            extra=index.extra,
        ).to_json(),
    )
    return descriptor


def read_oci_layout(
    directory: Path, ref_name: str, *, platform: Platform | None = None
) -> LayoutImage:
    """The image tagged ``ref_name`` in the OCI layout at ``directory``, to build on.

    Reads ``index.json``, the manifest (through a nested index, choosing
    ``platform`` when there are several) and the config, checking their digests.
    Layer blobs are never read: ``open_blob`` opens them when a writer needs them.
    """
    marker = directory / "oci-layout"
    if not marker.is_file():
        raise ImageError(
            f"{directory} is not an OCI image layout (it has no oci-layout file)",
            hint="export an image with `skopeo copy ... oci:DIR:TAG`",
        )
    index = Index.from_json(_read_small(directory / "index.json"), where=f"{directory}/index.json")
    tagged = [m for m in index.manifests if m.annotations.get(REF_NAME) == ref_name]
    if not tagged:
        names = sorted(
            {m.annotations[REF_NAME] for m in index.manifests if REF_NAME in m.annotations}
        )
        raise ImageError(
            f"{directory}: the OCI layout has no image named {ref_name!r}",
            hint=f"it has: {', '.join(names)}" if names else "it has no named images",
        )
    descriptor = _pick(tagged, platform, where=f"{directory}:{ref_name}")
    for _ in range(_MAX_INDEX_DEPTH):
        if descriptor.media_type not in INDEX_TYPES:
            break
        nested = Index.from_json(
            _read_blob(directory, descriptor), where=f"{directory}:{ref_name} index"
        )
        descriptor = _pick(nested.manifests, platform, where=f"{directory}:{ref_name}")
    if descriptor.media_type not in MANIFEST_TYPES:
        raise ImageFormatError(
            f"{directory}:{ref_name} points to a {descriptor.media_type!r}, not an image manifest"
        )
    manifest = _read_blob(directory, descriptor)
    parsed = Manifest.from_json(manifest, where=f"{directory}:{ref_name} manifest")
    config = _read_blob(directory, parsed.config)
    return LayoutImage(
        manifest=manifest, config=config, open_blob=layout_blobs(directory), descriptor=descriptor
    )


def _check_ref_name(ref_name: str) -> None:
    if not _REF_NAME.fullmatch(ref_name):
        raise ImageFormatError(
            f"{ref_name!r} is not a valid OCI layout ref name",
            hint="use letters, digits and - . _ : @ + between them, such as 'latest' or 'v1.2'",
        )


def _write_layout_marker(directory: Path) -> None:
    marker = directory / "oci-layout"
    if marker.exists():
        try:
            version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            version = None
        if version != LAYOUT_VERSION:
            raise ImageFormatError(
                f"{marker}: unsupported OCI layout version {version!r} (wants {LAYOUT_VERSION})"
            )
        return
    atomic_write_bytes(marker, canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))


def _blob_path(directory: Path, digest: str) -> Path:
    check_document_digest(digest, where=f"{directory}")
    algorithm, _, hexpart = digest.partition(":")
    return directory / "blobs" / algorithm / hexpart


def _ensure_blob(directory: Path, descriptor: Descriptor, source: BlobSource) -> None:
    """Copy the blob into the layout unless it is there, checking digest and size on the way."""
    target = _blob_path(directory, descriptor.digest)
    if target.exists():
        if target.stat().st_size != descriptor.size:
            raise ImageError(
                f"{target}: {target.stat().st_size} bytes where the manifest says "
                f"{descriptor.size}; the layout is damaged",
                hint="delete the file and write the image again",
            )
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target)
    try:
        with source(descriptor.digest) as blob, tmp.open("xb") as out:
            digest = hashlib.new(descriptor.digest.partition(":")[0])
            size = 0
            while chunk := blob.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        verify_blob(descriptor, digest.hexdigest(), size)
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _read_small(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{path} is missing") from None
    if size > _MAX_DOCUMENT:
        raise ImageFormatError(f"{path} is {size} bytes, too large for an image document")
    return path.read_bytes()


def _read_blob(directory: Path, descriptor: Descriptor) -> bytes:
    path = _blob_path(directory, descriptor.digest)
    if descriptor.size > _MAX_DOCUMENT:
        raise ImageFormatError(
            f"{path}: {descriptor.size} bytes is too large for an image document"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BlobNotFoundError(
            f"{directory}: the OCI layout has no blob {descriptor.digest}", digest=descriptor.digest
        ) from None
    verify_blob(
        descriptor, hashlib.new(descriptor.digest.partition(":")[0], data).hexdigest(), len(data)
    )
    return data


def _pick(
    descriptors: tuple[Descriptor, ...] | list[Descriptor],
    platform: Platform | None,
    *,
    where: str,
) -> Descriptor:
    if platform is not None:
        matching = [
            d
            for d in descriptors
            if d.platform is None
            or (
                d.platform.architecture == platform.architecture
                and d.platform.os == platform.os
                and (platform.variant is None or d.platform.variant == platform.variant)
            )
        ]
    else:
        matching = list(descriptors)
    if len(matching) == 1:
        return matching[0]
    platforms = sorted(
        f"{d.platform.os}/{d.platform.architecture}"
        + (f"/{d.platform.variant}" if d.platform.variant else "")
        for d in descriptors
        if d.platform is not None
    )
    if not matching:
        raise ImageError(
            f"{where} has no image for the platform asked for",
            hint=f"it has: {', '.join(platforms)}" if platforms else None,
        )
    raise ImageError(
        f"{where} holds {len(matching)} images; say which platform to use",
        hint=f"it has: {', '.join(platforms)}" if platforms else None,
    )
