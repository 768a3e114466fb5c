"""docker-archive tars, as ``docker save`` writes them, for ``docker load`` and ``podman load``."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from wheelbarrow._core.errors import ImageError, ImageFormatError
from wheelbarrow._core.files import temporary_sibling
from wheelbarrow._core.text import plural
from wheelbarrow.share.oci.mediatypes import LAYER_COMPRESSION
from wheelbarrow.share.oci.reference import ImageReference
from wheelbarrow.ship.oci.blobs import CHUNK, Blobs, chain_blobs, check_config, verify_blob
from wheelbarrow.ship.oci.image import Descriptor, ImageConfig, Manifest, canonical_json

if TYPE_CHECKING:
    import zstandard

_TAR_BLOCK = 512
_TAR_RECORD = 20 * _TAR_BLOCK


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
    check_config(parsed, config)
    image_config = ImageConfig.from_json(config)
    if len(image_config.diff_ids) != len(parsed.layers):
        raise ImageFormatError(
            f"the image config lists {plural(len(image_config.diff_ids), 'layer')} "
            "but the manifest "
            f"{len(parsed.layers)}"
        )
    source = chain_blobs(blob_source)
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    tmp = temporary_sibling(path)
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
    if compression not in ("gzip", "zstd", "none"):
        raise ImageFormatError(
            f"layer {layer.digest} has the media type {layer.media_type!r}, which cannot be "
            "written to a docker archive (only plain, gzip and zstd tars can)",
            hint="rebuild the base image with gzip layers",
        )
    raw = _HashingReader(blob, layer.digest.partition(":")[0])
    tar_hash = hashlib.new(diff_id.partition(":")[0])
    stream: _HashingReader | gzip.GzipFile | zstandard.ZstdDecompressionReader = raw
    if compression == "gzip":
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
    elif compression == "zstd":
        import zstandard

        # Any object with read() will do, as for GzipFile's fileobj.
        reader = zstandard.ZstdDecompressor().stream_reader
        stream = reader(raw, read_across_frames=True)  # type: ignore[arg-type]
    while chunk := stream.read(CHUNK):
        tar_hash.update(chunk)
        yield chunk
    while raw.read(CHUNK):
        pass
    verify_blob(layer, raw.hash.hexdigest(), raw.size)
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
