"""A multi-platform image's index: the document, written into an OCI layout, pushed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.files import atomic_write_bytes
from wheelbarrow.share.oci.mediatypes import OCI_INDEX
from wheelbarrow.ship.oci.blobs import chain_blobs, check_config
from wheelbarrow.ship.oci.build import BuiltImage
from wheelbarrow.ship.oci.image import Descriptor, ImageConfig, Index, Manifest, Platform
from wheelbarrow.ship.oci.layout import REF_NAME, tag_in_layout

if TYPE_CHECKING:
    from wheelbarrow.share.oci.registry import RegistryClient
    from wheelbarrow.ship.oci.referrers import Artifact
    from wheelbarrow.store.store import Store

__all__ = ["image_index", "push_index", "write_index_layout"]


def image_index(images: Sequence[tuple[bytes, ImageConfig]]) -> bytes:
    """The OCI image index of ``images`` (manifest bytes, config), in that order, each
    entry with the platform its config names."""
    return Index(
        manifests=tuple(
            Descriptor(
                media_type=Manifest.from_json(manifest).media_type,
                digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
                size=len(manifest),
                platform=Platform(
                    architecture=config.architecture, os=config.os, variant=config.variant
                ),
            )
            for manifest, config in images
        ),
        media_type=OCI_INDEX,
    ).to_json()


def write_index_layout(
    directory: Path, *, index: bytes, images: Sequence[BuiltImage], ref_name: str
) -> Descriptor:
    """Add the index and its images to the OCI layout at ``directory`` (made if needed),
    the index tagged ``ref_name``.

    Each image's blobs (its base's layers, its own, its config and manifest) go in
    first, checked as they are copied, then the index; ``index.json``, written last
    and whole, then names the index instead of an older image of ``ref_name``. A
    reader sees the old image or the new index, complete. The images stay untagged.
    """
    # The layout's own checks and copies (ref name grammar, layout version, hashed
    # copies of missing blobs), shared with write_oci_layout.
    from wheelbarrow.ship.oci.layout import (
        _blob_path,
        _check_ref_name,
        _ensure_blob,
        _write_layout_marker,
    )

    _check_ref_name(ref_name)
    Index.from_json(index)
    (directory / "blobs").mkdir(parents=True, exist_ok=True)
    _write_layout_marker(directory)
    for image in images:
        manifest = Manifest.from_json(image.manifest)
        check_config(manifest, image.config)
        source = chain_blobs(image.blobs(), image.base.open_blob)
        for layer in manifest.layers:
            _ensure_blob(directory, layer, source)
        for data in (image.config, image.manifest):
            _put_document(_blob_path(directory, _digest(data)), data)
    _put_document(_blob_path(directory, _digest(index)), index)
    descriptor = Descriptor(
        media_type=OCI_INDEX,
        digest=_digest(index),
        size=len(index),
        annotations={REF_NAME: ref_name},
    )
    return tag_in_layout(directory, descriptor, ref_name)


def push_index(
    tag: str,
    index: bytes,
    images: Sequence[BuiltImage],
    client: RegistryClient,
    store: Store,
    *,
    referrers: Mapping[str, Artifact] | None = None,
) -> dict[str, object]:
    """Push each image by its digest (only the blobs the registry lacks) with its referrers
    (by its digest in ``referrers``), then the index under ``tag``: the tag is written
    last, so nothing half-pushed is ever tagged."""
    from wheelbarrow.share.oci.reference import ImageReference
    from wheelbarrow.ship.oci.pipeline import _push

    target = ImageReference.parse(tag)
    pushed = []
    for image in images:
        by_digest = f"{target.registry}/{target.repository}@{image.digest}"
        blobs = chain_blobs(image.blobs(), image.base.open_blob)
        attached = [r for d, r in (referrers or {}).items() if d == image.digest]
        pushed.append(_push(by_digest, image, blobs, image.base, client, store, attached))
    digest = client.put_manifest(target, index, OCI_INDEX)
    return {"reference": tag, "digest": digest, "images": pushed}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_document(path: Path, data: bytes) -> None:
    if not path.exists():
        atomic_write_bytes(path, data)
