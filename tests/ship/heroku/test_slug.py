"""Tests for wheelbarrow.ship.heroku.slug: .slugignore, stripping tests and caches, sizes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from wheelbarrow.ship.heroku.slug import (
    apply_slugignore,
    compile_pattern,
    slug_size,
    strip_slug,
    strippable_tests,
)

SP = ".heroku/venv/lib/python3.12/site-packages"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


class TestPatterns:
    @pytest.mark.parametrize(
        ("pattern", "path", "is_dir", "expected"),
        [
            ("*.psd", "art/logo.psd", False, True),
            ("*.psd", "logo.psd", False, True),
            ("*.psd", "logo.psd.txt", False, False),
            ("/spec", "spec", True, True),
            ("/spec", "app/spec", True, False),
            ("spec", "app/spec", True, True),
            ("docs/", "docs", True, True),
            ("docs/", "docs", False, False),
            ("doc/build", "doc/build", True, True),
            ("doc/build", "x/doc/build", True, False),
            ("**/fixtures", "a/b/fixtures", True, True),
            ("**/fixtures", "fixtures", True, True),
            ("tmp/**", "tmp/a/b.txt", False, True),
            ("tmp/**", "tmp", True, False),
            ("a/**/z", "a/z", False, True),
            ("a/**/z", "a/b/c/z", False, True),
            ("data/*.csv", "data/x.csv", False, True),
            ("data/*.csv", "data/sub/x.csv", False, False),
            ("img?.png", "img1.png", False, True),
            ("[abc].txt", "b.txt", False, True),
            ("[!abc].txt", "b.txt", False, False),
            ("\\#notes", "#notes", False, True),
        ],
    )
    def test_matches(self, pattern: str, path: str, is_dir: bool, expected: bool) -> None:
        """Patterns follow .gitignore: unanchored names match at any depth, ** spans dirs."""
        compiled = compile_pattern(pattern)
        assert compiled is not None
        assert compiled.matches(path, is_dir=is_dir) is expected

    @pytest.mark.parametrize("line", ["", "   ", "# a comment", "!keep.psd", "/"])
    def test_lines_without_a_pattern(self, line: str) -> None:
        """Blanks, comments and negations (which Heroku does not support) select nothing."""
        assert compile_pattern(line) is None


class TestApplySlugignore:
    def test_removes_what_it_lists(self, tmp_path: Path) -> None:
        """Listed files and directories go; the removed paths are returned in walk order."""
        app = tree(
            tmp_path,
            {
                ".slugignore": "# design files\n*.psd\n\n/docs\ntests/\n!keep.psd\n",
                "app.py": "",
                "art/logo.psd": "x",
                "keep.psd": "x",
                "docs/index.md": "",
                "pkg/docs/readme.md": "",
                "pkg/tests/test_a.py": "",
                "tests": "a file, not a directory",
            },
        )
        removed = apply_slugignore(app)
        assert removed == ["art/logo.psd", "docs", "keep.psd", "pkg/tests"]
        assert listing(app) == {
            ".slugignore",
            "app.py",
            "pkg/docs/readme.md",
            "tests",
        }

    def test_never_removes_the_buildpacks_output(self, tmp_path: Path) -> None:
        """.heroku/ and .profile.d/ stay even when a pattern matches them."""
        app = tree(
            tmp_path,
            {
                ".slugignore": ".*\n*.sh\n**/bin\n",
                ".heroku/venv/bin/python": "",
                ".profile.d/wheelbarrow.sh": "",
                ".env": "SECRET=1",
                "scripts/bin/run": "",
            },
        )
        assert apply_slugignore(app) == [".env", ".slugignore", "scripts/bin"]
        assert listing(app) == {".heroku/venv/bin/python", ".profile.d/wheelbarrow.sh"}

    def test_symlinks_are_removed_not_followed(self, tmp_path: Path) -> None:
        """A matching link to a directory outside is unlinked; its target is untouched."""
        outside = tree(tmp_path / "outside", {"big.bin": "data"})
        app = tree(tmp_path / "app", {".slugignore": "big\n"})
        (app / "big").symlink_to(outside, target_is_directory=True)
        assert apply_slugignore(app) == ["big"]
        assert not (app / "big").exists()
        assert (outside / "big.bin").read_text() == "data"

    def test_without_a_file(self, tmp_path: Path) -> None:
        """An app without .slugignore loses nothing."""
        app = tree(tmp_path, {"app.py": ""})
        assert apply_slugignore(app) == []
        assert listing(app) == {"app.py"}


@pytest.fixture
def slug(tmp_path: Path) -> Path:
    """A compiled app: an environment with packages and tests, and the app's own caches."""
    return tree(
        tmp_path,
        {
            # A package's own test suite, and a test subpackage in a namespace package.
            f"{SP}/pkg/__init__.py": "",
            f"{SP}/pkg/core.py": "x = 1\n",
            f"{SP}/pkg/__pycache__/core.cpython-312.pyc": "bytecode",
            f"{SP}/pkg/tests/__init__.py": "",
            f"{SP}/pkg/tests/test_core.py": "def test(): pass\n",
            f"{SP}/pkg/tests/__pycache__/test_core.cpython-312.pyc": "bytecode",
            f"{SP}/nspkg/sub/test/__init__.py": "",
            f"{SP}/nspkg/sub/test/test_it.py": "",
            # numpy: its tests go, its public numpy.testing stays.
            f"{SP}/numpy/__init__.py": "",
            f"{SP}/numpy/testing/__init__.py": "from numpy.testing._private import *\n",
            f"{SP}/numpy/tests/__init__.py": "",
            f"{SP}/numpy/tests/test_numpy.py": "",
            f"{SP}/numpy/conftest.py": "from numpy.tests import helpers\n",
            # A distribution really called "tests", at the top level.
            f"{SP}/tests/__init__.py": "",
            f"{SP}/tests-1.0.dist-info/top_level.txt": "tests\n",
            # Data that happens to be in a directory called "test", outside any package.
            f"{SP}/assets/test/data.json": "{}",
            # A test package the library itself imports: part of what runs.
            f"{SP}/lib/__init__.py": "",
            f"{SP}/lib/api.py": "from .tests import helpers\n",
            f"{SP}/lib/tests/__init__.py": "",
            f"{SP}/lib/tests/helpers.py": "",
            f"{SP}/django/__init__.py": "",
            f"{SP}/django/test/__init__.py": "",
            # The environment's and the runtime's bytecode.
            ".heroku/venv/pyvenv.cfg": "home = /app/.heroku/python/bin\n",
            ".heroku/python/lib/python3.12/os.py": "",
            ".heroku/python/lib/python3.12/__pycache__/os.cpython-312.pyc": "bytecode",
            # The app's caches and stray bytecode.
            "app.py": "",
            "__pycache__/app.cpython-312.pyc": "bytecode",
            "web/__pycache__/views.cpython-312.pyc": "bytecode",
            "old.pyc": "bytecode",
            ".pytest_cache/v/cache/nodeids": "[]",
            ".mypy_cache/3.12/app.meta.json": "{}",
            ".ruff_cache/0.6/x": "",
            ".cache/pip/http/abc": "cached",
            ".cache/uv/wheels/x.whl": "cached",
            ".cache/other/keep": "",
            # A second environment, made by the app's own hook.
            "tools/venv/pyvenv.cfg": "",
            "tools/venv/lib/python3.12/site-packages/__pycache__/t.cpython-312.pyc": "bc",
        },
    )


class TestStripSlug:
    def test_removes_tests_and_caches(self, slug: Path) -> None:
        """Package test suites and the app's caches go; public test APIs and environments stay."""
        report = strip_slug(slug, site_packages=[slug / SP])
        assert set(report.paths) == {
            f"{SP}/pkg/tests",
            f"{SP}/nspkg/sub/test",
            f"{SP}/numpy/tests",
            "__pycache__",
            "web/__pycache__",
            "old.pyc",
            ".pytest_cache",
            ".mypy_cache",
            ".ruff_cache",
            ".cache/pip",
            ".cache/uv",
        }
        left = listing(slug)
        assert f"{SP}/numpy/testing/__init__.py" in left
        assert f"{SP}/tests/__init__.py" in left
        assert f"{SP}/assets/test/data.json" in left
        assert f"{SP}/lib/tests/helpers.py" in left
        assert f"{SP}/django/test/__init__.py" in left
        assert f"{SP}/pkg/__pycache__/core.cpython-312.pyc" in left
        assert ".heroku/python/lib/python3.12/__pycache__/os.cpython-312.pyc" in left
        assert "tools/venv/lib/python3.12/site-packages/__pycache__/t.cpython-312.pyc" in left
        assert ".cache/other/keep" in left

    def test_reports_what_it_freed(self, slug: Path) -> None:
        """The files and bytes reported are what the slug lost."""
        before_files, before = len(listing(slug)), slug_size(slug)
        report = strip_slug(slug, site_packages=[slug / SP])
        assert report.files_removed == before_files - len(listing(slug))
        assert report.bytes_removed == before - slug_size(slug)
        assert report.describe() == (
            f"{report.files_removed} files ({report.bytes_removed} B) in {len(report.paths)} places"
        )

    def test_second_run_removes_nothing(self, slug: Path) -> None:
        """Stripping is idempotent."""
        strip_slug(slug, site_packages=[slug / SP])
        again = strip_slug(slug, site_packages=[slug / SP])
        assert (again.paths, again.files_removed, again.bytes_removed) == ((), 0, 0)

    def test_known_test_packages_are_taken_from_the_file_not_found_again(self, slug: Path) -> None:
        """With ``known`` the test packages found and their sizes are kept there, and the next
        slug of the same environment takes them from it without reading its modules (an import
        that would keep pkg/tests is not seen), reporting the same; a list naming a directory
        that is not there is found afresh."""
        twin, third = (slug.parent / f"{slug.name}-{n}" for n in ("twin", "third"))
        shutil.copytree(slug, twin, symlinks=True)
        shutil.copytree(slug, third, symlinks=True)
        known = slug.parent / f"{slug.name}-known.json"
        tests = {f"{SP}/pkg/tests", f"{SP}/nspkg/sub/test", f"{SP}/numpy/tests"}
        first = strip_slug(slug, site_packages=[slug / SP], known=known, env="env-1")
        assert tests <= set(first.paths)
        assert {t for t, _, _ in json.loads(known.read_text())["tests"]} == tests
        (twin / SP / "pkg" / "core.py").write_text("from .tests import test_core\n")
        again = strip_slug(twin, site_packages=[twin / SP], known=known, env="env-1")
        assert (again.paths, again.files_removed) == (first.paths, first.files_removed)
        assert again.bytes_removed == first.bytes_removed
        shutil.rmtree(third / SP / "numpy" / "tests")
        (third / SP / "pkg" / "core.py").write_text("from .tests import test_core\n")
        found = set(strip_slug(third, site_packages=[third / SP], known=known, env="env-1").paths)
        assert found & tests == {f"{SP}/nspkg/sub/test"}
        assert [t for t, _, _ in json.loads(known.read_text())["tests"]] == [f"{SP}/nspkg/sub/test"]

    def test_another_environment_reads_only_the_packages_whose_files_changed(
        self, slug: Path
    ) -> None:
        """For another environment (a changed pin) a package whose distribution's RECORD is
        the same is not read again (an import added behind RECORD's back is not seen), and
        one whose RECORD changed is."""
        for name in ("pkg", "lib"):
            files = sorted(p for p in (slug / SP / name).rglob("*.py"))
            lines = [f"{p.relative_to(slug / SP).as_posix()},sha256=x,1" for p in files]
            record = slug / SP / f"{name}-1.0.dist-info" / "RECORD"
            record.parent.mkdir()
            record.write_text("\n".join(lines) + "\n")
        twin = slug.parent / f"{slug.name}-twin"
        shutil.copytree(slug, twin, symlinks=True)
        known = slug.parent / f"{slug.name}-known.json"
        first = strip_slug(slug, site_packages=[slug / SP], known=known, env="env-1")
        assert f"{SP}/pkg/tests" in first.paths and f"{SP}/lib/tests" not in first.paths
        (twin / SP / "pkg" / "core.py").write_text("from .tests import test_core\n")
        (twin / SP / "lib" / "api.py").write_text("x = 1\n")
        record = twin / SP / "lib-1.0.dist-info" / "RECORD"
        record.write_text(record.read_text().replace("lib/api.py,sha256=x", "lib/api.py,sha256=y"))
        again = strip_slug(twin, site_packages=[twin / SP], known=known, env="env-2")
        assert f"{SP}/pkg/tests" in again.paths  # pkg's RECORD is the same: not read again
        assert f"{SP}/lib/tests" in again.paths  # lib's changed: read, and no longer imported

    def test_missing_site_packages(self, tmp_path: Path) -> None:
        """A site-packages that does not exist is nothing to strip."""
        report = strip_slug(tmp_path, site_packages=[tmp_path / "nope"])
        assert report.paths == ()


class TestTestPackages:
    def test_the_strip_and_the_clone_leave_out_the_same_paths(self, slug: Path) -> None:
        """strippable_tests on the environment finds what strip_slug removes from its copy in
        the slug, with the same sizes: one set of rules for both."""
        env_root = slug / ".heroku" / "venv"
        twin = slug.parent / f"{slug.name}-twin"
        shutil.copytree(slug, twin, symlinks=True)
        found = strippable_tests(env_root)
        stripped = strip_slug(twin, site_packages=[twin / SP])
        assert {f".heroku/venv/{rel}" for rel, _, _ in found} == {
            p for p in stripped.paths if p.startswith(SP)
        }
        assert {rel for rel, _, _ in found} == {
            f"{SP.removeprefix('.heroku/venv/')}/{name}"
            for name in ("pkg/tests", "nspkg/sub/test", "numpy/tests")
        }
        assert (env_root / SP.removeprefix(".heroku/venv/") / "numpy" / "tests").is_dir()

    def test_never_copied_test_packages_are_reported_as_stripped(self, slug: Path) -> None:
        """A slug whose clone left the test packages out reports the files and bytes a full
        slug's strip frees, and ends with the same files."""
        env_root = slug / ".heroku" / "venv"
        twin = slug.parent / f"{slug.name}-twin"
        shutil.copytree(slug, twin, symlinks=True)
        found = strippable_tests(env_root)
        for rel, _, _ in found:
            shutil.rmtree(twin / ".heroku" / "venv" / rel)
        never = [(f".heroku/venv/{rel}", f, b) for rel, f, b in found]
        left_out = strip_slug(twin, site_packages=[twin / SP], never_copied=never)
        full = strip_slug(slug, site_packages=[slug / SP])
        assert set(left_out.paths) == set(full.paths)
        assert (left_out.files_removed, left_out.bytes_removed) == (
            full.files_removed,
            full.bytes_removed,
        )
        assert listing(twin) == listing(slug)

    def test_the_known_file_serves_the_next_environment_found_the_same(self, slug: Path) -> None:
        """With ``known`` the second look at the same environment takes the list from the
        file (an import that would keep pkg/tests is not read again)."""
        env_root = slug / ".heroku" / "venv"
        known = slug.parent / "known.json"
        first = strippable_tests(env_root, known=known, env="env-1")
        (env_root / SP.removeprefix(".heroku/venv/") / "pkg" / "core.py").write_text(
            "from .tests import test_core\n"
        )
        assert strippable_tests(env_root, known=known, env="env-1") == first


class TestSizes:
    def test_slug_size_counts_files_once_and_links_as_links(self, tmp_path: Path) -> None:
        """Apparent size: contents once per inode, a symlink as itself, directories as nothing."""
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "a").write_bytes(b"x" * 1000)
        os.link(tmp_path / "d" / "a", tmp_path / "hard")
        (tmp_path / "b").write_bytes(b"y" * 24)
        big = tmp_path.parent / f"{tmp_path.name}-outside"
        big.write_bytes(b"z" * 100_000)
        (tmp_path / "link").symlink_to(big)
        assert slug_size(tmp_path) == 1000 + 24 + len(str(big))
