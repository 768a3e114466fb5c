"""`wheelbarrow sbom APP`: the bill of materials of the app's wheelhouse, printed or written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from support import make_wheel
from support.apps import PLATFORM, build_ok, cli, make_app

HOST_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def index_url(tmp_path, local_index):
    """A served index of two wheels, alpha (MIT) and beta (needs alpha)."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0", metadata=["License-Expression: MIT"])
    make_wheel(d, "beta", "1.0", requires=["alpha"])
    return local_index(d).url


def _pyproject_app(directory: Path) -> Path:
    """An app with pyproject.toml only: no requirements.txt, no Python pin anywhere."""
    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(
        '[project]\nname = "myapp"\nversion = "0.1"\ndependencies = ["beta==1.0"]\n'
    )
    return directory


def _sbom(app: Path, store: Path, *extra: str | Path):
    return cli("sbom", app, "--store", store, "--platform", PLATFORM, *extra)


class TestSbomCommand:
    def test_prints_the_wheelhouse_of_a_pyproject_only_app_without_a_python_pin(
        self, tmp_path, index_url
    ):
        """For an app of pyproject.toml alone, it prints a valid document of what build made."""
        app = _pyproject_app(tmp_path / "app")
        store = tmp_path / "store"
        report = build_ok(app, store, index_url)
        result = _sbom(app, store)
        assert result.code == 0, result.err
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(result.out) is None
        document = result.json()
        libraries = {c["name"]: c for c in document["components"] if c["type"] == "library"}
        assert sorted(libraries) == ["alpha", "beta"]
        assert libraries["alpha"]["licenses"] == [
            {"license": {"id": "MIT", "acknowledgement": "declared"}}
        ]
        metadata = document["metadata"]["component"]
        assert metadata["name"] == "app"
        assert {"name": "wheelbarrow:wheelhouse-key", "value": report["key"]} in metadata[
            "properties"
        ]
        (runtime,) = [c for c in document["components"] if c["type"] == "platform"]
        assert runtime["version"] == HOST_MINOR  # no pin: the Python build chose

    def test_no_wheelhouse_yet_names_the_app_and_says_to_build(self, tmp_path, index_url):
        """A locked app whose wheelhouse is not in the store: an error naming it, exit 1."""
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        locked = cli("lock", app, "--index-url", index_url, "--platform", PLATFORM)
        assert locked.code == 0, locked.err
        result = _sbom(app, tmp_path / "empty-store")
        assert result.code == 1
        assert result.out == ""
        assert f"error: {app}: no wheelhouse for CPython" in result.err
        assert f"hint: run `wheelbarrow build {app}` first" in result.err
        assert "Traceback" not in result.err

    def test_an_app_never_locked_says_to_build(self, tmp_path):
        """An app with no lock at all is told to run build, and nothing is written."""
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        result = _sbom(app, tmp_path / "store")
        assert result.code == 2
        assert f"error: {app / 'pylock.toml'}: out of date (no pylock.toml yet)" in result.err
        assert f"hint: run `wheelbarrow build {app}`" in result.err
        assert not (app / "pylock.toml").exists()

    def test_output_writes_the_same_document_to_a_file(self, tmp_path, index_url):
        """--output FILE writes what would be printed, replacing an old file whole."""
        app = make_app(tmp_path / "app", "beta==1.0\n")
        store = tmp_path / "store"
        build_ok(app, store, index_url)
        target = tmp_path / "out" / "sbom.cdx.json"
        target.parent.mkdir()
        target.write_text("old")
        written = _sbom(app, store, "--output", target)
        printed = _sbom(app, store)
        assert written.code == 0, written.err
        assert target.read_text() == printed.out
        assert f"to {target}" in written.out
        assert sorted(p.name for p in target.parent.iterdir()) == ["sbom.cdx.json"]
        assert json.loads(target.read_text())["bomFormat"] == "CycloneDX"


class TestEnvironmentSbom:
    def test_an_installed_environment_lists_its_wheels_and_its_python(self, tmp_path, index_url):
        """--environment DIR describes what `install` put there: the wheelhouse's packages with
        their hashes, the environment as the subject and its interpreter's exact version."""
        app = _pyproject_app(tmp_path / "app")
        store = tmp_path / "store"
        report = build_ok(app, store, index_url)
        env = tmp_path / "env"
        installed = cli("install", app, "--store", store, "--platform", PLATFORM, "--into", env)
        assert installed.code == 0, installed.err

        result = cli("sbom", "--environment", env)

        assert result.code == 0, result.err
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(result.out) is None
        document = result.json()
        manifest = json.loads((Path(report["wheelhouse"]) / "wheelhouse.json").read_text())
        hashes = {w["name"]: w["sha256"] for w in manifest["wheels"]}
        libraries = {
            c["name"]: c["hashes"][0]["content"]
            for c in document["components"]
            if c["type"] == "library"
        }
        assert libraries == hashes
        subject = document["metadata"]["component"]
        assert subject["name"] == "env"
        assert {"name": "wheelbarrow:subject", "value": "environment"} in subject["properties"]
        (runtime,) = [c for c in document["components"] if c["type"] == "platform"]
        assert runtime["version"] == "{}.{}.{}".format(*sys.version_info[:3])

    def test_a_directory_wheelbarrow_did_not_install_is_refused(self, tmp_path):
        """A directory without wheelbarrow's marker is named, with what to give instead."""
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("kept")

        result = cli("sbom", "--environment", mine, "--output", mine / "sbom.json")

        assert result.code == 2
        assert f"error: {mine}: not an environment wheelbarrow installed" in result.err
        assert "hint: name the directory given to `wheelbarrow install --into`" in result.err
        assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]

    def test_an_environment_whose_wheelhouse_was_removed_says_so(self, tmp_path, index_url):
        """An environment whose wheelhouse left the store is an error naming both."""
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        store = tmp_path / "store"
        build_ok(app, store, index_url)
        env = tmp_path / "env"
        installed = cli(
            "install", app, "--store", store, "--platform", PLATFORM, "--into", env,
            "--link-mode", "copy",
        )  # fmt: skip
        assert installed.code == 0, installed.err

        result = cli("sbom", "--environment", env, "--store", tmp_path / "other-store")

        assert result.code == 1
        assert f"error: {env}: its wheelhouse " in result.err
        assert f"is no longer in {tmp_path / 'other-store'}" in result.err
