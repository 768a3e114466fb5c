"""Against the real package index (network): a small lock and build for another target."""

from __future__ import annotations

import json

import pytest
from support.apps import cli, make_app

pytestmark = pytest.mark.network


class TestRealIndex:
    def test_lock_and_build_for_another_python_and_platform(self, tmp_path):
        """markupsafe for CPython 3.12 on aarch64 gets that target's binary wheel, hash-checked."""
        app = make_app(tmp_path / "app", "markupsafe==3.0.2\n", python="3.12")
        result = cli(
            "build",
            app,
            "--store",
            tmp_path / "store",
            "--platform",
            "manylinux_2_28_aarch64",
            "--json",
        )
        assert result.code == 0, result.err
        report = json.loads(result.out)
        assert report["target"] == {"python": "3.12", "platform": "manylinux_2_28_aarch64"}
        [wheel] = report["fetched"]
        assert wheel.lower().startswith("markupsafe-3.0.2-cp312-cp312-")
        assert "aarch64" in wheel

    def test_unknown_package_on_the_real_index(self, tmp_path):
        """A name nobody published is a lock error that names it."""
        app = make_app(tmp_path / "app", "wheelbarrow-no-such-package-xyz==1.0\n")
        result = cli("lock", app)
        assert result.code == 1
        assert "wheelbarrow-no-such-package-xyz" in result.err


class TestRealSourceBuild:
    def test_c_extension_from_its_sdist_with_no_binary(self, tmp_path):
        """markupsafe built from its sdist (setuptools from the index), repaired, imported."""
        import subprocess

        app = make_app(tmp_path / "app", "markupsafe==3.0.2\n")
        store = tmp_path / "store"
        result = cli("build", app, "--store", store, "--no-binary", "markupsafe", "--json")
        assert result.code == 0, result.err
        report = json.loads(result.out)
        [built] = report["built"]
        assert built["name"] == "markupsafe" and built["repair"].startswith("repaired to manylinux")
        assert "Building markupsafe 3.0.2 from source" in result.err
        install = cli("install", app, "--store", store, "--into", tmp_path / "env")
        assert install.code == 0, install.err
        check = subprocess.run(
            [
                tmp_path / "env" / "bin" / "python",
                "-c",
                "import markupsafe._speedups as s; print(s.__file__)",
            ],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
        assert ".so" in check.stdout
