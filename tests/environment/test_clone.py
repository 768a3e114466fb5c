"""Tests for wheelbarrow.environment.clone: a clone that leaves directories out (``skip``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheelbarrow._core.errors import EnvironmentEditedError
from wheelbarrow.environment.clone import clone_env, link_tree
from wheelbarrow.environment.seal import SEAL, make_seal, read_seal

SP = "lib/python3.12/site-packages"
SKIP = (f"{SP}/pkg/tests", f"{SP}/other/sub/test")


def sealed_env(root: Path) -> Path:
    """A sealed tree like a stored environment, with test suites and a symlink in one."""
    files = {
        "pyvenv.cfg": f"home = {root}/bin\n",
        f"{SP}/pkg/__init__.py": "",
        f"{SP}/pkg/core.py": "X = 1\n",
        f"{SP}/pkg/tests/__init__.py": "",
        f"{SP}/pkg/tests/test_core.py": "def test(): pass\n",
        f"{SP}/pkg/tests/data/case.json": "{}",
        f"{SP}/pkg/testsuite/keep.py": "",  # a name that starts like a skipped one
        f"{SP}/other/sub/test/test_it.py": "",
        f"{SP}/other/sub/mod.py": "",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / SP / "pkg" / "tests" / "link").symlink_to("test_core.py")
    (root / "lib64").symlink_to("lib")
    make_seal(root).write(root)
    return root


def listing(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.name != SEAL and (p.is_symlink() or not p.is_dir())
    }


def inside(rel: str) -> bool:
    return any(rel == s or rel.startswith(s + "/") for s in SKIP)


class TestCloneSkip:
    def test_skipped_directories_are_never_copied_and_everything_else_is(self, tmp_path):
        """The clone holds every file and link of the source but those under ``skip``, and
        its seal lists exactly what it holds."""
        src = sealed_env(tmp_path / "src")
        clone_env(src, tmp_path / "dst", skip=SKIP)
        dst = tmp_path / "dst"
        assert listing(dst) == {rel for rel in listing(src) if not inside(rel)}
        assert not (dst / SKIP[0]).exists() and not (dst / SKIP[1]).exists()
        assert (dst / SP / "pkg" / "testsuite" / "keep.py").is_file()
        assert (dst / "lib64").readlink() == Path("lib")
        seal = read_seal(dst)
        assert seal is not None and not any(inside(rel) for rel in seal.paths())
        check = seal.check(dst, deep=True)
        assert check.ok, check.problems

    def test_a_skipped_file_edited_in_the_store_still_fails_the_clone(self, tmp_path):
        """A file under a skipped directory is checked against the seal all the same: an
        edit there in the source refuses the clone, naming the file."""
        src = sealed_env(tmp_path / "src")
        edited = src / SP / "pkg" / "tests" / "test_core.py"
        edited.write_text("def test(): raise SystemExit\n")
        with pytest.raises(EnvironmentEditedError, match=r"pkg/tests/test_core\.py"):
            clone_env(src, tmp_path / "dst", skip=SKIP)
        assert not (tmp_path / "dst").exists()

    def test_without_skip_the_clone_is_whole(self, tmp_path):
        """No ``skip``: every file is cloned, the test suites too."""
        src = sealed_env(tmp_path / "src")
        clone_env(src, tmp_path / "dst")
        assert listing(tmp_path / "dst") == listing(src)


class TestLinkTreeSkip:
    def test_the_scan_covers_what_is_skipped_and_nothing_of_it_is_placed(self, tmp_path):
        """link_tree's scan names the skipped files and links (for the seal's check), while
        nothing of them is made at the destination."""
        src = sealed_env(tmp_path / "src")
        scan, placed, _ = link_tree(src, tmp_path / "dst", mode="hardlink", skip=SKIP)
        assert f"{SP}/pkg/tests/data/case.json" in scan.files
        assert f"{SP}/pkg/tests/link" in scan.links
        assert not any(inside(rel) for rel in placed)
        assert set(placed) == {rel for rel in scan.files if not inside(rel)}
        assert not (tmp_path / "dst" / SKIP[0]).exists()
