"""The app-only ``image``: made from the record of the last full image, or not at all.

Each image runs in a process of its own: the modules it loaded say whether it planned (an
image from the record imports no planner). Every image from the record is checked against
the full image of the same app, made with the record removed: the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import make_c_extension_sdist, make_wheel, unpack_into
from support.apps import HOST_PYTHON, PLATFORM, cli, make_app
from support.multiarch import blob_json, fake_python_image, tagged

_PROBE = textwrap.dedent(
    """
    import json, sys
    from wheelbarrow.cli import main
    code = main(sys.argv[1:] + ["--json"])
    planners = ("packaging", "wheelbarrow.lock", "wheelbarrow.app.directory",
                "wheelbarrow.environment", "wheelbarrow.wheelhouse")
    loaded = sorted(m for m in sys.modules if m.startswith(planners))
    sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
    """
)


class Built:
    """An app built into a store, a base in an OCI layout, and where the images go."""

    def __init__(self, root: Path, app: Path, store: Path, base: Path) -> None:
        self.root, self.app, self.store, self.base = root, app, store, base
        self.runs = 0

    def image(self, *extra: str | Path) -> dict[str, Any]:
        """``image`` into a new layout: its report, exit code, whether it planned, its layout."""
        self.runs += 1
        out = self.root / f"out-{self.runs}"
        args: list[str | Path] = ["image", self.app, "--store", self.store]
        args += ["--tag", "localhost/a:1", "--base", f"oci:{self.base}:base"]
        args += ["--oci", out, *extra]
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            env=os.environ | {"SOURCE_DATE_EPOCH": "1700000000"},
        )
        probe = json.loads(done.stderr.rsplit("\nPROBE ", 1)[1])
        report = json.loads(done.stdout) if probe["code"] == 0 else {"error": done.stdout}
        return report | {
            "code": probe["code"],
            "planned": bool(probe["loaded"]),
            "out": out,
            "err": done.stderr,
        }

    def forget(self) -> None:
        """Remove the records of the images: the next image is a full one."""
        shutil.rmtree(self.store / "locks" / "images")


@pytest.fixture
def built(tmp_path: Path, local_index) -> Built:
    """A web app (alpha 1.0 and a Procfile) built into a store; a base with Python."""
    dists = tmp_path / "dists"
    make_wheel(dists, "alpha", "1.0", files={"alpha/__init__.py": "VALUE = 1\n"})
    make_wheel(dists, "alpha", "2.0")
    index = local_index(dists)
    app = make_app(tmp_path / "app", "alpha==1.0\n")
    (app / "app.py").write_text("import alpha\nprint(alpha.VALUE)\n")
    (app / "Procfile").write_text("web: python app.py\n")
    return built_app(tmp_path, app, "--index-url", index.url)


def built_app(root: Path, app: Path, *build_args: str | Path) -> Built:
    """``app`` built into a new store under ``root``, and a base with this Python."""
    store = root / "store"
    result = cli("build", app, "--store", store, "--platform", PLATFORM, *build_args)
    assert result.code == 0, result.err
    base = root / "base"
    fake_python_image(base, "base", architecture="amd64", python=HOST_PYTHON)
    return Built(root, app, store, base)


def recorded(built: Built) -> tuple[dict[str, Any], dict[str, Any]]:
    """A full image, then an app edit's image that must come from the record: both."""
    first = built.image()
    assert first["code"] == 0 and first["planned"], first
    with (built.app / "app.py").open("a") as f:
        f.write("# an edit\n")
    second = built.image()
    assert second["code"] == 0, second
    assert not second["planned"], second
    return first, second


def same_as_full(built: Built, from_record: dict[str, Any], *extra: str) -> None:
    """The full image of the app as it is now gives what the record gave, byte for byte."""
    built.forget()
    full = built.image(*extra)
    assert full["code"] == 0 and full["planned"], full
    assert full["digest"] == from_record["digest"]
    assert full["outputs"]["sbom"] == from_record["outputs"]["sbom"]
    for name in ("index.json", "oci-layout"):
        assert (full["out"] / name).read_bytes() == (from_record["out"] / name).read_bytes()


class TestFromTheRecord:
    def test_an_app_edit_is_imaged_without_planning_as_the_full_image_would(self, built):
        """The second image plans nothing, keeps the environment layer, has a new app layer,
        and is the image a full run makes of the edited app."""
        first, second = recorded(built)
        assert second["env_layer"] == first["env_layer"] | {"reused": True}
        assert second["app_layer"]["digest"] != first["app_layer"]["digest"]
        manifest = blob_json(second["out"], tagged(second["out"], "latest")["digest"])
        assert manifest["layers"][-1]["digest"] == second["app_layer"]["digest"]
        same_as_full(built, second)

    def test_it_says_what_the_full_image_says(self, built):
        """The progress lines on stderr are the full image's of the same app."""
        _, second = recorded(built)
        built.forget()
        full = built.image()
        assert full["planned"], full

        def said(run: dict[str, Any]) -> list[str]:
            lines = run["err"].splitlines()
            return [line for line in lines if "Building" in line or "layer" in line]

        assert len(said(second)) == 2 and said(second) == said(full)

    def test_another_tag_is_a_full_image_of_its_own(self, built):
        """The options are part of the record's name: another tag plans, and its SBOM names it."""
        recorded(built)
        other = built.image("--tag", "localhost/b:2")
        assert other["code"] == 0 and other["planned"], other
        assert other["image"] == "localhost/b:2"


class TestNotFromTheRecord:
    def test_edited_requirements_are_refused_as_the_full_image_refuses_them(self, built):
        """A changed requirement plans again, and fails as a full image does: the lock is
        stale, and image never locks."""
        recorded(built)
        (built.app / "requirements.txt").write_text("alpha==2.0\n")
        again = built.image()
        assert again["planned"] and again["code"] != 0, again
        built.forget()
        full = built.image()
        assert full["code"] == again["code"] and full["error"] == again["error"]

    def test_a_removed_environment_layer_is_made_by_the_full_image(self, built):
        """The record cannot make the environment: the full image does, and nothing of the
        record's attempt is left in the layout."""
        recorded(built)
        shutil.rmtree(built.store / "oci" / "env-layers")
        again = built.image()
        assert again["code"] == 0 and again["planned"], again
        assert again["env_layer"]["reused"] is False
        assert "environment layer" in again["err"]
        assert again["err"].count("Building localhost/a:1") == 1

    def test_a_removed_sbom_is_made_by_the_full_image(self, built):
        """The record has no parsed lock for a new SBOM: the full image makes it, the same."""
        _, second = recorded(built)
        shutil.rmtree(built.store / "oci" / "sbom")
        again = built.image()
        assert again["code"] == 0 and again["planned"], again
        assert again["outputs"]["sbom"] == second["outputs"]["sbom"]

    def test_a_docker_archive_is_a_full_image(self, built, tmp_path):
        recorded(built)
        archive = built.image("--docker-archive", tmp_path / "a.tar")
        assert archive["code"] == 0 and archive["planned"], archive
        assert (tmp_path / "a.tar").is_file()

    def test_a_store_without_the_wheelhouse_is_said_as_the_full_image_says_it(self, built):
        """A wheelhouse removed since (as gc does) takes the full image, which names it."""
        recorded(built)
        for wheelhouse in (built.store / "wheelhouses").iterdir():
            shutil.rmtree(wheelhouse)
        again = built.image()
        assert again["planned"] and again["code"] != 0, again


class TestAppsUnlikeTextsim:
    def test_a_pyproject_only_app_without_a_python_pin(self, tmp_path, local_index):
        """No requirements.txt, no .python-version, no requires-python: the record holds."""
        dists = tmp_path / "dists"
        make_wheel(dists, "alpha", "1.0")
        index = local_index(dists)
        app = tmp_path / "app"
        app.mkdir()
        (app / "pyproject.toml").write_text(
            '[project]\nname = "web"\nversion = "0.1"\ndependencies = ["alpha==1.0"]\n'
        )
        (app / "app.py").write_text("import alpha\n")
        built = built_app(tmp_path, app, "--index-url", index.url)
        _, second = recorded(built)
        same_as_full(built, second)

    def test_an_edited_local_package_is_never_taken_from_the_record(self, tmp_path):
        """A local package (./localpkg, built from source) edited after the build: the image
        fails as the full image fails, asking for a build; the record gives no old image."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("./localpkg\n")
        sdist = make_c_extension_sdist(tmp_path / "d", "localpkg", "2.5")
        unpack_into(sdist, app / "localpkg")
        built = built_app(tmp_path, app, "--no-index")
        first = built.image()
        assert first["code"] == 0, first
        init = app / "localpkg" / "localpkg" / "__init__.py"
        init.write_text(init.read_text() + "\nEDITED = True\n")
        again = built.image()
        assert again["planned"] and again["code"] != 0, again
        assert "localpkg" in again["error"] and "edited since the last build" in again["error"]
        shutil.rmtree(built.store / "locks" / "images", ignore_errors=True)
        full = built.image()
        assert (full["code"], full["error"]) == (again["code"], again["error"])


class TestTheBaseIsReadAgain:
    def test_a_base_tag_pointed_at_another_image_gives_an_image_on_it(self, built, tmp_path):
        """The record holds nothing of the base: a tag moved to another image is read again,
        and the image is built on the new one, as a full image builds it."""
        recorded(built)
        before = built.image()
        assert not before["planned"]
        moved = _retagged(built.base, tmp_path)
        after = built.image()
        assert after["code"] == 0 and not after["planned"], after
        layers = blob_json(after["out"], tagged(after["out"], "latest")["digest"])["layers"]
        assert layers[0]["digest"] == moved
        assert after["digest"] != before["digest"]
        same_as_full(built, after)


def _retagged(layout: Path, work: Path) -> str:
    """Point the layout's tag ``base`` at a new image with one more file; its base layer."""
    from wheelbarrow.ship.oci.append import append_layers, scratch_config
    from wheelbarrow.ship.oci.layer import RegularFile, write_layer
    from wheelbarrow.ship.oci.layout import write_oci_layout

    files = [f"/usr/bin/python{HOST_PYTHON}", f"/usr/lib/python{HOST_PYTHON}/os.py", "/etc/moved"]
    layer = write_layer([RegularFile(path=f, data=b"") for f in files], work / "moved-layer")
    docs = append_layers(scratch_config(architecture="amd64"), None, [layer])
    write_oci_layout(
        layout,
        manifest=docs.manifest,
        config=docs.config,
        blobs={layer.digest: layer.path},
        ref_name="base",
    )
    return layer.digest
