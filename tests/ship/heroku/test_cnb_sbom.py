"""The Cloud Native Buildpack's layer SBOM: ``<layers>/venv.sbom.cdx.json``, the CycloneDX
document of the environment layer, written with the layer and declared in buildpack.toml."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from support import make_wheel, sha256_of
from support.heroku import restore_like_the_lifecycle

from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.ship.heroku.cnb import buildpack_toml
from wheelbarrow.ship.heroku.cnb_build import VENV_SBOM, build
from wheelbarrow.ship.heroku.output import HerokuReporter
from wheelbarrow.wheelhouse.sbom import MEDIA_TYPE

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.fixture
def lifecycle(tmp_path: Path, local_index) -> tuple[Path, Path, Path, dict[str, str]]:
    """An app pinning alpha 1.0, the layers and platform dirs; the wheels' sha256 by version."""
    dists = tmp_path / "dists"
    hashes = {v: sha256_of(make_wheel(dists, "alpha", v)) for v in ("1.0", "2.0")}
    index = local_index(dists)
    app = tmp_path / "workspace"
    app.mkdir()
    (app / "requirements.txt").write_text("alpha==1.0\n")
    (app / ".python-version").write_text(HOST_PYTHON + "\n")
    (app / "Procfile").write_text("web: python -c 'import alpha'\n")
    platform = tmp_path / "platform"
    (platform / "env").mkdir(parents=True)
    (platform / "env" / "WHEELBARROW_INDEX_URL").write_text(index.url)
    return app, tmp_path / "layers", platform, hashes


def run_build(app: Path, layers: Path, platform: Path) -> str:
    from uv import find_uv_bin

    layers.mkdir(exist_ok=True)
    stream = io.StringIO()
    build(
        app,
        layers_dir=layers,
        platform_dir=platform,
        plan_path=None,
        environ={"PATH": "/usr/bin:/bin"},
        runner=run_subprocess,
        which=shutil.which,
        uv=str(find_uv_bin()),
        out=HerokuReporter(stream),
    )
    return stream.getvalue()


def sbom(layers: Path) -> dict[str, Any]:
    """The venv layer's SBOM file, checked by the CycloneDX library's strict validator."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = (layers / VENV_SBOM).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document: dict[str, Any] = json.loads(text)
    return document


def alpha(document: dict[str, Any]) -> dict[str, Any]:
    [found] = [c for c in document["components"] if c["name"] == "alpha"]
    return found


class TestLayerSbom:
    def test_the_environment_layer_has_its_sbom_file(self, lifecycle):
        """venv.sbom.cdx.json beside venv.toml: valid CycloneDX naming alpha 1.0 with the
        wheel's sha256, and the layer's Python as its runtime."""
        app, layers, platform, hashes = lifecycle
        out = run_build(app, layers, platform)
        assert f"SBOM of the environment layer: {VENV_SBOM}" in out
        document = sbom(layers)
        assert alpha(document)["version"] == "1.0"
        assert {"alg": "SHA-256", "content": hashes["1.0"]} in alpha(document)["hashes"]
        python = tomllib.loads((layers / "venv.toml").read_text())["metadata"]["python"]
        assert python in json.dumps(document)

    def test_a_reused_layer_keeps_the_restored_sbom_or_makes_it_again(self, lifecycle):
        """Reused from its metadata, the layer keeps the SBOM the lifecycle restored (not
        rewritten); without one restored, it is made again from the store."""
        app, layers, platform, _ = lifecycle
        run_build(app, layers, platform)
        restore_like_the_lifecycle(layers)
        restored = (layers / VENV_SBOM).read_bytes() + b"\n"
        (layers / VENV_SBOM).write_bytes(restored)
        assert "Reusing the environment layer" in run_build(app, layers, platform)
        assert (layers / VENV_SBOM).read_bytes() == restored
        restore_like_the_lifecycle(layers)
        (layers / VENV_SBOM).unlink()
        run_build(app, layers, platform)
        assert alpha(sbom(layers))["version"] == "1.0"

    def test_a_changed_pin_writes_the_new_environments_sbom(self, lifecycle):
        """After alpha 2.0 is pinned, the remade layer's SBOM names 2.0 and its hash."""
        app, layers, platform, hashes = lifecycle
        run_build(app, layers, platform)
        restore_like_the_lifecycle(layers)
        (app / "requirements.txt").write_text("alpha==2.0\n")
        run_build(app, layers, platform)
        assert alpha(sbom(layers))["version"] == "2.0"
        assert {"alg": "SHA-256", "content": hashes["2.0"]} in alpha(sbom(layers))["hashes"]


class TestBuildpackTomlSbomFormats:
    def test_the_cyclonedx_format_is_declared_as_the_api_requires(self):
        """buildpack.toml (generated and committed alike) declares sbom-formats with the SBOM's
        media type, on a Buildpack API (0.7 or later) that has layer SBOM files."""
        for text in (buildpack_toml("0.1.0"), (REPOSITORY / "buildpack.toml").read_text()):
            document = tomllib.loads(text)
            assert document["buildpack"]["sbom-formats"] == [MEDIA_TYPE]
            major, minor = map(int, document["api"].split("."))
            assert (major, minor) >= (0, 7)
