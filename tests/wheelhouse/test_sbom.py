"""The CycloneDX bill of materials of a wheelhouse: what it says of each wheel, and its bytes."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from support import make_c_extension_sdist, make_wheel, serve_local_index, sha256_of
from support.apps import build_ok, make_app

from wheelbarrow.lock.lockfile import read_lock
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse.sbom import (
    SPEC_VERSION,
    Runtime,
    SbomError,
    cyclonedx_json,
    made_here,
    source_date_epoch,
    write_new,
)

SCIPY_LIKE_LICENSE = "Copyright (c) 2001 The Authors.\nAll rights reserved.\n\n" + "text " * 200


@dataclass(frozen=True)
class Built:
    """An app built into a store from a served index, and what it was built from."""

    app: Path
    store: Store
    key: str
    dists: Path
    index_url: str

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.store.wheelhouse(self.key) / "wheelhouse.json").read_text()
        )
        return data


def _packages(directory: Path) -> None:
    make_wheel(directory, "Expr_Pkg", "1.0", metadata=["License-Expression: MIT OR Apache-2.0"])
    make_wheel(directory, "licpkg", "2.0", metadata=["License: BSD-3-Clause"])
    make_wheel(
        directory,
        "classpkg",
        "3.0",
        metadata=[
            "Classifier: License :: OSI Approved",
            "Classifier: License :: OSI Approved :: MIT License",
            "Classifier: Programming Language :: Python",
        ],
    )
    make_wheel(
        directory,
        "longlic",
        "1.0",
        metadata=[
            "License: " + SCIPY_LIKE_LICENSE.replace("\n", "\n        "),
            "Classifier: License :: OSI Approved :: BSD License",
        ],
    )
    make_wheel(directory, "nolic", "0.1")
    make_c_extension_sdist(directory, "cext", "1.0")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """Five wheels (each license style) and one sdist built from source, in one wheelhouse."""
    root = tmp_path_factory.mktemp("sbom")
    dists = root / "dists"
    _packages(dists)
    with serve_local_index(dists) as index:
        app = make_app(root / "app", "expr-pkg\nlicpkg\nclasspkg\nlonglic\nnolic\ncext\n")
        report = build_ok(app, root / "store", index.url)
        yield Built(
            app=app,
            store=Store(root / "store"),
            key=report["key"],
            dists=dists,
            index_url=index.url,
        )


def _document(built: Built, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("lock", read_lock(built.app / "pylock.toml"))
    data: dict[str, Any] = json.loads(
        cyclonedx_json(built.store, built.key, subject="wheelhouse", **kwargs)
    )
    return data


def _component(document: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in document["components"] if c["name"] == name]
    return found


def _properties(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


class TestPackages:
    def test_every_wheel_is_listed_with_its_purl_and_the_manifest_sha256(self, built):
        """Each wheel of the manifest is one component: normalised name, version, purl, sha256."""
        document = _document(built)
        listed = {
            c["name"]: (c["version"], c["purl"], c["hashes"])
            for c in document["components"]
            if c["type"] == "library"
        }
        expected = {
            w["name"]: (
                w["version"],
                f"pkg:pypi/{w['name']}@{w['version']}",
                [{"alg": "SHA-256", "content": w["sha256"]}],
            )
            for w in built.manifest["wheels"]
        }
        assert listed == expected
        assert "expr-pkg" in listed  # Expr_Pkg, normalised

    def test_a_downloaded_wheel_names_the_url_it_came_from(self, built):
        """A wheel from the index has a distribution reference: its URL and sha256."""
        component = _component(_document(built), "licpkg")
        (reference,) = component["externalReferences"]
        assert reference["type"] == "distribution"
        assert reference["url"] == built.index_url.removesuffix("simple/") + (
            "licpkg-2.0-py3-none-any.whl"
        )
        assert reference["hashes"] == component["hashes"]
        assert _properties(component)["wheelbarrow:origin"] == "downloaded"


class TestLicenses:
    def test_license_expression_comes_first(self, built):
        """License-Expression becomes the component's SPDX expression."""
        component = _component(_document(built), "expr-pkg")
        assert component["licenses"] == [
            {"expression": "MIT OR Apache-2.0", "acknowledgement": "declared"}
        ]

    def test_license_field_with_an_spdx_id(self, built):
        """A License field that is an SPDX identifier becomes that id."""
        component = _component(_document(built), "licpkg")
        assert component["licenses"] == [
            {"license": {"id": "BSD-3-Clause", "acknowledgement": "declared"}}
        ]

    def test_classifiers_when_no_license_field(self, built):
        """Without a License field the `License ::` classifiers name it (not "OSI Approved")."""
        component = _component(_document(built), "classpkg")
        assert component["licenses"] == [
            {"license": {"name": "MIT License", "acknowledgement": "declared"}}
        ]

    def test_a_license_text_gives_way_to_the_classifiers(self, built):
        """A License field holding a whole license text is not a name: the classifier is used."""
        component = _component(_document(built), "longlic")
        assert component["licenses"] == [
            {"license": {"name": "BSD License", "acknowledgement": "declared"}}
        ]

    def test_no_license_declared_gives_no_licenses(self, built):
        """A wheel declaring no license has none in the document (nothing is guessed)."""
        assert "licenses" not in _component(_document(built), "nolic")


class TestSourceBuilds:
    def test_built_from_names_the_sdist_sha256_backend_and_toolchain(self, built):
        """A source-built wheel says which sdist (sha256), backend and toolchain made it."""
        component = _component(_document(built), "cext")
        properties = _properties(component)
        sdist = built.dists / "cext-1.0.tar.gz"
        assert properties["wheelbarrow:origin"] == "built"
        assert properties["wheelbarrow:built-from:kind"] == "sdist"
        assert properties["wheelbarrow:built-from:sha256"] == sha256_of(sdist)
        assert properties["wheelbarrow:build:backend"] == "backend"
        assert properties["wheelbarrow:build:toolchain:cc"].startswith("cc ")
        assert properties["wheelbarrow:build:repair"].startswith("repaired to manylinux")
        (ancestor,) = component["pedigree"]["ancestors"]
        assert ancestor["hashes"] == [{"alg": "SHA-256", "content": sha256_of(sdist)}]
        (reference,) = component["externalReferences"]
        assert reference["type"] == "source-distribution"
        assert reference["url"].endswith("/cext-1.0.tar.gz")
        # The wheel's own hash is the built wheel's, as the manifest has it.
        (entry,) = [w for w in built.manifest["wheels"] if w["name"] == "cext"]
        assert component["hashes"] == [{"alg": "SHA-256", "content": entry["sha256"]}]

    def test_without_the_lock_the_build_facts_are_still_there(self, built):
        """The lock only adds URLs: the sdist's sha256 and backend come from the store."""
        component = _component(_document(built, lock=None), "cext")
        properties = _properties(component)
        assert properties["wheelbarrow:build:backend"] == "backend"
        assert "externalReferences" not in component


class TestCredentials:
    def test_credentials_in_the_lock_never_reach_the_document(self, built, tmp_path):
        """An index URL with user:password in the lock is written without them."""
        text = (built.app / "pylock.toml").read_text()
        secret = text.replace("http://127.0.0.1", "http://alice:hunter22@127.0.0.1")
        assert secret != text
        lock = tmp_path / "pylock.toml"
        lock.write_text(secret)
        raw = cyclonedx_json(built.store, built.key, subject="wheelhouse", lock=read_lock(lock))
        assert b"hunter22" not in raw
        assert b"alice" not in raw
        component = _component(json.loads(raw), "licpkg")
        assert component["externalReferences"][0]["url"].startswith("http://127.0.0.1")


class TestDocument:
    def test_passes_the_strict_schema_with_format_checks(self, built):
        """The document passes the library's strict 1.6 validator (no unknown properties)."""
        raw = cyclonedx_json(
            built.store,
            built.key,
            subject="slug",
            runtime=Runtime("cpython", "3.12.7"),
            lock=read_lock(built.app / "pylock.toml"),
            epoch=1_700_000_000,
        )
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(raw.decode()) is None
        assert json.loads(raw)["specVersion"] == SPEC_VERSION == "1.6"

    def test_two_runs_give_the_same_bytes(self, built):
        """The same store, wheelhouse and arguments give byte-identical documents, made anew."""
        import shutil

        lock = read_lock(built.app / "pylock.toml")
        first = cyclonedx_json(built.store, built.key, subject="image", lock=lock, name="app:1")
        shutil.rmtree(built.store.root / "sbom")  # not the kept one: made again
        again = cyclonedx_json(built.store, built.key, subject="image", lock=lock, name="app:1")
        assert first == again
        assert json.loads(first)["serialNumber"].startswith("urn:uuid:")

    def test_the_serial_number_follows_the_content(self, built):
        """Another subject is another document: another serial number."""
        one = _document(built, runtime=Runtime("cpython", "3.12.7"))
        other = _document(built, runtime=Runtime("cpython", "3.12.8"))
        assert one["serialNumber"] != other["serialNumber"]

    def test_no_timestamp_without_source_date_epoch(self, built):
        """Without SOURCE_DATE_EPOCH there is no timestamp; with it, that time in UTC."""
        assert "timestamp" not in _document(built)["metadata"]
        stamped = _document(built, epoch=source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}))
        assert stamped["metadata"]["timestamp"] == "2023-11-14T22:13:20+00:00"
        assert source_date_epoch({}) is None
        assert source_date_epoch({"SOURCE_DATE_EPOCH": "soon"}) is None

    def test_metadata_names_wheelbarrow_and_the_subject(self, built):
        """The tool is wheelbarrow (and the CycloneDX library); the subject says what shipped."""
        from wheelbarrow import __version__

        document = _document(built, name="myapp")
        tools = {t["name"]: t["version"] for t in document["metadata"]["tools"]["components"]}
        assert tools["wheelbarrow"] == __version__
        assert "cyclonedx-python-lib" in tools
        subject = document["metadata"]["component"]
        assert subject["name"] == "myapp"
        assert _properties(subject) == {
            "wheelbarrow:subject": "wheelhouse",
            "wheelbarrow:wheelhouse-key": built.key,
            "wheelbarrow:target:python": built.manifest["target"]["python"],
            "wheelbarrow:target:platform": built.manifest["target"]["platform"],
        }

    def test_the_runtime_is_a_platform_component(self, built):
        """The Python runtime, when known, is a component the subject depends on."""
        document = _document(built, runtime=Runtime("cpython", "3.12.7"))
        runtime = _component(document, "cpython")
        assert (runtime["type"], runtime["version"]) == ("platform", "3.12.7")
        (root,) = [d for d in document["dependencies"] if d["ref"] == "wheelbarrow:wheelhouse"]
        assert runtime["bom-ref"] in root["dependsOn"]
        assert len(root["dependsOn"]) == len(built.manifest["wheels"]) + 1

    def test_an_image_subject_is_a_container(self, built):
        """An image's document describes a container."""
        document = _document(built)
        image = json.loads(cyclonedx_json(built.store, built.key, subject="image"))
        assert document["metadata"]["component"]["type"] == "application"
        assert image["metadata"]["component"]["type"] == "container"

    def test_a_document_failing_the_schema_is_an_error_naming_it(self, built, tmp_path):
        """A URL the schema refuses (from a hand-edited lock) stops with SbomError, no traceback."""
        text = (built.app / "pylock.toml").read_text()
        lock = tmp_path / "pylock.toml"
        port = built.index_url.split(":")[2].split("/")[0]
        lock.write_text(text.replace(f"127.0.0.1:{port}/licpkg", "127.0.0.1:port/licpkg"))
        with pytest.raises(SbomError) as raised:
            cyclonedx_json(built.store, built.key, subject="wheelhouse", lock=read_lock(lock))
        assert built.key in raised.value.message
        assert "fails its schema at components/" in raised.value.message
        assert "127.0.0.1:port/licpkg" in raised.value.message
        assert raised.value.hint

    def test_a_url_that_is_no_uri_is_an_error_naming_the_package(self, built, tmp_path):
        """A lock URL the library cannot take as a URI names the package and the URL."""
        text = (built.app / "pylock.toml").read_text()
        lock = tmp_path / "pylock.toml"
        lock.write_text(
            text.replace("/licpkg-2.0-py3-none-any.whl", "/%zz/licpkg-2.0-py3-none-any.whl")
        )
        with pytest.raises(SbomError, match=r"licpkg 2\.0: the lock gives its file the URL"):
            cyclonedx_json(built.store, built.key, subject="wheelhouse", lock=read_lock(lock))

    def test_a_missing_wheelhouse_is_a_clear_error(self, built):
        """An unknown key names the store and says to build."""
        from wheelbarrow._core.errors import StoreError

        with pytest.raises(StoreError, match="no wheelhouse 0000") as raised:
            cyclonedx_json(built.store, "0000", subject="wheelhouse")
        assert "wheelbarrow build" in (raised.value.hint or "")


class TestLocalDirectory:
    def test_a_local_directory_package_says_it_is_local(self, tmp_path, local_index):
        """A package built from the app's directory gets a local bom-ref and no pypi purl."""
        sdist = make_c_extension_sdist(tmp_path / "d", "localpkg", "1.0")
        app = make_app(tmp_path / "app", "./localpkg-1.0\n")
        with tarfile.open(sdist) as tar:
            tar.extractall(app, filter="data")
        index = local_index([make_wheel(tmp_path / "w", "other", "1.0")])
        report = build_ok(app, tmp_path / "store", index.url)
        store = Store(tmp_path / "store")
        raw = cyclonedx_json(
            store, report["key"], subject="wheelhouse", lock=read_lock(app / "pylock.toml")
        )
        component = _component(json.loads(raw), "localpkg")
        assert component["bom-ref"] == "local:localpkg@1.0"
        assert "purl" not in component
        properties = _properties(component)
        assert properties["wheelbarrow:built-from:kind"] == "directory"
        assert properties["wheelbarrow:build:backend"] == "backend"
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(raw.decode()) is None


class TestWriteNew:
    def test_writes_the_document_in_a_new_directory(self, built, tmp_path):
        """Into an app without .wheelbarrow/, the document is written whole."""
        document = cyclonedx_json(built.store, built.key, subject="slug")
        write_new(tmp_path / ".wheelbarrow" / "sbom.cdx.json", document, root=tmp_path)
        assert (tmp_path / ".wheelbarrow" / "sbom.cdx.json").read_bytes() == document
        assert [p.name for p in (tmp_path / ".wheelbarrow").iterdir()] == ["sbom.cdx.json"]

    def test_replaces_a_document_it_wrote_before(self, built, tmp_path):
        """A second compile of the same directory replaces wheelbarrow's own earlier document."""
        path = tmp_path / ".wheelbarrow" / "sbom.cdx.json"
        write_new(path, cyclonedx_json(built.store, built.key, subject="slug"), root=tmp_path)
        assert made_here(path)
        newer = cyclonedx_json(built.store, built.key, subject="slug", epoch=1)
        write_new(path, newer, root=tmp_path)
        assert path.read_bytes() == newer

    @pytest.mark.parametrize(
        "content",
        [
            "the user's notes\n",
            '{"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {"tools": '
            '{"components": [{"type": "application", "name": "syft"}]}}}',
        ],
        ids=["text", "another-tools-sbom"],
    )
    def test_refuses_a_file_wheelbarrow_did_not_write(self, built, tmp_path, content):
        """The user's own file (even another tool's SBOM) stays as it was; the error names it."""
        path = tmp_path / ".wheelbarrow" / "sbom.cdx.json"
        path.parent.mkdir()
        path.write_text(content)
        document = cyclonedx_json(built.store, built.key, subject="slug")
        with pytest.raises(SbomError, match=r"the app has its own \.wheelbarrow/sbom\.cdx\.json"):
            write_new(path, document, root=tmp_path)
        assert path.read_text() == content

    def test_refuses_to_write_through_a_link(self, built, tmp_path):
        """A .wheelbarrow that is a link (to anywhere) is not written through."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        app = tmp_path / "app"
        app.mkdir()
        (app / ".wheelbarrow").symlink_to(elsewhere)
        document = cyclonedx_json(built.store, built.key, subject="slug")
        with pytest.raises(SbomError, match=r"its own \.wheelbarrow, where"):
            write_new(app / ".wheelbarrow" / "sbom.cdx.json", document, root=app)
        assert list(elsewhere.iterdir()) == []

    def test_refuses_a_link_in_the_documents_place(self, built, tmp_path):
        """A link named sbom.cdx.json, even to a document of wheelbarrow's, is the user's."""
        path = tmp_path / ".wheelbarrow" / "sbom.cdx.json"
        real = tmp_path / "real.json"
        real.write_bytes(cyclonedx_json(built.store, built.key, subject="slug"))
        path.parent.mkdir()
        path.symlink_to(real)
        with pytest.raises(SbomError):
            write_new(path, b"{}", root=tmp_path)
        assert path.is_symlink()


class TestVcs:
    def test_a_vcs_package_names_its_commit_and_repository(self, tmp_path):
        """A package built from a git checkout: no pypi purl, its commit and repository URL."""
        import subprocess

        sdist = make_c_extension_sdist(tmp_path / "d", "vcspkg", "1.0")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp_path / "unpacked", filter="data")
        repo = tmp_path / "unpacked" / "vcspkg-1.0"
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        app = make_app(tmp_path / "app", f"vcspkg @ git+{repo.as_uri()}\n")
        report = build_ok(app, tmp_path / "store", "http://127.0.0.1:9/simple/", "--no-index")
        raw = cyclonedx_json(
            Store(tmp_path / "store"),
            report["key"],
            subject="wheelhouse",
            lock=read_lock(app / "pylock.toml"),
        )
        component = _component(json.loads(raw), "vcspkg")
        assert component["bom-ref"] == "vcs:vcspkg@1.0"
        assert "purl" not in component
        assert _properties(component)["wheelbarrow:built-from:commit"] == commit
        (reference,) = component["externalReferences"]
        assert (reference["type"], reference["url"]) == ("vcs", f"git+{repo.as_uri()}")
        assert component["pedigree"]["commits"] == [{"uid": commit}]
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(raw.decode()) is None


class TestMadeBefore:
    def test_a_document_made_before_is_taken_without_loading_the_validator(self, built):
        """The second request for the same document reads it back: no schema work, same bytes."""
        import subprocess
        import sys

        first = cyclonedx_json(built.store, built.key, subject="slug", name="again")
        script = (
            "import sys; from pathlib import Path\n"
            "from wheelbarrow.store.store import Store\n"
            "from wheelbarrow.wheelhouse.sbom import cyclonedx_json\n"
            f"doc = cyclonedx_json(Store(Path({str(built.store.root)!r})), {built.key!r}, "
            "subject='slug', name='again')\n"
            "sys.stdout.buffer.write(doc)\n"
            "sys.stderr.write(str('cyclonedx.validation.json' in sys.modules))\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
        assert done.stdout == first
        assert done.stderr == b"False"

    def test_a_damaged_document_is_made_again(self, built):
        """A kept document whose bytes changed is not served: it is made and kept anew."""
        first = cyclonedx_json(built.store, built.key, subject="slug", name="damaged")
        kept = [p for p in (built.store.root / "sbom").iterdir() if p.read_bytes() == first]
        assert len(kept) == 1
        kept[0].write_bytes(first.replace(b'"slug"', b'"sluG"'))
        assert cyclonedx_json(built.store, built.key, subject="slug", name="damaged") == first
        assert kept[0].read_bytes() == first


class TestDirectUrls:
    def test_files_named_by_direct_urls_keep_them(self, built, tmp_path):
        """`name @ URL` requirements: the wheel's and the sdist's URLs are their references."""
        base = built.index_url.removesuffix("simple/")
        app = make_app(
            tmp_path / "app",
            f"licpkg @ {base}licpkg-2.0-py3-none-any.whl\ncext @ {base}cext-1.0.tar.gz\n",
        )
        report = build_ok(app, built.store.root, built.index_url)
        lock = read_lock(app / "pylock.toml")
        assert {p.name: p.archive is not None for p in lock.pylock.packages}["cext"]
        document = json.loads(
            cyclonedx_json(built.store, report["key"], subject="wheelhouse", lock=lock)
        )
        (wheel_ref,) = _component(document, "licpkg")["externalReferences"]
        assert (wheel_ref["type"], wheel_ref["url"]) == (
            "distribution",
            f"{base}licpkg-2.0-py3-none-any.whl",
        )
        (sdist_ref,) = _component(document, "cext")["externalReferences"]
        assert (sdist_ref["type"], sdist_ref["url"]) == (
            "source-distribution",
            f"{base}cext-1.0.tar.gz",
        )
