"""End to end on examples/textsim: the bill of materials of a real wheelhouse of 15 packages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from support.apps import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "textsim"

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """examples/textsim copied, locked on the real index and built: (app, store, manifest)."""
    root = tmp_path_factory.mktemp("textsim-sbom")
    app = root / "app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("pylock.toml", "__pycache__"))
    store = root / "store"
    assert (locked := cli("lock", app)).code == 0, locked.err
    done = cli("build", app, "--store", store, "--json")
    assert done.code == 0, done.err
    manifest = json.loads((Path(done.json()["wheelhouse"]) / "wheelhouse.json").read_text())
    return app, store, manifest


class TestTextsimSbom:
    def test_lists_all_15_packages_with_the_wheelhouse_hashes(self, built):
        """`wheelbarrow sbom` of textsim: 15 components whose sha256 are the manifest's, valid."""
        app, store, manifest = built
        result = cli("sbom", app, "--store", store)
        assert result.code == 0, result.err
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(result.out) is None
        document = result.json()
        libraries = [c for c in document["components"] if c["type"] == "library"]
        assert len(libraries) == len(manifest["wheels"]) == 15
        assert {c["name"]: c["hashes"][0]["content"] for c in libraries} == {
            w["name"]: w["sha256"] for w in manifest["wheels"]
        }
        by_name = {w["name"]: w for w in manifest["wheels"]}
        for component in libraries:
            wheel = by_name[component["name"]]
            assert component["purl"] == f"pkg:pypi/{wheel['name']}@{wheel['version']}"
            (reference,) = component["externalReferences"]
            assert reference["url"].endswith("/" + wheel["filename"])
        licensed = {c["name"] for c in libraries if c.get("licenses")}
        assert {"numpy", "scipy", "scikit-learn", "flask"} <= licensed

    def test_the_same_wheelhouse_gives_the_same_bytes(self, built):
        """Two runs over the real wheelhouse print byte-identical documents (made twice)."""
        app, store, _ = built
        first = cli("sbom", app, "--store", store)
        shutil.rmtree(store / "sbom")  # the document kept by the first run
        again = cli("sbom", app, "--store", store)
        assert first.code == again.code == 0
        assert first.out == again.out
