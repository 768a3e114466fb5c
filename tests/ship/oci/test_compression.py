"""Tests for wheelbarrow.ship.oci.compression: gzip in parallel chunks and zstd, reproducibly."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
import zstandard

from wheelbarrow._core.errors import ImageError
from wheelbarrow.ship.oci.compression import Compression, compressing, layer_compression
from wheelbarrow.ship.oci.layer import LayerBlob, RegularFile, write_layer

# Small chunks, so that a test layer of a few hundred kilobytes is many chunks.
SMALL = 16 << 10


def noise(size: int, seed: int) -> bytes:
    """``size`` bytes that do not compress, the same for the same ``seed``."""
    blocks = (hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def entries(tmp_path: Path) -> list[RegularFile]:
    """Files that compress somewhat: text, and bytes that do not."""
    words = ["numpy", "scipy", "wheel", "layer"]
    source = tmp_path / "words.txt"
    source.write_text(" ".join(words[b % 4] for b in noise(1 << 15, 1)))
    return [
        RegularFile(path="/opt/venv/words.txt", source=source),
        RegularFile(path="/opt/venv/noise.bin", data=noise(200_000, 2)),
        RegularFile(path="/opt/venv/empty", data=b""),
    ]


def gzip_with(library: str, *, chunk: int = SMALL) -> Compression:
    return dataclasses.replace(layer_compression("gzip", library=library), chunk=chunk)


def zstd(*, chunk: int = SMALL) -> Compression:
    return dataclasses.replace(layer_compression("zstd"), chunk=chunk)


def tar_bytes(blob: LayerBlob) -> bytes:
    data = blob.path.read_bytes()
    if blob.media_type.endswith("+zstd"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    stream = zlib.decompressobj(wbits=31)
    tar = stream.decompress(data)
    assert stream.eof and stream.unused_data == b""  # one gzip member, nothing after it
    return tar


class TestGzip:
    @pytest.mark.parametrize("library", ["isal", "zlib"])
    def test_one_gzip_member_that_tools_read(self, tmp_path: Path, library: str) -> None:
        """Chunks deflated apart are one gzip member: zlib and GNU tar read the layer whole."""
        blob = write_layer(entries(tmp_path), tmp_path / "out", compression=gzip_with(library))
        tar = tar_bytes(blob)
        assert blob.diff_id == f"sha256:{hashlib.sha256(tar).hexdigest()}"
        assert blob.size > 3 * SMALL // 4  # many chunks
        listing = subprocess.run(
            ["tar", "-tzf", str(blob.path)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert listing == [
            "opt/",
            "opt/venv/",
            "opt/venv/empty",
            "opt/venv/noise.bin",
            "opt/venv/words.txt",
        ]
        with tarfile.open(blob.path, "r:gz") as opened:
            member = opened.extractfile("opt/venv/noise.bin")
            assert member is not None and len(member.read()) == 200_000

    @pytest.mark.parametrize("library", ["isal", "zlib"])
    def test_threads_do_not_change_the_bytes(self, tmp_path: Path, library: str) -> None:
        """One thread or five, the layer is the same bytes: the chunks, not the threads, decide."""
        compression = gzip_with(library)
        one = write_layer(entries(tmp_path), tmp_path / "1", compression=compression, threads=1)
        five = write_layer(entries(tmp_path), tmp_path / "5", compression=compression, threads=5)
        assert one.digest == five.digest
        assert one.path.read_bytes() == five.path.read_bytes()

    def test_writes_cut_anywhere_give_the_same_bytes(self) -> None:
        """How the tar reaches the compressor (one write or many odd ones) does not matter."""
        data = noise(100_000, 5) * 3
        outputs = []
        for step in (len(data), 7_001, 13):
            sink = io.BytesIO()
            with compressing(gzip_with("isal"), sink, threads=2) as stream:
                for start in range(0, len(data), step):
                    stream.write(data[start : start + step])
                    stream.flush()
            outputs.append(sink.getvalue())
        assert outputs[0] == outputs[1] == outputs[2]
        assert zlib.decompress(outputs[0], wbits=31) == data

    def test_isal_and_zlib_give_other_bytes_of_the_same_tar(self, tmp_path: Path) -> None:
        """Another library is another digest, over the same tar (diff_id); hence the cache key."""
        isal = write_layer(entries(tmp_path), tmp_path / "i", compression=gzip_with("isal"))
        plain = write_layer(entries(tmp_path), tmp_path / "z", compression=gzip_with("zlib"))
        assert isal.diff_id == plain.diff_id
        assert isal.digest != plain.digest

    def test_default_is_gzip_by_isal(self) -> None:
        """Without a choice, layers are gzip by ISA-L at its best level, in 1 MiB chunks."""
        compression = layer_compression()
        assert (compression.algorithm, compression.library, compression.level) == (
            "gzip",
            "isal",
            3,
        )
        assert compression.chunk == 1 << 20
        assert compression.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"

    def test_an_error_leaves_no_layer(self, tmp_path: Path) -> None:
        """A file that cannot be read stops the layer and leaves nothing in the output directory."""
        bad = [
            RegularFile(path="/a", data=b"x" * 100_000),
            RegularFile(path="/b", source=tmp_path / "gone"),
        ]
        with pytest.raises(FileNotFoundError):
            write_layer(bad, tmp_path / "out", compression=gzip_with("isal"), threads=3)
        assert [p.name for p in (tmp_path / "out").iterdir()] == []


class TestZstd:
    def test_layer_has_the_zstd_media_type_and_the_tar(self, tmp_path: Path) -> None:
        """A zstd layer says so in its media type, and holds the same tar as a gzip one."""
        blob = write_layer(entries(tmp_path), tmp_path / "z", compression=zstd())
        gz = write_layer(entries(tmp_path), tmp_path / "g", compression=gzip_with("isal"))
        assert blob.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
        assert blob.path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
        assert blob.diff_id == gz.diff_id
        assert blob.diff_id == f"sha256:{hashlib.sha256(tar_bytes(blob)).hexdigest()}"

    def test_threads_do_not_change_the_bytes(self, tmp_path: Path) -> None:
        """libzstd with one worker or four writes the same frame."""
        one = write_layer(entries(tmp_path), tmp_path / "1", compression=zstd(), threads=1)
        four = write_layer(entries(tmp_path), tmp_path / "4", compression=zstd(), threads=4)
        assert one.path.read_bytes() == four.path.read_bytes()

    def test_writes_cut_anywhere_give_the_same_bytes(self) -> None:
        """The frame does not depend on how the tar is cut into writes."""
        data = noise(50_000, 7) * 8
        outputs = []
        for step in (len(data), 3_333):
            sink = io.BytesIO()
            with compressing(zstd(), sink, threads=2) as stream:
                for start in range(0, len(data), step):
                    stream.write(data[start : start + step])
            outputs.append(sink.getvalue())
        assert outputs[0] == outputs[1]
        assert zstandard.ZstdDecompressor().decompressobj().decompress(outputs[0]) == data


class TestChoice:
    def test_the_key_names_library_version_level_and_chunk(self) -> None:
        """Any of library, version, level or chunk size changes the key the layer cache uses."""
        base = gzip_with("isal", chunk=1 << 20)
        others = [
            gzip_with("zlib", chunk=1 << 20),
            dataclasses.replace(base, version="0.0/0.0"),
            dataclasses.replace(base, level=1),
            dataclasses.replace(base, chunk=1 << 19),
            layer_compression("zstd"),
        ]
        keys = {base.key, *(other.key for other in others)}
        assert len(keys) == 1 + len(others)
        assert base.key.startswith("gzip/isal-")

    def test_unknown_algorithm_is_refused(self) -> None:
        """An algorithm wheelbarrow has no writer for is an error naming it and the choices."""
        with pytest.raises(ImageError, match="unknown layer compression 'brotli'") as caught:
            layer_compression("brotli")
        assert caught.value.hint == "use one of: gzip, zstd"

    def test_a_library_of_another_algorithm_is_refused(self) -> None:
        """zstandard does not write gzip: the error says which libraries do."""
        with pytest.raises(ImageError, match="'zstandard' is not a gzip library") as caught:
            layer_compression("gzip", library="zstandard")
        assert caught.value.hint == "use one of: isal, zlib"
