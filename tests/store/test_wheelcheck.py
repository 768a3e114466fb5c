"""Wheels are checked as they enter the store or a wheelhouse, not first at install."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from support import make_wheel
from support.apps import PLATFORM, cli

from wheelbarrow._core.errors import MalformedWheelError
from wheelbarrow._core.report import RecordingReporter
from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.store.fetch import Fetcher
from wheelbarrow.store.store import Store
from wheelbarrow.store.wheelcheck import PARALLEL_FROM, StreamedMembers, check_wheel


def rewrite(wheel: Path, member: str, data: bytes) -> Path:
    """The wheel with one member's bytes replaced and its RECORD left as it was."""
    with zipfile.ZipFile(wheel) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    members[member] = data
    with zipfile.ZipFile(wheel, "w") as dst:
        for name, content in members.items():
            dst.writestr(name, content)
    return wheel


def tampered(directory: Path) -> Path:
    """alpha 1.0 whose module differs from the hash in its RECORD."""
    wheel = make_wheel(directory, "alpha", "1.0")
    return rewrite(wheel, "alpha/__init__.py", b"EVIL = 1\n")


def misnamed(directory: Path) -> Path:
    """A wheel named alpha-1.0 whose METADATA says 2.0."""
    wheel = make_wheel(directory / "built", "alpha", "2.0")
    target = directory / "alpha-1.0-py3-none-any.whl"
    wheel.rename(target)
    return target


def not_a_zip(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "alpha-1.0-py3-none-any.whl"
    path.write_bytes(b"<html>not found</html>\n")
    return path


class TestCheckWheel:
    def test_a_sound_wheel_passes(self, tmp_path):
        """A wheel made by the book raises nothing."""
        check_wheel(make_wheel(tmp_path, "alpha", "1.0"))

    def test_not_a_zip_is_refused_with_the_file_named(self, tmp_path):
        """An HTML page saved as a wheel is refused as not a zip."""
        with pytest.raises(MalformedWheelError) as info:
            check_wheel(not_a_zip(tmp_path))
        assert info.value.message.startswith("alpha-1.0-py3-none-any.whl: not a zip archive")
        assert info.value.hint is not None and "the wheel is malformed" in info.value.hint

    def test_a_record_hash_that_differs_is_refused(self, tmp_path):
        """A member whose bytes differ from its RECORD hash is named."""
        with pytest.raises(MalformedWheelError) as info:
            check_wheel(tampered(tmp_path))
        assert "its RECORD does not match its contents" in info.value.message
        assert "alpha/__init__.py didn't match RECORD" in info.value.message

    def test_a_member_missing_from_record_is_refused(self, tmp_path):
        """A file the RECORD does not list is refused."""
        wheel = rewrite(make_wheel(tmp_path, "alpha", "1.0"), "alpha/extra.py", b"X = 1\n")
        with pytest.raises(MalformedWheelError) as info:
            check_wheel(wheel)
        assert "alpha/extra.py is not mentioned in RECORD" in info.value.message

    def test_a_file_name_version_other_than_metadatas_is_refused(self, tmp_path):
        """alpha-1.0-….whl holding version 2.0 is refused, naming both versions."""
        with pytest.raises(MalformedWheelError) as info:
            check_wheel(misnamed(tmp_path))
        assert info.value.message == (
            "alpha-1.0-py3-none-any.whl: the file name says version 1.0, its METADATA says 2.0"
        )

    def test_the_given_file_name_is_checked_not_the_paths(self, tmp_path):
        """A file under a scratch name is checked against the name it will have."""
        wheel = make_wheel(tmp_path, "alpha", "1.0")
        scratch = wheel.rename(tmp_path / "blob-123-abcdef01")
        check_wheel(scratch, filename="alpha-1.0-py3-none-any.whl")
        with pytest.raises(MalformedWheelError):
            check_wheel(scratch, filename="alpha-3.0-py3-none-any.whl")


def rebuilt(wheel: Path, member: str, data: bytes, *, compress_type: int) -> Path:
    """The wheel with ``member`` set to ``data``, stored with ``compress_type``, and its RECORD
    rewritten to match (a sound wheel)."""
    with zipfile.ZipFile(wheel) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    members[member] = data
    record = next(name for name in members if name.endswith(".dist-info/RECORD"))
    rows = [
        f"{name},sha256={_b64(hashlib.sha256(content).digest())},{len(content)}"
        for name, content in members.items()
        if name != record
    ]
    members[record] = ("\n".join([*rows, f"{record},,"]) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as dst:
        for name, content in members.items():
            kind = compress_type if name == member else zipfile.ZIP_DEFLATED
            dst.writestr(name, content, compress_type=kind)
    return wheel


def _b64(digest: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def member_data_offset(wheel: Path, member: str) -> int:
    """Where ``member``'s (compressed) bytes start in the archive."""
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(member)
    with wheel.open("rb") as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_length + extra_length


def rehashed(wheel: Path, members: set[str]) -> Path:
    """The wheel with the RECORD hashes of ``members`` replaced by another file's."""
    wrong = _b64(hashlib.sha256(b"another file").digest())
    with zipfile.ZipFile(wheel) as src:
        contents = {info.filename: src.read(info) for info in src.infolist()}
    record = next(name for name in contents if name.endswith(".dist-info/RECORD"))
    lines = []
    for line in contents[record].decode().splitlines():
        name, _, size = line.split(",")
        lines.append(f"{name},sha256={wrong},{size}" if name in members else line)
    contents[record] = ("\n".join(lines) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as dst:
        for name, content in contents.items():
            dst.writestr(name, content, compress_type=zipfile.ZIP_STORED)
    return wheel


BIG = 3 << 20  # past the check's 1 MiB chunks


class TestContents:
    @pytest.mark.parametrize(
        "compress_type", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2]
    )
    def test_a_sound_member_passes_in_any_compression(self, tmp_path, compress_type):
        """Big members deflated, stored or bzip2-compressed pass when RECORD matches."""
        wheel = make_wheel(tmp_path, "alpha", "1.0")
        check_wheel(rebuilt(wheel, "alpha/big.bin", os.urandom(BIG), compress_type=compress_type))

    def test_a_changed_byte_past_the_first_chunk_is_named(self, tmp_path):
        """A stored member edited after its first MiB fails its RECORD hash, named."""
        wheel = rebuilt(
            make_wheel(tmp_path, "alpha", "1.0"),
            "alpha/big.bin",
            bytes(BIG),
            compress_type=zipfile.ZIP_STORED,
        )
        flip_byte(wheel, member_data_offset(wheel, "alpha/big.bin") + BIG - 10)
        with pytest.raises(MalformedWheelError) as info:
            check_wheel(wheel)
        # The CRC-32 fails first: zipfile would refuse the member when installing too.
        assert "alpha/big.bin" in info.value.message

    def test_a_corrupt_deflate_stream_is_refused(self, tmp_path):
        """Deflated bytes that do not inflate make the wheel unreadable, named."""
        wheel = rebuilt(
            make_wheel(tmp_path, "alpha", "1.0"),
            "alpha/big.bin",
            os.urandom(BIG),
            compress_type=zipfile.ZIP_DEFLATED,
        )
        start = member_data_offset(wheel, "alpha/big.bin")
        with wheel.open("r+b") as f:
            f.seek(start)
            f.write(b"\xff" * 64)
        with pytest.raises(MalformedWheelError) as info:
            check_wheel(wheel)
        assert info.value.message.startswith("alpha-1.0-py3-none-any.whl: ")

    def test_a_big_wheels_members_are_all_checked_and_named_in_order(self, tmp_path):
        """A wheel past 4 MB (checked by several threads) names each bad member, in the
        archive's order."""
        wheel = make_wheel(tmp_path, "alpha", "1.0")
        for i in range(8):
            wheel = rebuilt(
                wheel, f"alpha/part{i}.bin", os.urandom(1 << 20), compress_type=zipfile.ZIP_STORED
            )
        wheel = rehashed(wheel, {f"alpha/part{i}.bin" for i in (6, 1, 4)})
        with pytest.raises(MalformedWheelError) as info:
            check_wheel(wheel)
        assert info.value.message.index("part1.bin") < info.value.message.index("part4.bin")
        assert info.value.message.index("part4.bin") < info.value.message.index("part6.bin")

    def test_a_member_bigger_than_record_says_is_refused(self, tmp_path):
        """A member that inflates past its RECORD size (a zip bomb) is refused as a mismatch."""
        wheel = make_wheel(tmp_path, "alpha", "1.0")
        wheel = rebuilt(
            wheel, "alpha/zeros.bin", bytes(64 << 20), compress_type=zipfile.ZIP_DEFLATED
        )
        with zipfile.ZipFile(wheel) as src:
            members = {info.filename: src.read(info) for info in src.infolist()}
        record = "alpha-1.0.dist-info/RECORD"
        members[record] = b"".join(
            (line.rsplit(b",", 1)[0] + b",10" if line.startswith(b"alpha/zeros.bin,") else line)
            + b"\n"
            for line in members[record].splitlines()
        )
        with zipfile.ZipFile(wheel, "w") as dst:
            for name, content in members.items():
                dst.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
        with pytest.raises(MalformedWheelError) as info:
            check_wheel(wheel)
        assert "hash / size of alpha/zeros.bin didn't match RECORD" in info.value.message


def flipped_big(directory: Path) -> Path:
    """A stored 3 MiB member with one byte changed after its first MiB."""
    wheel = rebuilt(
        make_wheel(directory, "alpha", "1.0"),
        "alpha/big.bin",
        bytes(BIG),
        compress_type=zipfile.ZIP_STORED,
    )
    flip_byte(wheel, member_data_offset(wheel, "alpha/big.bin") + BIG - 10)
    return wheel


def corrupt_deflate(directory: Path) -> Path:
    """A deflated member whose stream does not inflate."""
    wheel = rebuilt(
        make_wheel(directory, "alpha", "1.0"),
        "alpha/big.bin",
        os.urandom(BIG),
        compress_type=zipfile.ZIP_DEFLATED,
    )
    with wheel.open("r+b") as f:
        f.seek(member_data_offset(wheel, "alpha/big.bin"))
        f.write(b"\xff" * 64)
    return wheel


def big_rehashed(directory: Path) -> Path:
    """A wheel past 4 MB whose RECORD lies about three members."""
    wheel = make_wheel(directory, "alpha", "1.0")
    for i in range(8):
        wheel = rebuilt(
            wheel, f"alpha/part{i}.bin", os.urandom(1 << 20), compress_type=zipfile.ZIP_STORED
        )
    return rehashed(wheel, {f"alpha/part{i}.bin" for i in (6, 1, 4)})


class _Unseekable:
    """A file zipfile can only append to: it writes each member's sizes after its bytes (a
    data descriptor), as a wheel written to a pipe has them."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def with_data_descriptors(directory: Path, *, lie: bool) -> Path:
    """alpha 1.0 rewritten with data descriptors, its module changed behind RECORD if ``lie``."""
    wheel = make_wheel(directory, "alpha", "1.0")
    with zipfile.ZipFile(wheel) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    if lie:
        members["alpha/__init__.py"] = b"EVIL = 1\n"
    with wheel.open("wb") as raw, zipfile.ZipFile(_Unseekable(raw), "w") as dst:
        for name, content in members.items():
            dst.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(wheel) as archive:
        assert all(info.flag_bits & 0x8 for info in archive.infolist())
    return wheel


def outcome(wheel: Path, streamed: StreamedMembers | None = None) -> str:
    """What check_wheel says of ``wheel``: "sound", or its error's message."""
    try:
        check_wheel(wheel, streamed=streamed)
    except MalformedWheelError as exc:
        return exc.message
    return "sound"


def streamed(wheel: Path, chunk: int) -> StreamedMembers:
    """The wheel's bytes fed ``chunk`` bytes at a time, as a download writes them."""
    members = StreamedMembers()
    data = wheel.read_bytes()
    for start in range(0, len(data), chunk):
        members.feed(data[start : start + chunk])
    return members


MAKERS = {
    "sound": lambda d: make_wheel(d, "alpha", "1.0"),
    "sound, big deflated": lambda d: rebuilt(
        make_wheel(d, "alpha", "1.0"),
        "alpha/big.bin",
        os.urandom(BIG),
        compress_type=zipfile.ZIP_DEFLATED,
    ),
    "sound, bzip2": lambda d: rebuilt(
        make_wheel(d, "alpha", "1.0"), "alpha/big.bin", b"x" * 1000, compress_type=zipfile.ZIP_BZIP2
    ),
    "lying RECORD": tampered,
    "changed byte": flipped_big,
    "corrupt deflate": corrupt_deflate,
    "big, three lies": big_rehashed,
    "not a zip": not_a_zip,
    "data descriptors": lambda d: with_data_descriptors(d, lie=False),
    "data descriptors, lying RECORD": lambda d: with_data_descriptors(d, lie=True),
}


# A byte at a time only through the small wheels: megabytes of it take minutes.
BIG_KINDS = ("sound, big deflated", "changed byte", "corrupt deflate", "big, three lies")
CASES = [
    (kind, chunk)
    for kind in sorted(MAKERS)
    for chunk in (1, 4093, 1 << 16, 1 << 30)
    if chunk > 1 or kind not in BIG_KINDS
]


class TestStreamedMembers:
    @pytest.mark.parametrize(("kind", "chunk"), CASES)
    def test_the_streamed_check_finds_what_the_file_check_finds(self, tmp_path, kind, chunk):
        """Whatever the wheel and however its bytes arrive, checking it with its members
        hashed as they streamed past says what checking the file alone says."""
        wheel = MAKERS[kind](tmp_path / "dists")
        alone = outcome(wheel)
        assert outcome(wheel, streamed(wheel, chunk)) == alone
        assert (alone == "sound") == (kind.startswith("sound") or kind == "data descriptors")

    def test_every_member_of_a_plain_wheel_is_taken_from_the_stream(self, tmp_path):
        """A wheel with sizes in its local headers, stored or deflated, streams whole: no
        member is left to read from the file again."""
        wheel = MAKERS["sound, big deflated"](tmp_path / "dists")
        members = streamed(wheel, 1 << 16)
        with zipfile.ZipFile(wheel) as archive:
            assert all(members.seen(info) is not None for info in archive.infolist())

    def test_members_with_data_descriptors_are_left_to_the_file(self, tmp_path):
        """Members whose sizes come after their bytes are not followed (the file check
        reads them)."""
        wheel = with_data_descriptors(tmp_path / "dists", lie=False)
        members = streamed(wheel, 1 << 16)
        with zipfile.ZipFile(wheel) as archive:
            assert all(members.seen(info) is None for info in archive.infolist())


def artefact_for(path: Path) -> Artefact:
    return Artefact(
        name=canonicalize_name("alpha"),
        version="1.0",
        filename=path.name,
        url=None,
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        size=path.stat().st_size,
    )


def blobs(store: Path) -> list[Path]:
    return [p for p in (store / "blobs").rglob("*") if p.is_file()]


class TestStoreEntry:
    def test_a_built_wheel_that_is_malformed_never_enters_the_store(self, tmp_path):
        """Store.add_file refuses a tampered wheel and keeps nothing of it."""
        store = Store(tmp_path / "store")
        with pytest.raises(MalformedWheelError) as info:
            store.add_file(tampered(tmp_path / "dists"))
        assert "alpha-1.0-py3-none-any.whl" in info.value.message
        assert blobs(store.root) == []
        assert [p.name for p in store.tmp_dir().iterdir()] == []

    def test_a_fetched_wheel_whose_record_lies_never_enters_the_store(self, tmp_path, local_index):
        """A downloaded wheel (its members hashed as it streams in) whose module is not the one
        its RECORD hashes is refused, naming the wheel and the member; nothing is kept."""
        store = Store(tmp_path / "store")
        wheel = tampered(tmp_path / "dists")
        index = local_index(wheel.parent)
        url = f"{index.base_url.rstrip('/')}/{wheel.name}"
        artefact = dataclasses.replace(artefact_for(wheel), path=None, url=url)
        with pytest.raises(MalformedWheelError) as info:
            Fetcher().fetch([artefact], store, RecordingReporter())
        assert info.value.message.startswith("alpha-1.0-py3-none-any.whl: its RECORD")
        assert "hash / size of alpha/__init__.py didn't match RECORD" in info.value.message
        assert blobs(store.root) == []

    @pytest.mark.parametrize("lies", [False, True])
    def test_a_big_fetched_wheel_is_checked_whole(self, tmp_path, local_index, lies):
        """A wheel past PARALLEL_FROM is checked once downloaded (by several threads), not as
        it streams: a module its RECORD does not hash is refused all the same, and a sound
        one enters."""
        noise = os.urandom(PARALLEL_FROM + (1 << 20))  # deflate cannot shrink it
        files = {"alpha/__init__.py": b"X = 1\n", "alpha/blob.bin": noise}
        wheel = make_wheel(tmp_path / "dists", "alpha", "1.0", files=files)
        if lies:
            rewrite(wheel, "alpha/blob.bin", noise[:-1] + b"!")
        assert wheel.stat().st_size > PARALLEL_FROM
        index = local_index(wheel.parent)
        url = f"{index.base_url.rstrip('/')}/{wheel.name}"
        artefact = dataclasses.replace(artefact_for(wheel), path=None, url=url)
        store = Store(tmp_path / "store")
        if not lies:
            Fetcher().fetch([artefact], store, RecordingReporter())
            assert store.has(artefact.sha256)
            return
        with pytest.raises(MalformedWheelError) as info:
            Fetcher().fetch([artefact], store, RecordingReporter())
        assert "hash / size of alpha/blob.bin didn't match RECORD" in info.value.message
        assert blobs(store.root) == []

    def test_a_fetched_wheel_that_is_malformed_never_enters_the_store(self, tmp_path):
        """A local file whose hash is the lock's, but that is no zip, is refused by the fetcher."""
        store = Store(tmp_path / "store")
        with pytest.raises(MalformedWheelError) as info:
            Fetcher().fetch([artefact_for(not_a_zip(tmp_path))], store, RecordingReporter())
        assert "alpha-1.0-py3-none-any.whl: not a zip archive" in info.value.message
        assert blobs(store.root) == []

    def test_sdists_are_not_checked_as_wheels(self, tmp_path):
        """Only files named .whl are opened as wheels."""
        store = Store(tmp_path / "store")
        sdist = tmp_path / "alpha-1.0.tar.gz"
        sdist.write_bytes(b"not checked here")
        sha256 = store.add_file(sdist)
        assert store.has(sha256)

    @pytest.mark.parametrize(
        ("make", "says"),
        [
            (not_a_zip, "not a zip archive"),
            (tampered, "its RECORD does not match its contents"),
            (misnamed, "the file name says version 1.0, its METADATA says 2.0"),
        ],
    )
    def test_build_refuses_a_malformed_wheel_with_the_file_named(self, tmp_path, make, says):
        """`build` from a lock naming a malformed wheel fails naming it; twice, nothing stored."""
        wheel = make(tmp_path / "dists")
        app = tmp_path / "app"
        app.mkdir()
        (app / ".python-version").write_text("3.11\n")
        (app / "pylock.toml").write_text(
            'lock-version = "1.0"\ncreated-by = "hand"\nrequires-python = ">=3.11"\n\n'
            '[[packages]]\nname = "alpha"\nversion = "1.0"\n\n'
            f'[[packages.wheels]]\nname = "{wheel.name}"\npath = "../dists/{wheel.name}"\n'
            f'hashes = {{ sha256 = "{artefact_for(wheel).sha256}" }}\n'
        )
        store = tmp_path / "store"
        for _ in range(2):
            result = cli("build", app, "--store", store, "--platform", PLATFORM)
            assert result.code == 1, result.err
            assert f"error: {wheel.name}: {says}" in result.err
            assert "hint: the wheel is malformed" in result.err
            assert blobs(store) == []
            assert not (store / "wheelhouses").exists()
