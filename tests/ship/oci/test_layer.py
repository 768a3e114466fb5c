"""Tests for wheelbarrow.ship.oci.layer: reproducible layer tars, and trees as entries."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from wheelbarrow._core.errors import ImageError, ImageFormatError
from wheelbarrow.ship.oci.layer import (
    Directory,
    HardLink,
    LayerBlob,
    LayerEntry,
    RegularFile,
    Symlink,
    entries_from_tree,
    image_path,
    write_layer,
)

EPOCH = 1_700_000_000


def app_entries(tmp_path: Path) -> list[LayerEntry]:
    """A small app: a directory owned by 1000, a streamed file, bytes, a symlink, a hard link."""
    source = tmp_path / "src-main.py"
    source.write_text("print('hi')\n")
    return [
        Directory(path="/app", uid=1000, gid=1000),
        RegularFile(path="/app/main.py", source=source, uid=1000, gid=1000),
        RegularFile(path="/app/bin/run", data=b"#!/bin/sh\nexec python /app/main.py\n", mode=0o755),
        Symlink(path="/usr/local/bin/run", target="/app/bin/run"),
        HardLink(path="/app/main-copy.py", target="/app/main.py"),
        RegularFile(path="/etc/app.conf", data=b"x = 1\n"),
    ]


def members(blob: LayerBlob) -> list[tarfile.TarInfo]:
    with tarfile.open(blob.path, "r:gz") as tar:
        return tar.getmembers()


def tar_listing(blob: LayerBlob) -> list[list[str]]:
    """``tar -tvf`` of the uncompressed layer, split into columns."""
    done = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", "-"],
        input=gzip.decompress(blob.path.read_bytes()),
        capture_output=True,
        check=True,
    )
    return [line.split() for line in done.stdout.decode().splitlines()]


class TestWriteLayer:
    def test_same_input_gives_the_same_bytes(self, tmp_path: Path) -> None:
        """Entries in any order, written twice, give identical blobs and digests."""
        entries = app_entries(tmp_path)
        first = write_layer(entries, tmp_path / "one", mtime=EPOCH)
        second = write_layer(list(reversed(entries)), tmp_path / "two", mtime=EPOCH)
        assert (first.digest, first.diff_id, first.size) == (
            second.digest,
            second.diff_id,
            second.size,
        )
        assert first.path.read_bytes() == second.path.read_bytes()

    def test_another_mtime_gives_another_layer(self, tmp_path: Path) -> None:
        """The mtime given is every member's mtime, so changing it changes both digests."""
        entries = app_entries(tmp_path)
        old = write_layer(entries, tmp_path / "old", mtime=0)
        new = write_layer(entries, tmp_path / "new", mtime=EPOCH)
        assert old.digest != new.digest
        assert old.diff_id != new.diff_id
        assert {m.mtime for m in members(old)} == {0}
        assert {m.mtime for m in members(new)} == {EPOCH}

    def test_digests_describe_the_blob(self, tmp_path: Path) -> None:
        """digest hashes the gzip bytes, diff_id the tar inside; the file is named by its digest."""
        blob = write_layer(app_entries(tmp_path), tmp_path / "out", mtime=0)
        data = blob.path.read_bytes()
        assert blob.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
        assert blob.diff_id == f"sha256:{hashlib.sha256(gzip.decompress(data)).hexdigest()}"
        assert blob.size == len(data)
        assert blob.path == tmp_path / "out" / "sha256" / blob.digest.removeprefix("sha256:")
        assert blob.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sha256"]

    def test_gzip_header_has_no_name_and_no_time(self, tmp_path: Path) -> None:
        """The gzip header carries neither the temporary file's name nor the clock."""
        data = write_layer(app_entries(tmp_path), tmp_path / "out", mtime=EPOCH).path.read_bytes()
        flags, mtime = data[3], int.from_bytes(data[4:8], "little")
        assert flags & 0x08 == 0  # FNAME
        assert mtime == 0

    def test_tar_lists_sorted_names_parents_first(self, tmp_path: Path) -> None:
        """tar -tvf shows sorted names, each directory (added if missing) before its contents."""
        blob = write_layer(app_entries(tmp_path), tmp_path / "out", mtime=0)
        names = [row[5] for row in tar_listing(blob)]
        assert names == [
            "app/",
            "app/bin/",
            "app/bin/run",
            "app/main-copy.py",
            "app/main.py",
            "etc/",
            "etc/app.conf",
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/run",
        ]

    def test_owners_are_numeric_and_names_empty(self, tmp_path: Path) -> None:
        """Owners are 0/0 unless given (1000 for the app's files); no user or group names leak."""
        blob = write_layer(app_entries(tmp_path), tmp_path / "out", mtime=0)
        owners = {row[5]: row[1] for row in tar_listing(blob)}
        assert owners["app/"] == owners["app/main.py"] == "1000/1000"
        assert owners["app/main-copy.py"] == "1000/1000"
        assert {owners[n] for n in ("app/bin/", "app/bin/run", "etc/", "usr/local/bin/run")} == {
            "0/0"
        }
        assert all(m.uname == "" and m.gname == "" for m in members(blob))

    def test_modes_are_kept_and_added_parents_are_0755(self, tmp_path: Path) -> None:
        """Entries keep their modes; parents added for them are root-owned 0755 directories."""
        by_name = {
            m.name: m for m in members(write_layer(app_entries(tmp_path), tmp_path, mtime=0))
        }
        assert by_name["app/bin/run"].mode == 0o755
        assert by_name["etc/app.conf"].mode == 0o644
        assert by_name["usr/local"].isdir() and by_name["usr/local"].mode == 0o755

    def test_no_pax_records_but_long_paths(self, tmp_path: Path) -> None:
        """PAX records appear only for names tar's header cannot hold, never for times."""
        long_name = "/opt/" + "/".join(["d" * 30] * 5) + "/file.txt"
        entries = [RegularFile(path="/short", data=b"s"), RegularFile(path=long_name, data=b"l")]
        by_name = {m.name: m for m in members(write_layer(entries, tmp_path, mtime=EPOCH))}
        assert by_name["short"].pax_headers == {}
        assert by_name[long_name.lstrip("/")].pax_headers == {"path": long_name.lstrip("/")}

    def test_hard_linked_file_is_stored_once(self, tmp_path: Path) -> None:
        """A hard link becomes a link member: the content is in the tar once."""
        content = os.urandom(64 * 1024)
        linked = write_layer(
            [RegularFile(path="/a", data=content), HardLink(path="/b", target="/a")],
            tmp_path / "linked",
            mtime=0,
        )
        copied = write_layer(
            [RegularFile(path="/a", data=content), RegularFile(path="/b", data=content)],
            tmp_path / "copied",
            mtime=0,
        )
        by_name = {m.name: m for m in members(linked)}
        assert by_name["b"].islnk() and by_name["b"].linkname == "a"
        assert linked.size < copied.size * 0.6

    def test_content_goes_to_the_first_name(self, tmp_path: Path) -> None:
        """A link that sorts before its file holds the content; the file becomes the link."""
        blob = write_layer(
            [RegularFile(path="/z/file", data=b"data"), HardLink(path="/a/link", target="/z/file")],
            tmp_path,
            mtime=0,
        )
        by_name = {m.name: m for m in members(blob)}
        assert by_name["a/link"].isfile() and by_name["a/link"].size == 4
        assert by_name["z/file"].islnk() and by_name["z/file"].linkname == "a/link"

    def test_source_files_can_be_rewritten(self, tmp_path: Path) -> None:
        """rewrite turns a source file's bytes into what the layer stores."""
        script = tmp_path / "script"
        script.write_bytes(b"#!/build/venv/bin/python\n")
        blob = write_layer(
            [
                RegularFile(
                    path="/app/script",
                    source=script,
                    rewrite=lambda path, data: data.replace(b"/build/venv", b"/app/venv"),
                )
            ],
            tmp_path / "out",
            mtime=0,
        )
        with tarfile.open(blob.path, "r:gz") as tar:
            extracted = tar.extractfile("app/script")
            assert extracted is not None
            assert extracted.read() == b"#!/app/venv/bin/python\n"

    @pytest.mark.parametrize(
        ("entries", "message"),
        [
            ([RegularFile(path="/a", data=b""), Directory(path="a")], "two entries for 'a'"),
            ([HardLink(path="/b", target="/a")], "not a regular file"),
            (
                [Symlink(path="/lib", target="usr/lib"), RegularFile(path="/lib/x", data=b"")],
                "not a directory",
            ),
        ],
    )
    def test_inconsistent_entries_are_refused(
        self, tmp_path: Path, entries: list[LayerEntry], message: str
    ) -> None:
        """Duplicate paths, dangling hard links and files under a non-directory are errors."""
        with pytest.raises(ImageFormatError, match=message):
            write_layer(entries, tmp_path, mtime=0)
        assert not (tmp_path / "sha256").exists()
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("path", ["", "/", "/app/../etc/passwd", "..", "a/\0b"])
    def test_paths_must_stay_inside_the_image(self, path: str) -> None:
        """Empty paths, '..' and NUL are refused when the entry is made."""
        with pytest.raises(ImageFormatError, match="not a path inside the image"):
            image_path(path)

    def test_paths_are_normalised(self) -> None:
        """Leading '/', '.' parts and doubled slashes go; the name is what tar stores."""
        assert RegularFile(path="//app/./x.py", data=b"").path == "app/x.py"

    def test_a_file_needs_exactly_one_content(self, tmp_path: Path) -> None:
        """A regular file has a source path or bytes, not both and not neither."""
        with pytest.raises(ImageFormatError, match="exactly one of source and data"):
            RegularFile(path="/x")
        with pytest.raises(ImageFormatError, match="exactly one of source and data"):
            RegularFile(path="/x", data=b"", source=tmp_path)


class TestEntriesFromTree:
    @pytest.fixture
    def tree(self, tmp_path: Path) -> Path:
        root = tmp_path / "tree"
        (root / "pkg" / "__pycache__").mkdir(parents=True)
        (root / "pkg" / "__init__.py").write_text("")
        (root / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"pyc")
        (root / "pkg" / "lib.so").write_bytes(b"\x7fELF" + bytes(1000))
        os.link(root / "pkg" / "lib.so", root / "lib-link.so")
        (root / "run").write_text("#!/bin/sh\n")
        (root / "run").chmod(0o775)
        (root / "data.txt").write_text("data")
        (root / "data.txt").chmod(0o664)
        (root / "current").symlink_to("pkg/lib.so")
        (root / "dangling").symlink_to("/nowhere")
        return root

    def test_walks_the_tree_under_the_prefix(self, tree: Path) -> None:
        """Every file, directory and link is an entry under the prefix, owned as asked."""
        entries = entries_from_tree(tree, prefix="/app", uid=1000, gid=1000)
        by_path = {e.path: e for e in entries}
        assert set(by_path) == {
            "app",
            "app/current",
            "app/dangling",
            "app/data.txt",
            "app/lib-link.so",
            "app/pkg",
            "app/pkg/__init__.py",
            "app/pkg/__pycache__",
            "app/pkg/__pycache__/x.pyc",
            "app/pkg/lib.so",
            "app/run",
        }
        assert all(getattr(e, "uid", 1000) == 1000 for e in entries)

    def test_symlinks_stay_symlinks(self, tree: Path) -> None:
        """Links keep their targets as written, dangling or absolute ones too."""
        by_path = {e.path: e for e in entries_from_tree(tree, prefix="app")}
        assert by_path["app/current"] == Symlink(path="app/current", target="pkg/lib.so")
        assert by_path["app/dangling"] == Symlink(path="app/dangling", target="/nowhere")

    def test_hard_links_in_the_tree_are_found(self, tree: Path) -> None:
        """Two names of one inode give one file and one hard link."""
        by_path = {e.path: e for e in entries_from_tree(tree, prefix="app")}
        kinds = {type(by_path[p]).__name__ for p in ("app/lib-link.so", "app/pkg/lib.so")}
        assert kinds == {"RegularFile", "HardLink"}

    def test_modes_are_normalised_unless_kept(self, tree: Path) -> None:
        """A checkout's umask does not matter: 0755 for executables, 0644 otherwise."""
        normal = {e.path: e for e in entries_from_tree(tree, prefix="app")}
        kept = {e.path: e for e in entries_from_tree(tree, prefix="app", keep_modes=True)}
        assert (
            getattr(normal["app/run"], "mode", None),
            getattr(kept["app/run"], "mode", None),
        ) == (
            0o755,
            0o775,
        )
        assert getattr(normal["app/data.txt"], "mode", None) == 0o644
        assert getattr(kept["app/data.txt"], "mode", None) == 0o664

    def test_exclude_skips_paths_and_subtrees(self, tree: Path) -> None:
        """exclude sees paths relative to the root; an excluded directory takes its contents."""
        entries = entries_from_tree(
            tree, prefix="app", exclude=lambda rel: rel.endswith("__pycache__")
        )
        assert not [e.path for e in entries if "__pycache__" in e.path]

    def test_special_files_are_refused(self, tree: Path) -> None:
        """A FIFO cannot go into an image layer; the error names it."""
        os.mkfifo(tree / "pipe")
        with pytest.raises(ImageError, match="pipe: cannot put a socket, FIFO or device"):
            entries_from_tree(tree, prefix="app")

    def test_extracted_layer_reproduces_the_tree(self, tree: Path, tmp_path: Path) -> None:
        """GNU tar unpacks the layer into the same tree: contents, links and one shared inode."""
        blob = write_layer(entries_from_tree(tree, prefix="/app"), tmp_path / "out", mtime=0)
        out = tmp_path / "unpacked"
        out.mkdir()
        subprocess.run(["tar", "-xzf", str(blob.path), "-C", str(out)], check=True)
        app = out / "app"
        assert (app / "pkg" / "lib.so").read_bytes() == (tree / "pkg" / "lib.so").read_bytes()
        assert (app / "pkg" / "lib.so").stat().st_ino == (app / "lib-link.so").stat().st_ino
        assert (app / "current").readlink() == Path("pkg/lib.so")
        assert (app / "run").stat().st_mode & 0o777 == 0o755

    def test_same_tree_same_layer(self, tree: Path, tmp_path: Path) -> None:
        """Walking and writing the same tree twice gives the same digest."""
        first = write_layer(entries_from_tree(tree, prefix="app"), tmp_path / "1", mtime=0)
        second = write_layer(entries_from_tree(tree, prefix="app"), tmp_path / "2", mtime=0)
        assert first.digest == second.digest


def test_layer_bytes_round_trip_through_tarfile(tmp_path: Path) -> None:
    """The uncompressed layer is a tar that Python reads back member for member."""
    blob = write_layer(app_entries(tmp_path), tmp_path / "out", mtime=0)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.path.read_bytes()))) as tar:
        assert len(tar.getmembers()) == 11
