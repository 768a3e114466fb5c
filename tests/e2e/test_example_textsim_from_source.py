"""examples/textsim-from-source: textsim's pins, numpy and scipy built from source with OpenBLAS."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.apps import cli

from wheelbarrow.app.config import read_build_config
from wheelbarrow.app.requirements_file import parse_requirements_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "textsim-from-source"
TEXTSIM = REPO / "examples" / "textsim"


def pins(app: Path) -> list[str]:
    """The requirement lines of an app's requirements.txt, as strings."""
    parsed = parse_requirements_file(app / "requirements.txt")
    return sorted(str(line) for line in parsed.requirements)


class TestExampleSettings:
    def test_the_pins_are_textsims(self):
        """The example builds the same versions as examples/textsim, so the two never drift."""
        assert pins(EXAMPLE) == pins(TEXTSIM)
        assert (EXAMPLE / ".python-version").read_text() == (
            TEXTSIM / ".python-version"
        ).read_text()

    def test_numpy_and_scipy_are_built_from_source_against_openblas(self):
        """Both from source, meson told to use OpenBLAS, pkg-config checked, no BLAS an error."""
        config = read_build_config(EXAMPLE)

        assert [config.forces_source(n) for n in ("numpy", "scipy", "scikit-learn")] == [
            True,
            True,
            False,
        ]
        for name in ("numpy", "scipy"):
            settings = config.for_package(name)
            assert settings.config_settings["setup-args"] == (
                "-Dblas=openblas",
                "-Dlapack=openblas",
            )
            assert "pkg-config:openblas" in settings.system
            assert config.requires_blas(name)
        assert "gfortran" in config.for_package("scipy").system


@pytest.mark.network
class TestWithoutOpenBlas:
    def test_a_machine_without_openblas_is_told_before_anything_compiles(
        self, tmp_path, monkeypatch
    ):
        """pkg-config finds no OpenBLAS: the build stops before compiling, naming the package."""
        app = tmp_path / "app"
        shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("pylock.toml"))
        monkeypatch.setenv("PKG_CONFIG_LIBDIR", str(tmp_path / "no-pc-files"))

        result = cli("build", app, "--store", tmp_path / "store")

        assert result.code == 1, result.err
        assert (
            "error: numpy 2.3.4 needs what this machine lacks:\n"
            "    - pkg-config:openblas: apt-get install libopenblas-dev\n"
            "  scipy 1.16.2 needs what this machine lacks:\n"
            "    - pkg-config:openblas: apt-get install libopenblas-dev\n"
            "hint: install them (apt-get install libopenblas-dev), then build again; "
            "nothing was compiled\n"
        ) in result.err
        assert "Building numpy" not in result.err
