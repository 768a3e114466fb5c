"""Tests for wheelbarrow.build.reproducible: SOURCE_DATE_EPOCH from the sdist, the prefix maps."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from wheelbarrow.build.reproducible import (
    DEFAULT_EPOCH,
    PrefixMap,
    archive_epoch,
    prefix_maps,
    reproducible_environ,
)


def write_tar(path: Path, mtimes: dict[str, int]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, mtime in mtimes.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = 2, mtime
            tar.addfile(info, io.BytesIO(b"x\n"))
    return path


class TestArchiveEpoch:
    def test_a_tarball_gives_its_newest_members_time(self, tmp_path):
        """The newest member's mtime, not the first's nor the archive file's own."""
        sdist = write_tar(
            tmp_path / "demo-1.0.tar.gz",
            {"demo-1.0/PKG-INFO": 1_600_000_000, "demo-1.0/demo.c": 1_700_000_000},
        )
        os.utime(sdist, (1_800_000_000, 1_800_000_000))

        assert archive_epoch(sdist) == 1_700_000_000

    def test_a_zip_sdists_times_are_read_as_utc(self, tmp_path, monkeypatch):
        """A zip's zone-less times give the same epoch whatever the local time zone."""
        sdist = tmp_path / "demo-1.0.zip"
        with zipfile.ZipFile(sdist, "w") as archive:
            archive.writestr(zipfile.ZipInfo("demo-1.0/PKG-INFO", (2023, 11, 14, 22, 13, 20)), "")
        monkeypatch.setenv("TZ", "America/New_York")

        assert archive_epoch(sdist) == 1_700_000_000

    def test_times_of_zero_give_the_fixed_default(self, tmp_path):
        """An archive made with every mtime 0 gets 1980-01-01, the earliest a zip holds."""
        sdist = write_tar(tmp_path / "demo-1.0.tar.gz", {"demo-1.0/PKG-INFO": 0})

        assert archive_epoch(sdist) == DEFAULT_EPOCH == 315_532_800

    def test_an_unreadable_archive_gives_the_default_rather_than_failing(self, tmp_path):
        """A broken archive is the unpacking's to report: the epoch falls back to the default."""
        sdist = tmp_path / "demo-1.0.tar.gz"
        sdist.write_bytes(b"not a tarball")

        assert archive_epoch(sdist) == DEFAULT_EPOCH


class TestPrefixMaps:
    def test_the_store_comes_first_and_the_source_tree_last(self, tmp_path):
        """Compilers apply the last matching map, so the source tree inside the store wins."""
        maps = prefix_maps(
            source=tmp_path / "store" / "scratch" / "src",
            build_env=tmp_path / "store" / "envs" / "build-1",
            store=tmp_path / "store",
        )

        assert [(m.real, m.fixed) for m in maps] == [
            (str(tmp_path / "store"), "/wheelbarrow/store"),
            (str(tmp_path / "store" / "envs" / "build-1"), "/wheelbarrow/build-env"),
            (str(tmp_path / "store" / "scratch" / "src"), "/wheelbarrow/src"),
        ]

    def test_a_directory_reached_through_a_symlink_is_mapped_under_both_names(self, tmp_path):
        """A compiler may see the real path (getcwd) or the link's: both are mapped."""
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")

        maps = prefix_maps(source=tmp_path / "link", build_env=tmp_path / "env", store=None)

        assert [m.real for m in maps if m.fixed == "/wheelbarrow/src"] == [
            str(tmp_path / "link"),
            str(tmp_path / "real"),
        ]


class TestReproducibleEnviron:
    MAPS = (PrefixMap(real="/s/store", fixed="/wheelbarrow/store"),)

    def test_the_flags_already_there_are_kept_and_the_maps_appended(self):
        """Each flag variable keeps its value with the prefix map after it; unset ones get it."""
        env = reproducible_environ(
            {"CFLAGS": "-O1", "RUSTFLAGS": "-C debuginfo=2"}, epoch=5, maps=self.MAPS, own={}
        )

        assert env["CFLAGS"] == "-O1 -ffile-prefix-map=/s/store=/wheelbarrow/store"
        assert env["CXXFLAGS"] == "-ffile-prefix-map=/s/store=/wheelbarrow/store"
        assert env["RUSTFLAGS"] == "-C debuginfo=2 --remap-path-prefix=/s/store=/wheelbarrow/store"
        assert (env["SOURCE_DATE_EPOCH"], env["PYTHONHASHSEED"]) == ("5", "0")

    def test_cargos_encoded_flags_get_the_map_when_they_are_what_cargo_reads(self):
        """With CARGO_ENCODED_RUSTFLAGS set (cargo then ignores RUSTFLAGS) the map goes there."""
        env = reproducible_environ(
            {"CARGO_ENCODED_RUSTFLAGS": "-C\x1fopt-level=3"}, epoch=5, maps=self.MAPS, own={}
        )

        assert env["CARGO_ENCODED_RUSTFLAGS"] == (
            "-C\x1fopt-level=3\x1f--remap-path-prefix=/s/store=/wheelbarrow/store"
        )
        assert "RUSTFLAGS" not in env

    def test_a_path_with_a_space_is_left_out_of_the_flags(self):
        """Flag variables are split on whitespace, so a map of such a path would break them."""
        maps = (PrefixMap(real="/my store", fixed="/wheelbarrow/store"),)

        env = reproducible_environ({"CFLAGS": "-O2"}, epoch=5, maps=maps, own={})

        assert env["CFLAGS"] == "-O2" and "RUSTFLAGS" not in env


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
class TestWithARealCompiler:
    def test_the_same_source_in_two_stores_compiles_to_the_same_bytes(self, tmp_path):
        """gcc with -g, run in source trees inside two stores at different paths, writes the
        same object, naming neither store."""
        outputs = []
        for store in (tmp_path / "a" / "store", tmp_path / "second" / "place" / "store"):
            source = store / "scratch" / "sources-x1" / "demo-1.0"
            source.mkdir(parents=True)
            (source / "demo.c").write_text(
                "const char *where(void) { return __FILE__; }\nint twice(int x) { return 2 * x; }\n"
            )
            env = reproducible_environ(
                {"CFLAGS": "-g -O2"},
                epoch=DEFAULT_EPOCH,
                maps=prefix_maps(source=source, build_env=store / "envs" / "build-1", store=store),
                own={},
            )
            compiler = shlex.split(sysconfig.get_config_var("CC") or "gcc")
            subprocess.run(
                [
                    *compiler,
                    *shlex.split(env["CFLAGS"]),
                    "-c",
                    str(source / "demo.c"),
                    "-o",
                    "demo.o",
                ],
                cwd=source,
                check=True,
            )
            data = (source / "demo.o").read_bytes()
            assert str(tmp_path).encode() not in data
            outputs.append(data)

        assert outputs[0] == outputs[1]
        assert b"/wheelbarrow/src/demo.c" in outputs[0]
