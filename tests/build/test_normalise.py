"""Tests for wheelbarrow.build.normalise: one byte output for the same members, content kept."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import random
import struct
import zipfile
from pathlib import Path

import pytest
from support.apps import build_ok, make_app
from support.sdists import make_c_extension_sdist

from wheelbarrow._core.errors import RepairError
from wheelbarrow.build.normalise import normalise_wheel, zip_date_time

NAME = "demo-1.0-cp311-cp311-linux_x86_64.whl"
MEMBERS = {
    "demo/__init__.py": b"from demo._ext import f\n",
    "demo/_ext.so": b"\x7fELF" + bytes(range(256)) * 40,
    "demo/bin/tool": b"#!/bin/sh\necho tool\n",
    "demo-1.0.data/scripts/demo-run": b"#!python\nprint('run')\n",
    "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    "demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n",
    "demo-1.0.dist-info/entry_points.txt": b"[console_scripts]\ndemo = demo:main\n",
}
EXECUTABLE = {"demo/bin/tool", "demo-1.0.data/scripts/demo-run"}
EPOCH = 1_700_000_000
SDIST_MTIME = 1_577_836_800  # every member's time in the fixture sdists (support/sdists.py)


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(path: Path, *, seed: int, record_order: bool = True) -> Path:
    """A wheel of MEMBERS zipped differently for each ``seed``: order, times, modes, extras."""
    rng = random.Random(seed)  # noqa: S311 - shuffles test input, no secret
    names = list(MEMBERS)
    rng.shuffle(names)
    record = [f"{n},{_hash(MEMBERS[n])},{len(MEMBERS[n])}" for n in names]
    if not record_order:
        record.reverse()
    record.append("demo-1.0.dist-info/RECORD,,")
    entries = [
        *((n, MEMBERS[n]) for n in names),
        ("demo-1.0.dist-info/RECORD", "\n".join(record).encode()),
    ]
    rng.shuffle(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.comment = f"made with seed {seed}".encode()
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1990 + seed, 1 + seed % 12, 3, 4, 5, 7))
            mode = 0o100775 if name in EXECUTABLE else rng.choice([0o100600, 0o100664, 0o100444])
            info.external_attr = mode << 16
            info.create_system = rng.choice([0, 3])
            # An extended-timestamp field, as Info-ZIP writes.
            info.extra = struct.pack("<HHBI", 0x5455, 5, 1, 10_000 * seed) if seed % 2 else b""
            kind = rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
            archive.writestr(info, data, compress_type=kind)
    return path


def record_rows(wheel: Path) -> list[list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        return list(csv.reader(io.StringIO(archive.read("demo-1.0.dist-info/RECORD").decode())))


class TestNormaliseWheel:
    def test_differently_zipped_wheels_of_the_same_members_give_the_same_bytes(self, tmp_path):
        """Shuffled order, odd times and modes, extra fields and comments all normalise to one
        byte output."""
        outputs = {
            normalise_wheel(
                write_wheel(tmp_path / f"in{seed}" / NAME, seed=seed),
                tmp_path / f"out{seed}",
                epoch=EPOCH,
            ).read_bytes()
            for seed in range(4)
        }

        assert len(outputs) == 1

    def test_members_in_name_order_with_dist_info_last_and_record_last_of_all(self, tmp_path):
        """Payload members sorted by name, then the .dist-info ones, RECORD the very last."""
        out = normalise_wheel(
            write_wheel(tmp_path / "in" / NAME, seed=3), tmp_path / "out", epoch=EPOCH
        )

        with zipfile.ZipFile(out) as archive:
            names = archive.namelist()
        assert names == [
            "demo-1.0.data/scripts/demo-run",
            "demo/__init__.py",
            "demo/_ext.so",
            "demo/bin/tool",
            "demo-1.0.dist-info/METADATA",
            "demo-1.0.dist-info/WHEEL",
            "demo-1.0.dist-info/entry_points.txt",
            "demo-1.0.dist-info/RECORD",
        ]

    def test_times_modes_and_headers_are_fixed(self, tmp_path):
        """Every member has the epoch's time, 0644 or 0755 by its owner's executable bit, Unix
        attributes, deflate, no extra field; the archive has no comment."""
        out = normalise_wheel(
            write_wheel(tmp_path / "in" / NAME, seed=1), tmp_path / "out", epoch=EPOCH
        )

        with zipfile.ZipFile(out) as archive:
            assert archive.comment == b""
            for info in archive.infolist():
                mode = info.external_attr >> 16
                assert info.date_time == (2023, 11, 14, 22, 13, 20), info.filename
                assert mode == (0o100755 if info.filename in EXECUTABLE else 0o100644), (
                    info.filename
                )
                assert (info.create_system, info.extra, info.compress_type) == (
                    3,
                    b"",
                    zipfile.ZIP_DEFLATED,
                )

    def test_record_lists_every_member_in_archive_order_with_its_hash(self, tmp_path):
        """RECORD is rewritten from the members' own hashes and sizes, in the archive's order,
        itself last without a hash, even when the backend's RECORD was in another order."""
        out = normalise_wheel(
            write_wheel(tmp_path / "in" / NAME, seed=2, record_order=False),
            tmp_path / "out",
            epoch=EPOCH,
        )

        with zipfile.ZipFile(out) as archive:
            names = archive.namelist()
        rows = record_rows(out)
        assert [row[0] for row in rows] == names
        assert rows[-1] == ["demo-1.0.dist-info/RECORD", "", ""]
        for name, digest, size in rows[:-1]:
            assert (digest, size) == (_hash(MEMBERS[name]), str(len(MEMBERS[name]))), name

    def test_the_members_content_is_never_changed_nor_the_input(self, tmp_path):
        """Every member but RECORD has the same bytes as in the input, whose file is untouched."""
        wheel = write_wheel(tmp_path / "in" / NAME, seed=5)
        before = wheel.read_bytes()

        out = normalise_wheel(wheel, tmp_path / "out", epoch=EPOCH)

        assert wheel.read_bytes() == before
        with zipfile.ZipFile(out) as archive:
            assert {
                n: archive.read(n) for n in archive.namelist() if not n.endswith("RECORD")
            } == MEMBERS
            assert archive.testzip() is None

    def test_normalising_twice_changes_nothing(self, tmp_path):
        """A normalised wheel normalises to the same bytes."""
        once = normalise_wheel(
            write_wheel(tmp_path / "in" / NAME, seed=0), tmp_path / "one", epoch=EPOCH
        )

        twice = normalise_wheel(once, tmp_path / "two", epoch=EPOCH)

        assert twice.read_bytes() == once.read_bytes()

    def test_a_record_that_disagrees_with_a_member_is_refused(self, tmp_path):
        """A RECORD hash that does not match its member is a broken wheel, named, not hidden."""
        wheel = tmp_path / "in" / NAME
        wheel.parent.mkdir()
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("demo/__init__.py", b"changed\n")
            archive.writestr("demo-1.0.dist-info/RECORD", f"demo/__init__.py,{_hash(b'x')},1\n")

        with pytest.raises(RepairError, match=r"RECORD says demo/__init__.py has sha256="):
            normalise_wheel(wheel, tmp_path / "out", epoch=EPOCH)
        assert not (tmp_path / "out" / NAME).exists()

    def test_a_member_named_twice_is_refused(self, tmp_path):
        """An archive holding one name twice is refused with the name, and nothing is written."""
        wheel = tmp_path / "in" / NAME
        wheel.parent.mkdir()
        with (
            pytest.warns(UserWarning, match="Duplicate name"),
            zipfile.ZipFile(wheel, "w") as archive,
        ):
            archive.writestr("demo/__init__.py", b"one\n")
            archive.writestr("demo/__init__.py", b"two\n")
            archive.writestr("demo-1.0.dist-info/RECORD", b"")

        with pytest.raises(RepairError, match=r"holds demo/__init__.py more than once"):
            normalise_wheel(wheel, tmp_path / "out", epoch=EPOCH)
        assert list((tmp_path / "out").iterdir()) == []


class TestZipDateTime:
    def test_times_before_1980_are_clamped_to_1980(self):
        """Epoch 0 (1970) cannot be held by a zip header: it becomes 1980-01-01."""
        assert zip_date_time(0) == (1980, 1, 1, 0, 0, 0)

    def test_a_time_is_read_as_utc(self):
        """The epoch gives the same zip time in every time zone."""
        assert zip_date_time(EPOCH) == (2023, 11, 14, 22, 13, 20)


class TestBuiltWheelsAreNormalised:
    def test_a_wheel_built_from_an_sdist_is_stored_normalised_with_the_sdists_time(
        self, tmp_path, local_index
    ):
        """The wheel a source build puts in the wheelhouse is already normalised (normalising
        it again changes no byte), every member dated by the sdist's newest member."""
        index = local_index([make_c_extension_sdist(tmp_path / "d")])
        report = build_ok(make_app(tmp_path / "app", "cext==1.0\n"), tmp_path / "store", index.url)

        [wheel] = Path(report["wheelhouse"]).glob("cext-*.whl")
        again = normalise_wheel(wheel, tmp_path / "again", epoch=SDIST_MTIME)
        assert again.read_bytes() == wheel.read_bytes()
        with zipfile.ZipFile(wheel) as archive:
            assert {i.date_time for i in archive.infolist()} == {zip_date_time(SDIST_MTIME)}

    def test_two_stores_at_different_paths_build_the_same_wheel(self, tmp_path, local_index):
        """The same sdist built in two empty stores at different paths gives one sha256."""
        index = local_index([make_c_extension_sdist(tmp_path / "d")])
        app = make_app(tmp_path / "app", "cext==1.0\n")
        digests = set()
        for store in (tmp_path / "a" / "store", tmp_path / "another" / "place" / "store"):
            report = build_ok(app, store, index.url)
            assert report["built"][0]["reused"] is False
            [wheel] = Path(report["wheelhouse"]).glob("cext-*.whl")
            digests.add(hashlib.sha256(wheel.read_bytes()).hexdigest())

        assert len(digests) == 1
