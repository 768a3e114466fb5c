"""`build --output DIR` carries the wheelhouse's bill of materials as DIR/sbom.cdx.json."""

from __future__ import annotations

import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from support import make_wheel
from support.apps import build_cli, build_ok, make_app

from wheelbarrow.wheelhouse import export, sbom

MARKER = ".wheelbarrow-export.json"


@pytest.fixture
def index_url(tmp_path, local_index):
    """A served index of three small wheels."""
    d = tmp_path / "dists"
    for name in ("one", "two", "three"):
        make_wheel(d, name, "1.0", metadata=["License: MIT"])
    return local_index(d).url


def _listed(directory):
    document = json.loads((directory / sbom.FILENAME).read_text())
    return {
        c["name"]: c["hashes"][0]["content"]
        for c in document["components"]
        if c["type"] == "library"
    }


def _manifest_hashes(directory):
    manifest = json.loads((directory / "wheelhouse.json").read_text())
    return {w["name"]: w["sha256"] for w in manifest["wheels"]}


class TestExportedSbom:
    def test_the_export_holds_a_valid_sbom_listed_in_its_marker(self, tmp_path, index_url):
        """DIR/sbom.cdx.json passes the strict schema, lists every exported wheel, is ours."""
        app = make_app(tmp_path / "app", "one\ntwo\n")
        out = tmp_path / "out"
        build_ok(app, tmp_path / "store", index_url, "--output", out)
        text = (out / sbom.FILENAME).read_text()
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
        assert _listed(out) == _manifest_hashes(out)
        assert sbom.FILENAME in json.loads((out / MARKER).read_text())["files"]
        assert export.SBOM == sbom.FILENAME

    def test_an_export_with_its_sbom_is_replaced_by_the_next(self, tmp_path, index_url):
        """The next export replaces the whole previous one, its SBOM included."""
        app = make_app(tmp_path / "app", "one\n")
        store, out = tmp_path / "store", tmp_path / "out"
        build_ok(app, store, index_url, "--output", out)
        (app / "requirements.txt").write_text("one\ntwo\nthree\n")
        build_ok(app, store, index_url, "--output", out)
        assert sorted(_listed(out)) == ["one", "three", "two"]
        assert _listed(out) == _manifest_hashes(out)

    def test_a_users_sbom_file_is_never_replaced(self, tmp_path, index_url):
        """A directory holding the user's own sbom.cdx.json is refused and left as it was."""
        app = make_app(tmp_path / "app", "one\n")
        out = tmp_path / "out"
        out.mkdir()
        (out / sbom.FILENAME).write_text("the user's own\n")
        result = build_cli(app, tmp_path / "store", index_url, "--output", out)
        assert result.code == 2
        assert "was not exported by wheelbarrow" in result.err
        assert [p.name for p in out.iterdir()] == [sbom.FILENAME]
        assert (out / sbom.FILENAME).read_text() == "the user's own\n"

    def test_a_file_the_user_added_to_an_export_is_still_refused(self, tmp_path, index_url):
        """The SBOM counts as the export's own; a file the user added beside it does not."""
        app = make_app(tmp_path / "app", "one\n")
        store, out = tmp_path / "store", tmp_path / "out"
        build_ok(app, store, index_url, "--output", out)
        (out / "notes.txt").write_text("mine\n")
        result = build_cli(app, store, index_url, "--output", out)
        assert result.code == 2
        assert "notes.txt" in result.err
        assert sbom.FILENAME not in result.err
        assert (out / "notes.txt").read_text() == "mine\n"
