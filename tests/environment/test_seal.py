"""Seals: a stat pass backed by hashes catches every edit of a sealed tree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from wheelbarrow.environment.seal import (
    SEAL,
    SealProblem,
    hash_files,
    make_seal,
    read_seal,
    scan_tree,
)


def tree(root: Path) -> Path:
    """A small environment-like tree: files, a bytecode cache, a symlink."""
    (root / "lib" / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "lib" / "pkg" / "__init__.py").write_text("X = 1\n")
    (root / "lib" / "pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"pyc")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/usr/bin/env python\n")
    (root / "bin" / "python").symlink_to("/usr/bin/python3")
    return root


def sealed(root: Path) -> Path:
    make_seal(tree(root)).write(root)
    return root


def problems(root: Path, *, deep: bool = False) -> list[SealProblem]:
    seal = read_seal(root)
    assert seal is not None
    return list(seal.check(root, deep=deep).problems)


class TestSeal:
    def test_an_untouched_tree_passes_without_hashing(self, tmp_path):
        """The check of an unchanged tree is a stat pass: nothing is hashed."""
        root = sealed(tmp_path / "env")
        seal = read_seal(root)
        assert seal is not None
        check = seal.check(root)
        assert check.ok and check.hashed_bytes == 0

    def test_the_seal_lists_files_and_links_but_not_itself(self, tmp_path):
        """Every file and symlink is sealed with size, mtime, inode and sha256; the seal is not."""
        root = sealed(tmp_path / "env")
        seal = read_seal(root)
        assert seal is not None
        assert SEAL not in seal.files
        entry = seal.files["lib/pkg/__init__.py"]
        st = (root / "lib" / "pkg" / "__init__.py").stat()
        assert (entry.size, entry.mtime_ns, entry.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)
        assert entry.sha256 == hashlib.sha256(b"X = 1\n").hexdigest()
        assert seal.links == {"bin/python": "/usr/bin/python3"}

    def test_an_appended_file_is_changed(self, tmp_path):
        """Appending through any hard link of a sealed file is caught, naming it."""
        root = sealed(tmp_path / "env")
        os.link(root / "lib" / "pkg" / "__init__.py", tmp_path / "other-link")
        with (tmp_path / "other-link").open("a") as f:
            f.write("Y = 2\n")
        assert problems(root) == [SealProblem(path="lib/pkg/__init__.py", problem="changed")]

    def test_a_touched_file_with_the_same_bytes_passes_and_is_restated(self, tmp_path):
        """A new mtime alone is no edit; the refreshed seal makes the next check a stat pass."""
        root = sealed(tmp_path / "env")
        os.utime(root / "bin" / "tool", ns=(1, 1))
        seal = read_seal(root)
        assert seal is not None
        check = seal.check(root)
        assert check.ok and set(check.restated) == {"bin/tool"}
        seal.refreshed(check.restated).write(root)
        again = read_seal(root)
        assert again is not None
        assert again.check(root).hashed_bytes == 0

    def test_missing_added_and_relinked_entries_are_named(self, tmp_path):
        """A deleted file, a new file and a symlink pointing elsewhere are each reported."""
        root = sealed(tmp_path / "env")
        (root / "bin" / "tool").unlink()
        (root / "lib" / "evil.pth").write_text("import os\n")
        (root / "bin" / "python").unlink()
        (root / "bin" / "python").symlink_to("/tmp/python")
        assert problems(root) == [
            SealProblem(path="bin/python", problem="link changed"),
            SealProblem(path="bin/tool", problem="missing"),
            SealProblem(path="lib/evil.pth", problem="added"),
        ]

    def test_new_bytecode_caches_are_not_additions(self, tmp_path):
        """Python writing .pyc files into __pycache__ is not an edit."""
        root = sealed(tmp_path / "env")
        (root / "bin" / "__pycache__").mkdir()
        (root / "bin" / "__pycache__" / "tool.cpython-311.pyc").write_bytes(b"x")
        (root / "lib" / "pkg" / "__pycache__" / "__init__.cpython-311.opt-1.pyc").write_bytes(b"x")
        assert problems(root) == []

    def test_a_same_size_edit_with_the_old_mtime_needs_the_deep_check(self, tmp_path):
        """An edit that keeps size and mtime passes the stat pass; the deep check hashes it."""
        root = sealed(tmp_path / "env")
        path = root / "lib" / "pkg" / "__init__.py"
        st = path.stat()
        with path.open("r+") as f:
            f.write("X = 2\n")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert problems(root) == []
        assert problems(root, deep=True) == [
            SealProblem(path="lib/pkg/__init__.py", problem="changed")
        ]

    def test_known_hashes_are_reused_for_the_same_inode(self, tmp_path):
        """Sealing a hard-link clone reuses the hashes of the files it shares."""
        root = sealed(tmp_path / "env")
        seal = read_seal(root)
        assert seal is not None
        clone = tmp_path / "clone"
        for rel in seal.files:
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(root / rel, clone / rel)
        # A file whose bytes the known seal misstates shows that the hash was reused.
        lie = dict(seal.files)
        lie["bin/tool"] = lie["bin/tool"]._replace(sha256="0" * 64)
        known = type(seal)(files=lie, links=seal.links)
        assert make_seal(clone, known=known).files["bin/tool"].sha256 == "0" * 64
        assert make_seal(clone).files["bin/tool"].sha256 == seal.files["bin/tool"].sha256


class TestReadSeal:
    def test_a_missing_or_garbled_seal_reads_as_none(self, tmp_path):
        """No seal, another format or version, or a malformed line is no seal, never an error."""
        root = tree(tmp_path / "env")
        assert read_seal(root) is None
        for text in (
            '{"version": 1, "files": {}}',
            "wheelbarrow-seal 99\n",
            "wheelbarrow-seal 1\nF\ta\t1\n",
            "wheelbarrow-seal 1\nF\ta\tx\t1\t2\tsha\n",
        ):
            (root / SEAL).write_text(text)
            assert read_seal(root) is None, text

    def test_odd_file_names_survive_the_round_trip(self, tmp_path):
        """Names with tabs, newlines, quotes or undecodable bytes are sealed and read back."""
        root = tmp_path / "env"
        root.mkdir()
        names = ["tab\there", "new\nline", '"quoted', "caf\udce9"]
        for name in names:
            (root / name).write_bytes(b"x")
        make_seal(root).write(root)
        seal = read_seal(root)
        assert seal is not None
        assert sorted(seal.files) == sorted(names)
        assert seal.check(root).ok

    def test_an_amended_seal_replaces_the_entries_it_names(self, tmp_path):
        """A clone's seal is the original's bytes plus lines that win over earlier ones."""
        root = sealed(tmp_path / "env")
        seal = read_seal(root)
        assert seal is not None
        new = seal.files["bin/tool"]._replace(sha256="1" * 64)
        clone = tmp_path / "clone"
        clone.mkdir()
        seal.write_amended(clone, {"bin/tool": new})
        amended = read_seal(clone)
        assert amended is not None
        assert amended.files["bin/tool"] == new
        assert {k: v for k, v in amended.files.items() if k != "bin/tool"} == {
            k: v for k, v in seal.files.items() if k != "bin/tool"
        }


class TestScan:
    def test_the_scan_follows_no_symlink(self, tmp_path):
        """A symlink to a directory outside is recorded as a link, never walked."""
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_text("x")
        root = tmp_path / "env"
        root.mkdir()
        (root / "escape").symlink_to(outside)
        scan = scan_tree(root)
        assert scan.links == {"escape": str(outside)}
        assert scan.files == {}


class TestHashFiles:
    def test_each_file_gets_its_own_digest_across_batches_and_threads(self, tmp_path):
        """More files than one thread's batch, in any worker count: every path keeps the
        digest of its own bytes, and a path that is gone gets an empty one."""
        rels = [f"d{i % 7}/f{i}.py" for i in range(203)]
        for i, rel in enumerate(rels):
            (tmp_path / rel).parent.mkdir(exist_ok=True)
            (tmp_path / rel).write_bytes(b"x" * i)
        wanted = {rel: hashlib.sha256(b"x" * i).hexdigest() for i, rel in enumerate(rels)}
        for workers in (1, 2, 4):
            assert hash_files(tmp_path, [*rels, "gone.py"], workers=workers) == wanted | {
                "gone.py": ""
            }
