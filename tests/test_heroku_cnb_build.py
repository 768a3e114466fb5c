"""The CNB bin/build, run the way the lifecycle runs it: CNB_* variables, layers restored."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support import make_c_extension_sdist, make_wheel

from wheelbarrow.heroku.cnb_build import build
from wheelbarrow.heroku.output import HerokuReporter
from wheelbarrow.runner import run_subprocess

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def restore_like_the_lifecycle(layers: Path) -> None:
    """Between builds: every <layer>.toml stays; launch-only layers lose their contents."""
    for toml in layers.glob("*.toml"):
        if toml.name in ("launch.toml", "build.toml", "store.toml"):
            continue
        types = tomllib.loads(toml.read_text()).get("types", {})
        layer = layers / toml.stem
        if types.get("launch") and not types.get("cache") and layer.is_dir():
            shutil.rmtree(layer)
    (layers / "launch.toml").unlink(missing_ok=True)


@pytest.fixture
def lifecycle(tmp_path: Path, local_index):
    """An app dir, a layers dir, a platform dir whose env/ points at a local index."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "alpha", "2.0")
    index = local_index(d)
    app = tmp_path / "workspace"
    app.mkdir()
    (app / "requirements.txt").write_text("alpha==1.0\n")
    (app / ".python-version").write_text(HOST_PYTHON + "\n")
    (app / "Procfile").write_text("web: python -c 'import alpha; print(alpha.__version__)'\n")
    platform = tmp_path / "platform"
    (platform / "env").mkdir(parents=True)
    (platform / "env" / "WHEELBARROW_INDEX_URL").write_text(index.url)
    return app, tmp_path / "layers", platform


def run_build(app: Path, layers: Path, platform: Path) -> str:
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
        uv=_uv(),
        out=HerokuReporter(stream),
    )
    return stream.getvalue()


class TestCnbBuild:
    def test_layers_and_processes_are_written(self, lifecycle):
        """The venv layer is a launch layer with the env on PATH; web is the default process."""
        app, layers, platform = lifecycle
        run_build(app, layers, platform)
        venv = tomllib.loads((layers / "venv.toml").read_text())
        assert venv["types"] == {"launch": True, "build": False, "cache": False}
        assert venv["metadata"]["python"].startswith(HOST_PYTHON)
        assert (layers / "venv" / "env" / "PATH.prepend").read_text() == str(
            layers / "venv" / "bin"
        )
        store = tomllib.loads((layers / "wheels.toml").read_text())
        assert store["types"]["cache"] is True
        launch = tomllib.loads((layers / "launch.toml").read_text())
        [web] = launch["processes"]
        assert web["type"] == "web" and web["default"] is True
        out = subprocess.run(
            [layers / "venv" / "bin" / "python", "-c", "import alpha; print(alpha.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == "1.0"

    def test_unchanged_app_reuses_the_launch_layer_from_metadata_alone(self, lifecycle):
        """With only venv.toml restored, an unchanged app keeps the layer and builds nothing."""
        app, layers, platform = lifecycle
        run_build(app, layers, platform)
        restore_like_the_lifecycle(layers)
        assert not (layers / "venv").exists()
        out = run_build(app, layers, platform)
        assert "Reusing the environment layer (metadata matches)" in out
        assert "Building the wheelhouse" not in out
        # The lifecycle takes the layer from the previous image: no directory is made.
        assert not (layers / "venv").exists()

    def test_changed_pin_rebuilds_the_layer_and_says_why(self, lifecycle):
        """A new pin changes the wheelhouse key in the metadata: the layer is made again."""
        app, layers, platform = lifecycle
        run_build(app, layers, platform)
        restore_like_the_lifecycle(layers)
        (app / "requirements.txt").write_text("alpha==2.0\n")
        out = run_build(app, layers, platform)
        assert "Environment layer made (" in out and "wheelhouse key changed" in out
        assert "Store layer: reused" in out
        version = subprocess.run(
            [layers / "venv" / "bin" / "python", "-c", "import alpha; print(alpha.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert version.strip() == "2.0"

    def test_detect_script_writes_the_plan_or_fails_with_100(self, tmp_path):
        """bin/detect under the lifecycle: 0 and a plan for a Python app, 100 otherwise."""
        detect = Path(__file__).resolve().parents[1] / "bin" / "detect"
        plan = tmp_path / "plan.toml"
        app = tmp_path / "app"
        app.mkdir()
        env = {
            "PATH": "/usr/bin:/bin",
            "CNB_BUILD_PLAN_PATH": str(plan),
            "CNB_PLATFORM_DIR": str(tmp_path),
        }
        assert subprocess.run([detect], cwd=app, env=env).returncode == 100
        (app / "requirements.txt").write_text("flask\n")
        (app / ".python-version").write_text("3.12\n")
        assert subprocess.run([detect], cwd=app, env=env).returncode == 0
        parsed = tomllib.loads(plan.read_text())
        assert parsed["provides"] == [{"name": "python"}]
        assert parsed["requires"] == [{"name": "python", "metadata": {"version": "3.12"}}]


class TestCnbSourceBuilds:
    def test_an_sdist_only_package_and_a_local_path_are_built_into_the_layer(
        self, tmp_path, local_index
    ):
        """bin/build builds what has no wheel, as `wheelbarrow build` does; the layer runs it."""
        import tarfile

        d = tmp_path / "dists"
        make_c_extension_sdist(d)  # cext 1.0: no wheel on the index
        index = local_index(d)
        app = tmp_path / "workspace"
        app.mkdir()
        with tarfile.open(make_c_extension_sdist(tmp_path / "local", "localpkg", "1.0")) as tar:
            tar.extractall(app, filter="data")
        (app / "requirements.txt").write_text("cext==1.0\n./localpkg-1.0\n")  # no Python pin
        platform = tmp_path / "platform"
        (platform / "env").mkdir(parents=True)
        (platform / "env" / "WHEELBARROW_INDEX_URL").write_text(index.url)
        layers = tmp_path / "layers"

        out = run_build(app, layers, platform)

        lines = out.splitlines()
        assert "       Building cext 1.0 from source" in lines
        assert "       Building localpkg 1.0 from source" in lines
        assert any(line.startswith("       Built cext 1.0 in ") for line in lines), out
        assert "Environment layer made (" in out
        done = subprocess.run(
            [
                layers / "venv" / "bin" / "python",
                "-c",
                "import cext, localpkg; print(cext.add(1, 2))",
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "3"
