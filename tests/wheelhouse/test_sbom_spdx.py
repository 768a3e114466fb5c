"""The bill of materials as SPDX 2.3 JSON: the same facts, checked by the SPDX validator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
from support import make_c_extension_sdist, make_wheel, serve_local_index, sha256_of
from support.apps import build_ok, cli, make_app

from wheelbarrow.lock.lockfile import read_lock
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse.sbom import Runtime
from wheelbarrow.wheelhouse.sbom_spdx import spdx_json


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two wheels (an expression, a classifier) and an sdist built from source, in one store."""
    root = tmp_path_factory.mktemp("spdx")
    dists = root / "dists"
    make_wheel(dists, "exprpkg", "1.0", metadata=["License-Expression: MIT OR Apache-2.0"])
    make_wheel(
        dists, "classpkg", "2.0", metadata=["Classifier: License :: OSI Approved :: MIT License"]
    )
    make_c_extension_sdist(dists, "cext", "1.0")
    with serve_local_index(dists) as index:
        app = make_app(root / "app", "exprpkg\nclasspkg\ncext\n")
        report = build_ok(app, root / "store", index.url)
        manifest = json.loads((Path(report["wheelhouse"]) / "wheelhouse.json").read_text())
        yield {
            "app": app,
            "store": Store(root / "store"),
            "key": report["key"],
            "manifest": manifest,
            "sdist": dists / "cext-1.0.tar.gz",
        }


def _spdx(built: dict[str, Any], **kwargs: Any) -> bytes:
    kwargs.setdefault("lock", read_lock(built["app"] / "pylock.toml"))
    kwargs.setdefault("epoch", 1_700_000_000)
    return spdx_json(built["store"], built["key"], subject="wheelhouse", **kwargs)


def _packages(raw: bytes) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in json.loads(raw)["packages"]}


class TestSpdx:
    def test_passes_the_spdx_validator_read_back_from_its_json(self, built, tmp_path):
        """The JSON, parsed back by spdx-tools, has no validation messages."""
        path = tmp_path / "sbom.spdx.json"
        path.write_bytes(_spdx(built, runtime=Runtime("cpython", "3.12.7")))
        document = parse_file(str(path))
        assert validate_full_spdx_document(document) == []
        assert document.creation_info.spdx_version == "SPDX-2.3"

    def test_every_wheel_with_its_sha256_purl_and_file(self, built):
        """Each wheel is a package with the manifest's sha256, its purl and its file name."""
        packages = _packages(_spdx(built))
        for wheel in built["manifest"]["wheels"]:
            package = packages[wheel["name"]]
            assert package["checksums"] == [
                {"algorithm": "SHA256", "checksumValue": wheel["sha256"]}
            ]
            assert package["packageFileName"] == wheel["filename"]
            (purl,) = package["externalRefs"]
            assert purl["referenceLocator"] == f"pkg:pypi/{wheel['name']}@{wheel['version']}"

    def test_licenses_as_spdx_expressions_or_license_refs(self, built):
        """An SPDX expression stays one; a classifier's name is a LicenseRef with its words."""
        raw = _spdx(built)
        packages = _packages(raw)
        assert packages["exprpkg"]["licenseDeclared"] == "MIT OR Apache-2.0"
        assert packages["classpkg"]["licenseDeclared"] == "LicenseRef-MIT-License"
        (extracted,) = json.loads(raw)["hasExtractedLicensingInfos"]
        assert (extracted["licenseId"], extracted["name"]) == (
            "LicenseRef-MIT-License",
            "MIT License",
        )

    def test_a_source_build_names_its_sdist_and_backend(self, built):
        """The built wheel's sourceInfo names the sdist's sha256 and the backend."""
        info = _packages(_spdx(built))["cext"]["sourceInfo"]
        assert f"sha256 {sha256_of(built['sdist'])}" in info
        assert "backend backend" in info

    def test_the_same_bytes_with_source_date_epoch_and_the_clock_without(self, built):
        """With an epoch two runs are identical; without, the creation time is the clock's."""
        assert _spdx(built) == _spdx(built)
        raw = _spdx(built, epoch=None, clock=lambda: 1_600_000_000.5)
        assert json.loads(raw)["creationInfo"]["created"] == "2020-09-13T12:26:40Z"

    def test_credentials_in_the_lock_never_reach_the_document(self, built, tmp_path):
        """User and password in the lock's URLs are gone from the download locations."""
        lock = tmp_path / "pylock.toml"
        text = (built["app"] / "pylock.toml").read_text()
        lock.write_text(text.replace("http://127.0.0.1", "http://alice:hunter22@127.0.0.1"))
        raw = _spdx(built, lock=read_lock(lock))
        assert b"hunter22" not in raw
        assert b"alice" not in raw
        assert "from http://127.0.0.1:" in _packages(raw)["exprpkg"]["comment"]

    def test_a_url_spdx_takes_is_the_download_location(self, built, tmp_path):
        """A URL with a host name is the downloadLocation; SPDX's pattern refuses an IP address,
        so that one is said in the comment and the location is NOASSERTION."""
        lock = tmp_path / "pylock.toml"
        text = (built["app"] / "pylock.toml").read_text()
        lock.write_text(text.replace("http://127.0.0.1:", "https://files.example.org:"))
        packages = _packages(_spdx(built, lock=read_lock(lock)))
        assert packages["exprpkg"]["downloadLocation"].startswith("https://files.example.org:")
        assert _packages(_spdx(built))["exprpkg"]["downloadLocation"] == "NOASSERTION"

    def test_the_command_prints_it(self, built):
        """`wheelbarrow sbom --format spdx` prints the SPDX document of the app's wheelhouse."""
        result = cli(
            "sbom",
            built["app"],
            "--store",
            built["store"].root,
            "--format",
            "spdx",
            "--platform",
            built["manifest"]["target"]["platform"],
        )
        assert result.code == 0, result.err
        document = result.json()
        assert document["spdxVersion"] == "SPDX-2.3"
        names = {p["name"] for p in document["packages"]}
        assert {"exprpkg", "classpkg", "cext", "cpython"} <= names
