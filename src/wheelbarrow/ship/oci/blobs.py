"""Where an image's blobs come from when it is written out, and the checks they pass on the way."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from wheelbarrow._core.errors import BlobNotFoundError, ImageError
from wheelbarrow.ship.oci.image import Descriptor, Manifest

CHUNK = 1 << 20

BlobSource = Callable[[str], BinaryIO]
"""Opens a blob by digest for reading; raises :class:`BlobNotFoundError` when it has none."""

Blobs = Mapping[str, Path | bytes] | BlobSource
"""Blobs by digest: a mapping to files or bytes, or a :data:`BlobSource`."""


def chain_blobs(*sources: Blobs) -> BlobSource:
    """A :data:`BlobSource` that looks in each of ``sources`` in turn."""

    def open_blob(digest: str) -> BinaryIO:
        for source in sources:
            if callable(source):
                with contextlib.suppress(BlobNotFoundError):
                    return source(digest)
                continue
            found = source.get(digest)
            if isinstance(found, bytes):
                return io.BytesIO(found)
            if found is not None:
                return found.open("rb")
        raise BlobNotFoundError(
            f"blob {digest} is in none of the sources given",
            digest=digest,
            hint="pass the base image's blobs (its layout's open_blob) and the new layers",
        )

    return open_blob


def check_config(manifest: Manifest, config: bytes) -> None:
    digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    if digest != manifest.config.digest or len(config) != manifest.config.size:
        raise ImageError(
            f"the config ({digest}, {len(config)} bytes) is not the one the manifest names "
            f"({manifest.config.digest}, {manifest.config.size} bytes)",
            hint="pass the config bytes that append_layers returned with this manifest",
        )


def verify_blob(descriptor: Descriptor, hexdigest: str, size: int) -> None:
    got = f"{descriptor.digest.partition(':')[0]}:{hexdigest}"
    if got != descriptor.digest or size != descriptor.size:
        raise ImageError(
            f"blob {descriptor.digest} ({descriptor.size} bytes) has the wrong content: "
            f"{got} ({size} bytes)",
            hint="the source of the blob is damaged or is another image's",
        )
