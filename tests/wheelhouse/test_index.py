"""Tests for wheelbarrow.wheelhouse.index: the static PEP 503 / PEP 691 index writer."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from support import make_sdist, make_wheel, sha256_of

from wheelbarrow._core.errors import InputError
from wheelbarrow.wheelhouse import index
from wheelbarrow.wheelhouse.index import IndexFile, index_files_in, write_index

SHA_A = "a" * 64
SHA_B = "b" * 64


class _Links(HTMLParser):
    """Collects the attributes of every <a> and <meta> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []
        self.texts: list[str] = []
        self.meta: list[dict[str, str | None]] = []
        self._in_anchor = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
            self._in_anchor = True
        elif tag == "meta":
            self.meta.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_anchor = False

    def handle_data(self, data: str) -> None:
        if self._in_anchor:
            self.texts.append(data)


def parse_html(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def sample_files() -> list[IndexFile]:
    return [
        IndexFile(
            filename="My_Pkg-2.0-py3-none-any.whl",
            sha256=SHA_B,
            href="../../My_Pkg-2.0-py3-none-any.whl",
            requires_python=">=3.9,<4",
            size=200,
        ),
        IndexFile(
            filename="my_pkg-1.0.tar.gz",
            sha256=SHA_A,
            href="https://files.example/my_pkg-1.0.tar.gz",
        ),
        IndexFile(filename="other-0.1-py3-none-any.whl", sha256=SHA_A, href="../../o.whl"),
    ]


class TestIndexFile:
    def test_normalises_hash_to_lower_case(self) -> None:
        """An upper-case hex digest is stored lower-case."""
        file = IndexFile(filename="a-1.0-py3-none-any.whl", sha256="AB" * 32, href="x")

        assert file.sha256 == "ab" * 32

    def test_derives_canonical_project_and_version(self) -> None:
        """The project name comes from the filename, PEP 503 normalised."""
        file = IndexFile(filename="Foo_Bar-1.0.post1.tar.gz", sha256=SHA_A, href="x")

        assert (file.project, str(file.version)) == ("foo-bar", "1.0.post1")

    @pytest.mark.parametrize("filename", ["notes.txt", "foo.whl", "foo-1.0-py3.whl", "foo.tar.gz"])
    def test_rejects_non_distribution_filenames(self, filename: str) -> None:
        """A name that is neither a wheel nor an sdist is refused, naming the file."""
        with pytest.raises(InputError, match=re.escape(filename)):
            IndexFile(filename=filename, sha256=SHA_A, href="x")

    @pytest.mark.parametrize("digest", ["", "a" * 63, "g" * 64, "a" * 65])
    def test_rejects_malformed_hashes(self, digest: str) -> None:
        """A sha256 that is not 64 hex digits is refused."""
        with pytest.raises(InputError, match="sha256"):
            IndexFile(filename="a-1.0-py3-none-any.whl", sha256=digest, href="x")


class TestWriteIndexHtml:
    def test_root_page_lists_projects_sorted(self, tmp_path: Path) -> None:
        """The root page links every canonical project name, in order, with a slash."""
        write_index(sample_files(), tmp_path / "simple")

        page = parse_html(tmp_path / "simple" / "index.html")

        assert [a["href"] for a in page.anchors] == ["my-pkg/", "other/"]
        assert page.texts == ["my-pkg", "other"]

    def test_pages_carry_the_repository_version(self, tmp_path: Path) -> None:
        """Every HTML page declares API version 1.1 in a meta tag."""
        write_index(sample_files(), tmp_path / "simple")

        for path in (tmp_path / "simple").rglob("index.html"):
            assert {"name": "pypi:repository-version", "content": "1.1"} in parse_html(path).meta

    def test_project_page_links_files_with_hashes(self, tmp_path: Path) -> None:
        """Each file is a link to its href with a #sha256= fragment, sorted by version."""
        write_index(sample_files(), tmp_path / "simple")

        page = parse_html(tmp_path / "simple" / "my-pkg" / "index.html")

        assert [a["href"] for a in page.anchors] == [
            f"https://files.example/my_pkg-1.0.tar.gz#sha256={SHA_A}",
            f"../../My_Pkg-2.0-py3-none-any.whl#sha256={SHA_B}",
        ]
        assert page.texts == ["my_pkg-1.0.tar.gz", "My_Pkg-2.0-py3-none-any.whl"]

    def test_requires_python_is_html_escaped(self, tmp_path: Path) -> None:
        """data-requires-python is escaped in the source and round-trips through a parser."""
        write_index(sample_files(), tmp_path / "simple")
        path = tmp_path / "simple" / "my-pkg" / "index.html"

        assert 'data-requires-python="&gt;=3.9,&lt;4"' in path.read_text(encoding="utf-8")
        assert [a.get("data-requires-python") for a in parse_html(path).anchors] == [
            None,
            ">=3.9,<4",
        ]


class TestWriteIndexJson:
    def test_root_json_lists_projects(self, tmp_path: Path) -> None:
        """index.json at the root has the API version and the sorted project names."""
        write_index(sample_files(), tmp_path / "simple")

        assert read_json(tmp_path / "simple" / "index.json") == {
            "meta": {"api-version": "1.1"},
            "projects": [{"name": "my-pkg"}, {"name": "other"}],
        }

    def test_project_json_describes_files(self, tmp_path: Path) -> None:
        """A project's index.json lists versions and files with url, hashes and known extras."""
        write_index(sample_files(), tmp_path / "simple")

        assert read_json(tmp_path / "simple" / "my-pkg" / "index.json") == {
            "meta": {"api-version": "1.1"},
            "name": "my-pkg",
            "versions": ["1.0", "2.0"],
            "files": [
                {
                    "filename": "my_pkg-1.0.tar.gz",
                    "url": "https://files.example/my_pkg-1.0.tar.gz",
                    "hashes": {"sha256": SHA_A},
                },
                {
                    "filename": "My_Pkg-2.0-py3-none-any.whl",
                    "url": "../../My_Pkg-2.0-py3-none-any.whl",
                    "hashes": {"sha256": SHA_B},
                    "requires-python": ">=3.9,<4",
                    "size": 200,
                },
            ],
        }

    def test_empty_input_gives_an_empty_index(self, tmp_path: Path) -> None:
        """No files still writes a valid root with no projects."""
        write_index([], tmp_path / "simple")

        assert read_json(tmp_path / "simple" / "index.json")["projects"] == []
        assert parse_html(tmp_path / "simple" / "index.html").anchors == []


class TestWriteIndexInput:
    def test_duplicate_filenames_are_refused(self, tmp_path: Path) -> None:
        """The same filename twice is an error and nothing is written."""
        file = IndexFile(filename="a-1.0-py3-none-any.whl", sha256=SHA_A, href="x")

        with pytest.raises(InputError, match=re.escape("a-1.0-py3-none-any.whl")):
            write_index([file, file], tmp_path / "simple")
        assert list(tmp_path.iterdir()) == []

    def test_refuses_to_replace_a_foreign_directory(self, tmp_path: Path) -> None:
        """A non-empty directory without index pages is left alone."""
        precious = tmp_path / "simple" / "thesis.tex"
        precious.parent.mkdir()
        precious.write_text("years of work")

        with pytest.raises(InputError, match="not an index"):
            write_index(sample_files(), tmp_path / "simple")
        assert precious.read_text() == "years of work"

    def test_accepts_an_empty_existing_directory(self, tmp_path: Path) -> None:
        """An empty directory at root is simply replaced."""
        (tmp_path / "simple").mkdir()

        write_index(sample_files(), tmp_path / "simple")

        assert (tmp_path / "simple" / "other" / "index.html").is_file()


class TestDeterminism:
    def test_same_input_gives_identical_bytes(self, tmp_path: Path) -> None:
        """Writing the same files in another order produces byte-identical trees."""
        write_index(sample_files(), tmp_path / "one")
        write_index(reversed(sample_files()), tmp_path / "two")

        assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")

    def test_rewriting_in_place_is_stable(self, tmp_path: Path) -> None:
        """Rewriting an index with the same input leaves its bytes unchanged."""
        write_index(sample_files(), tmp_path / "simple")
        before = snapshot(tmp_path / "simple")

        write_index(sample_files(), tmp_path / "simple")

        assert snapshot(tmp_path / "simple") == before


class TestAtomicSwap:
    def test_previous_index_is_fully_replaced(self, tmp_path: Path) -> None:
        """Projects gone from the new input disappear; no staging or old tree is left behind."""
        write_index(sample_files(), tmp_path / "simple")
        newer = [IndexFile(filename="fresh-3.0-py3-none-any.whl", sha256=SHA_B, href="f")]

        write_index(newer, tmp_path / "simple")

        assert sorted(p.name for p in (tmp_path / "simple").iterdir()) == [
            "fresh",
            "index.html",
            "index.json",
        ]
        assert [p.name for p in tmp_path.iterdir()] == ["simple"]

    def test_failure_keeps_the_old_index(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If writing the new tree fails, the old index is intact and the staging dir is gone."""
        write_index(sample_files(), tmp_path / "simple")
        before = snapshot(tmp_path / "simple")

        def fail_midway(projects: object, root: Path) -> None:
            (root / "index.html").write_text("half")
            raise OSError("disk full")

        monkeypatch.setattr(index, "_write_tree", fail_midway)
        with pytest.raises(OSError, match="disk full"):
            write_index([], tmp_path / "simple")

        assert snapshot(tmp_path / "simple") == before
        assert [p.name for p in tmp_path.iterdir()] == ["simple"]

    def test_new_tree_is_readable_by_others(self, tmp_path: Path) -> None:
        """The swapped-in directory is world-readable, not the 0700 of a temp dir."""
        write_index(sample_files(), tmp_path / "simple")

        assert (tmp_path / "simple").stat().st_mode & 0o755 == 0o755


class TestIndexFilesIn:
    def test_hashes_sizes_and_hrefs(self, tmp_path: Path) -> None:
        """Every wheel and sdist is described with its sha256, size and a quoted relative href."""
        wheel = make_wheel(tmp_path, "alpha", "1.0+local", requires_python=">=3.8")
        sdist = make_sdist(tmp_path, "beta", "2.0", requires_python=">=3.10")
        (tmp_path / "README.txt").write_text("not a distribution")
        (tmp_path / "simple").mkdir()

        files = index_files_in(tmp_path)

        assert files == [
            IndexFile(
                filename=wheel.name,
                sha256=sha256_of(wheel),
                href="../../alpha-1.0%2Blocal-py3-none-any.whl",
                requires_python=">=3.8",
                size=wheel.stat().st_size,
            ),
            IndexFile(
                filename=sdist.name,
                sha256=sha256_of(sdist),
                href="../../beta-2.0.tar.gz",
                requires_python=">=3.10",
                size=sdist.stat().st_size,
            ),
        ]

    def test_href_prefix_is_used(self, tmp_path: Path) -> None:
        """A custom prefix replaces the default ../../ before each filename."""
        make_wheel(tmp_path, "alpha", "1.0")

        (file,) = index_files_in(tmp_path, href_prefix="https://cdn.example/w/")

        assert file.href == "https://cdn.example/w/alpha-1.0-py3-none-any.whl"

    def test_missing_requires_python_is_none(self, tmp_path: Path) -> None:
        """A distribution that declares no Requires-Python gets None."""
        make_wheel(tmp_path, "alpha", "1.0")

        assert [f.requires_python for f in index_files_in(tmp_path)] == [None]

    def test_damaged_archive_is_reported(self, tmp_path: Path) -> None:
        """A wheel that is not a zip is an error naming the file."""
        (tmp_path / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")

        with pytest.raises(InputError, match=re.escape("broken-1.0-py3-none-any.whl")):
            index_files_in(tmp_path)

    def test_not_a_directory_is_reported(self, tmp_path: Path) -> None:
        """A missing directory is an InputError, not a traceback from iterdir."""
        with pytest.raises(InputError, match="not a directory"):
            index_files_in(tmp_path / "nowhere")

    def test_result_feeds_write_index(self, tmp_path: Path) -> None:
        """The common layout DIR/*.whl + DIR/simple/ links back to the real files."""
        wheel = make_wheel(tmp_path, "alpha", "1.0")

        write_index(index_files_in(tmp_path), tmp_path / "simple")

        page = tmp_path / "simple" / "alpha" / "index.html"
        href = parse_html(page).anchors[0]["href"]
        assert href is not None
        target = (page.parent / href.split("#")[0]).resolve()
        assert target == wheel.resolve()


class TestCoreMetadata:
    """PEP 658 / PEP 714: each wheel's METADATA beside it, its hash on the pages."""

    def test_metadata_file_is_the_wheels_metadata_byte_for_byte(self, tmp_path: Path) -> None:
        """``<wheel>.metadata`` holds exactly the archive's METADATA; its sha256 is returned."""
        wheel = make_wheel(tmp_path, "alpha", "1.0", requires=["beta>=2"], requires_python=">=3.8")
        with zipfile.ZipFile(wheel) as archive:
            expected = archive.read("alpha-1.0.dist-info/METADATA")

        digest = index.write_metadata_file(wheel)

        written = tmp_path / f"{wheel.name}.metadata"
        assert written.read_bytes() == expected
        assert digest == hashlib.sha256(expected).hexdigest()
        assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name, written.name]

    def test_an_sdist_gets_no_metadata_file(self, tmp_path: Path) -> None:
        """PEP 658 metadata is for wheels here: an sdist gives None and nothing is written."""
        sdist = make_sdist(tmp_path, "beta", "2.0")

        assert index.write_metadata_file(sdist) is None
        assert [p.name for p in tmp_path.iterdir()] == [sdist.name]

    def test_a_wheel_without_metadata_is_an_error_naming_it(self, tmp_path: Path) -> None:
        """A wheel with no .dist-info/METADATA cannot be listed with metadata: the error says so."""
        wheel = tmp_path / "bare-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("bare/__init__.py", "")

        with pytest.raises(InputError, match=re.escape(wheel.name)):
            index.write_metadata_file(wheel)
        assert [p.name for p in tmp_path.iterdir()] == [wheel.name]

    def test_metadata_hash_must_be_hex(self) -> None:
        """A metadata sha256 that is not 64 hex digits is refused, naming the file."""
        with pytest.raises(InputError, match=re.escape("a-1.0-py3-none-any.whl: metadata")):
            IndexFile(
                filename="a-1.0-py3-none-any.whl", sha256=SHA_A, href="x", metadata_sha256="zz"
            )

    def test_html_anchor_carries_both_metadata_attributes(self, tmp_path: Path) -> None:
        """A file with metadata gets data-core-metadata and the legacy data-dist-info-metadata."""
        files = [
            IndexFile(filename="a-1.0-py3-none-any.whl", sha256=SHA_A, href="../../a.whl",
                      metadata_sha256=SHA_B.upper()),
            IndexFile(filename="a-1.0.tar.gz", sha256=SHA_A, href="../../a-1.0.tar.gz"),
        ]  # fmt: skip

        write_index(files, tmp_path / "simple")

        wheel_anchor, sdist_anchor = parse_html(tmp_path / "simple" / "a" / "index.html").anchors
        assert wheel_anchor["data-core-metadata"] == f"sha256={SHA_B}"
        assert wheel_anchor["data-dist-info-metadata"] == f"sha256={SHA_B}"
        assert "data-core-metadata" not in sdist_anchor
        assert "data-dist-info-metadata" not in sdist_anchor

    def test_json_file_carries_both_metadata_keys(self, tmp_path: Path) -> None:
        """PEP 691 JSON gets core-metadata and dist-info-metadata, as hash dictionaries."""
        files = [
            IndexFile(filename="a-1.0-py3-none-any.whl", sha256=SHA_A, href="../../a.whl",
                      metadata_sha256=SHA_B),
            IndexFile(filename="a-1.0.tar.gz", sha256=SHA_A, href="../../a-1.0.tar.gz"),
        ]  # fmt: skip

        write_index(files, tmp_path / "simple")

        wheel_entry, sdist_entry = read_json(tmp_path / "simple" / "a" / "index.json")["files"]
        assert wheel_entry["core-metadata"] == {"sha256": SHA_B}
        assert wheel_entry["dist-info-metadata"] == {"sha256": SHA_B}
        assert "core-metadata" not in sdist_entry
        assert "dist-info-metadata" not in sdist_entry

    def test_index_files_in_writes_metadata_only_when_asked(self, tmp_path: Path) -> None:
        """By default nothing is written; with metadata=True each wheel gains its file and hash."""
        wheel = make_wheel(tmp_path, "alpha", "1.0")
        make_sdist(tmp_path, "alpha", "1.0")

        assert [f.metadata_sha256 for f in index_files_in(tmp_path)] == [None, None]
        assert not (tmp_path / f"{wheel.name}.metadata").exists()

        described = index_files_in(tmp_path, metadata=True)

        written = tmp_path / f"{wheel.name}.metadata"
        assert [f.metadata_sha256 for f in described] == [sha256_of(written), None]
        # The metadata files themselves are not distributions.
        assert [f.filename for f in index_files_in(tmp_path)] == [wheel.name, "alpha-1.0.tar.gz"]

    def test_metadata_url_is_the_file_url_plus_suffix(self, tmp_path: Path) -> None:
        """Following the anchor's href plus .metadata reaches the written file (PEP 658)."""
        make_wheel(tmp_path, "alpha", "1.0")

        write_index(index_files_in(tmp_path, metadata=True), tmp_path / "simple")

        page = tmp_path / "simple" / "alpha" / "index.html"
        (anchor,) = parse_html(page).anchors
        href = str(anchor["href"]).split("#")[0]
        target = page.parent / (href + ".metadata")
        assert sha256_of(target) == str(anchor["data-core-metadata"]).removeprefix("sha256=")
