"""Images on disk: OCI image layouts (read and written) and docker-archive tars (docker save)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import tarfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, NamedTuple

from wheelbarrow._core.errors import BlobNotFoundError, ImageError, ImageFormatError
from wheelbarrow._core.files import atomic_write_bytes
from wheelbarrow._core.text import agree, plural
from wheelbarrow.ship.oci.image import (
    INDEX_TYPES,
    LAYER_COMPRESSION,
    MANIFEST_TYPES,
    REF_NAME,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    canonical_json,
    check_document_digest,
)
from wheelbarrow.ship.oci.reference import ImageReference

LAYOUT_VERSION = "1.0.0"
CHUNK = 1 << 20
# Manifests, indexes and configs are read whole; nothing legitimate comes near this.
_MAX_DOCUMENT = 16 << 20
_MAX_INDEX_DEPTH = 3
# The grammar of org.opencontainers.image.ref.name (image-spec annotations.md).
_REF_NAME = re.compile(
    r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*"
)
_TAR_BLOCK = 512
_TAR_RECORD = 20 * _TAR_BLOCK

BlobSource = Callable[[str], BinaryIO]
"""Opens a blob by digest for reading; raises :class:`BlobNotFoundError` when it has none."""

Blobs = Mapping[str, Path | bytes] | BlobSource
"""Blobs by digest: a mapping to files or bytes, or a :data:`BlobSource`."""


class LayoutImage(NamedTuple):
    """An image read from an OCI layout: its manifest and config bytes, and its blobs."""

    manifest: bytes
    config: bytes
    open_blob: BlobSource
    descriptor: Descriptor


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
    _check_config(parsed, config)
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


def write_docker_archive(
    path: Path, *, manifest: bytes, config: bytes, blob_source: Blobs, repo_tag: str
) -> None:
    """Write the image as ``docker save`` does, for ``docker load`` and ``podman load``.

    The tar holds ``manifest.json`` (``[{"Config", "RepoTags", "Layers"}]``), the
    config as ``<hex>.json`` and each layer uncompressed as ``<diff_id hex>/layer.tar``,
    decompressed while it is copied, with both its digests checked. Members have
    mtime 0 and root ownership, so the same image gives the same file. It is
    written to a temporary name and renamed.
    """
    tag = _repo_tag(repo_tag)
    parsed = Manifest.from_json(manifest)
    _check_config(parsed, config)
    image_config = ImageConfig.from_json(config)
    if len(image_config.diff_ids) != len(parsed.layers):
        raise ImageFormatError(
            f"the image config lists {plural(len(image_config.diff_ids), 'layer')} "
            "but the manifest "
            f"{len(parsed.layers)}"
        )
    source = chain_blobs(blob_source)
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as out:
            tar = _TarWriter(out)
            layer_names: list[str] = []
            for layer, diff_id in zip(parsed.layers, image_config.diff_ids, strict=True):
                name = f"{diff_id.partition(':')[2]}/layer.tar"
                if name not in layer_names:
                    tar.add_directory(name.partition("/")[0])
                    with source(layer.digest) as blob:
                        tar.add_stream(name, _uncompressed(blob, layer, diff_id))
                layer_names.append(name)
            tar.add_bytes(config_name, config)
            tar.add_bytes(
                "manifest.json",
                canonical_json([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]),
            )
            tar.close()
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _check_ref_name(ref_name: str) -> None:
    if not _REF_NAME.fullmatch(ref_name):
        raise ImageFormatError(
            f"{ref_name!r} is not a valid OCI layout ref name",
            hint="use letters, digits and - . _ : @ + between them, such as 'latest' or 'v1.2'",
        )


def _repo_tag(repo_tag: str) -> str:
    reference = ImageReference.parse(repo_tag)
    if reference.digest is not None:
        raise ImageFormatError(
            f"a docker archive is tagged by name and tag, not digest: {repo_tag!r}",
            hint="drop the @sha256:... part",
        )
    name, _, tag = repo_tag.rpartition(":")
    has_tag = bool(name) and "/" not in tag
    return repo_tag if has_tag else f"{repo_tag}:{reference.tag}"


def _check_config(manifest: Manifest, config: bytes) -> None:
    digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    if digest != manifest.config.digest or len(config) != manifest.config.size:
        raise ImageError(
            f"the config ({digest}, {len(config)} bytes) is not the one the manifest names "
            f"({manifest.config.digest}, {manifest.config.size} bytes)",
            hint="pass the config bytes that append_layers returned with this manifest",
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
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with source(descriptor.digest) as blob, tmp.open("xb") as out:
            digest = hashlib.new(descriptor.digest.partition(":")[0])
            size = 0
            while chunk := blob.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        _verify(descriptor, digest.hexdigest(), size)
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _verify(descriptor: Descriptor, hexdigest: str, size: int) -> None:
    got = f"{descriptor.digest.partition(':')[0]}:{hexdigest}"
    if got != descriptor.digest or size != descriptor.size:
        raise ImageError(
            f"blob {descriptor.digest} ({descriptor.size} bytes) has the wrong content: "
            f"{got} ({size} bytes)",
            hint="the source of the blob is damaged or is another image's",
        )


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
    _verify(
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


class _HashingReader:
    """Reads from ``stream``, hashing and counting every byte that passes."""

    def __init__(self, stream: BinaryIO, algorithm: str) -> None:
        self._stream = stream
        self.hash = hashlib.new(algorithm)
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def seek(self, offset: int, /) -> int:
        raise io.UnsupportedOperation("a blob stream is read once, front to back")


def _uncompressed(blob: BinaryIO, layer: Descriptor, diff_id: str) -> Iterator[bytes]:
    """The layer's tar bytes, checked against the layer digest and the diff_id at the end."""
    compression = LAYER_COMPRESSION.get(layer.media_type)
    if compression not in ("gzip", "none"):
        raise ImageFormatError(
            f"layer {layer.digest} has the media type {layer.media_type!r}, which cannot be "
            "written to a docker archive (only plain and gzipped tars can)",
            hint="rebuild the base image with gzip layers",
        )
    raw = _HashingReader(blob, layer.digest.partition(":")[0])
    tar_hash = hashlib.new(diff_id.partition(":")[0])
    stream: _HashingReader | gzip.GzipFile = raw
    if compression == "gzip":
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
    while chunk := stream.read(CHUNK):
        tar_hash.update(chunk)
        yield chunk
    while raw.read(CHUNK):
        pass
    _verify(layer, raw.hash.hexdigest(), raw.size)
    if f"{diff_id.partition(':')[0]}:{tar_hash.hexdigest()}" != diff_id:
        raise ImageError(
            f"layer {layer.digest} does not unpack to the diff_id the config names ({diff_id})",
            hint="the base image's config and layers do not belong together",
        )


class _TarWriter:
    """A tar writer for a seekable file whose members may be streams of unknown length.

    A stream's header is written with size 0 and rewritten once its length is
    known (GNU headers are always one block for names under 100 characters).
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def _header(self, name: str, *, size: int, directory: bool = False) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if directory else 0o644
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
        if len(header) != _TAR_BLOCK:  # a name too long for one block; ours never are
            raise ImageFormatError(f"docker archive member name too long: {name!r}")
        return header

    def add_directory(self, name: str) -> None:
        self._out.write(self._header(name, size=0, directory=True))

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, iter((data,)))

    def add_stream(self, name: str, chunks: Iterator[bytes]) -> None:
        start = self._out.tell()
        self._out.write(self._header(name, size=0))
        size = 0
        for chunk in chunks:
            self._out.write(chunk)
            size += len(chunk)
        self._out.write(b"\0" * (-size % _TAR_BLOCK))
        end = self._out.tell()
        self._out.seek(start)
        self._out.write(self._header(name, size=size))
        self._out.seek(end)

    def close(self) -> None:
        end = self._out.tell() + 2 * _TAR_BLOCK
        self._out.write(b"\0" * (2 * _TAR_BLOCK + (-end % _TAR_RECORD)))
        self._out.flush()
        os.fsync(self._out.fileno())
