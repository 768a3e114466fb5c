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
from support.heroku import restore_like_the_lifecycle

from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.ship.heroku.cnb_build import build
from wheelbarrow.ship.heroku.output import HerokuReporter

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


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


def run_build(app: Path, layers: Path, platform: Path, *, arch: str | None = None) -> str:
    """bin/build's work as the lifecycle runs it; returns what it printed."""
    layers.mkdir(exist_ok=True)
    stream = io.StringIO()
    build(
        app,
        layers_dir=layers,
        platform_dir=platform,
        plan_path=None,
        environ={"PATH": "/usr/bin:/bin", **({"CNB_TARGET_ARCH": arch} if arch else {})},
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
        detect = Path(__file__).resolve().parents[3] / "bin" / "detect"
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


FLASK_APP = "from flask import Flask\n\napp = Flask(__name__)\n"
# A stand-in gunicorn: its console script prints the arguments it was started with.
FAKE_GUNICORN = "import sys\n\ndef main():\n    print(' '.join(sys.argv[1:]))\n"


@pytest.fixture
def webapp(tmp_path: Path, local_index):
    """A Flask-style app.py with no Procfile, and an index holding a stand-in gunicorn."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(
        d,
        "gunicorn",
        "23.0",
        files={"gunicorn/__init__.py": FAKE_GUNICORN},
        entry_points={"gunicorn": "gunicorn:main"},
    )
    index = local_index(d)
    app = tmp_path / "workspace"
    app.mkdir()
    (app / "app.py").write_text(FLASK_APP)
    (app / ".python-version").write_text(HOST_PYTHON + "\n")
    platform = tmp_path / "platform"
    (platform / "env").mkdir(parents=True)
    (platform / "env" / "WHEELBARROW_INDEX_URL").write_text(index.url)
    return app, tmp_path / "layers", platform


class TestCnbLifecycle:
    def test_a_new_wheelbarrow_version_remakes_the_environment_layer(self, lifecycle):
        """The layers record wheelbarrow's version: another version's venv layer is not reused."""
        app, layers, platform = lifecycle
        run_build(app, layers, platform)
        venv_toml = layers / "venv.toml"
        from wheelbarrow import __version__

        assert tomllib.loads(venv_toml.read_text())["metadata"]["wheelbarrow"] == __version__
        venv_toml.write_text(venv_toml.read_text().replace(__version__, "0.0.1"))
        restore_like_the_lifecycle(layers)
        out = run_build(app, layers, platform)
        assert f"Environment layer made (wheelbarrow changed: 0.0.1 -> {__version__})" in out

    def test_a_detected_web_process_starts_without_port(self, webapp):
        """The detected gunicorn command binds 8080 where the platform sets no PORT."""
        app, layers, platform = webapp
        (app / "requirements.txt").write_text("gunicorn==23.0\n")
        run_build(app, layers, platform)
        [web] = tomllib.loads((layers / "launch.toml").read_text())["processes"]
        assert web["command"] == ["bash", "-c", "gunicorn --bind 0.0.0.0:${PORT:-8080} app:app"]
        env = {"PATH": f"{layers / 'venv' / 'bin'}:/usr/bin:/bin"}
        done = subprocess.run(web["command"], env=env, capture_output=True, text=True)
        assert done.stdout.strip() == "--bind 0.0.0.0:8080 app:app", done.stderr
        done = subprocess.run(
            web["command"], env={**env, "PORT": "5000"}, capture_output=True, text=True
        )
        assert done.stdout.strip() == "--bind 0.0.0.0:5000 app:app", done.stderr

    def test_a_detected_server_missing_from_the_requirements_fails_the_build(self, webapp):
        """No gunicorn in the requirements: the build fails naming it, before any layer is made."""
        from wheelbarrow._core.errors import InputError

        app, layers, platform = webapp
        (app / "requirements.txt").write_text("alpha==1.0\n")
        with pytest.raises(InputError) as caught:
            run_build(app, layers, platform)
        assert caught.value.message == (
            f"{app}: the web process found for app:app (WSGI) runs "
            "'gunicorn --bind 0.0.0.0:$PORT app:app', but gunicorn is not among the app's "
            "requirements"
        )
        assert caught.value.hint == (
            "add gunicorn to requirements.txt, or write a Procfile saying how to serve the app"
        )
        assert not (layers / "venv").exists()

    def test_a_procfile_server_missing_from_the_requirements_names_the_line(self, webapp):
        """A Procfile process running uvicorn without it: the error names the file and line."""
        from wheelbarrow._core.errors import InputError

        app, layers, platform = webapp
        (app / "requirements.txt").write_text("gunicorn==23.0\n")
        (app / "Procfile").write_text("# processes\nweb: exec uvicorn app:app --port $PORT\n")
        with pytest.raises(InputError) as caught:
            run_build(app, layers, platform)
        assert caught.value.message.startswith(
            f"{app / 'Procfile'}:2: the web process runs uvicorn, but uvicorn is not among the "
            "app's requirements"
        )
        assert caught.value.hint == "add uvicorn to requirements.txt"

    def test_runtime_layer_records_sha256_and_arch_and_stays_free_of_bytecode(
        self, lifecycle, tmp_path
    ):
        """A configured tarball's layer metadata holds its sha256 and the target arch; a reused
        layer is probed without writing bytecode into it."""
        import hashlib

        from support.runtimes import make_standalone_python

        app, layers, platform = lifecycle
        tarball = make_standalone_python(tmp_path / "tarballs")
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        (platform / "env" / "WHEELBARROW_PYTHON_TARBALL").write_text(str(tarball))
        (platform / "env" / "WHEELBARROW_PYTHON_SHA256").write_text(digest)
        run_build(app, layers, platform, arch="amd64")
        metadata = tomllib.loads((layers / "runtime.toml").read_text())["metadata"]
        assert (metadata["sha256"], metadata["arch"]) == (digest, "x86_64")
        for cache in (layers / "runtime").rglob("__pycache__"):
            shutil.rmtree(cache)
        restore_like_the_lifecycle(layers)
        out = run_build(app, layers, platform, arch="amd64")
        assert "Runtime layer: reused (metadata matches)" in out
        assert sorted((layers / "runtime").rglob("*.pyc")) == []

    def test_the_arch_placeholder_follows_cnb_target_arch(self, lifecycle):
        """{arch} in WHEELBARROW_PYTHON_URL is aarch64 when CNB_TARGET_ARCH is arm64."""
        from wheelbarrow._core.errors import PythonRuntimeError

        app, layers, platform = lifecycle
        (platform / "env" / "WHEELBARROW_PYTHON_URL").write_text(
            f"file://{platform}/cpython-{{version}}-{{arch}}.tar.gz"
        )
        with pytest.raises(PythonRuntimeError, match=r"-aarch64\.tar\.gz, which is not a file"):
            run_build(app, layers, platform, arch="arm64")


class TestCnbDetect:
    DETECT = Path(__file__).resolve().parents[3] / "bin" / "detect"

    def detect(self, app: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "CNB_BUILD_PLAN_PATH": str(tmp_path / "plan.toml"),
            "CNB_PLATFORM_DIR": str(tmp_path),
        }
        return subprocess.run([self.DETECT], cwd=app, env=env, capture_output=True, text=True)

    @pytest.mark.parametrize(
        ("files", "why"),
        [
            ({"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}, "pyproject.toml has no "),
            ({"Pipfile": "[packages]\n"}, "a Pipfile without Pipfile.lock pins nothing"),
            ({"requirement.txt": "flask\n"}, "found 'requirement.txt': did you mean"),
            (
                {"pyproject.toml": "[tool.poetry.dependencies]\npython = '^3.12'\nsix = '*'\n"},
                "a Poetry project without poetry.lock",
            ),
        ],
    )
    def test_near_misses_fail_saying_why(self, tmp_path, files, why):
        """What wheelbarrow cannot build fails detect (100) with the reason on stderr."""
        app = tmp_path / "app"
        app.mkdir()
        for name, text in files.items():
            (app / name).write_text(text)
        done = self.detect(app, tmp_path)
        assert done.returncode == 100
        assert done.stderr.startswith(f"wheelbarrow: not building this app: {why}"), done.stderr
        assert not (tmp_path / "plan.toml").exists()

    @pytest.mark.parametrize(
        "files",
        [
            {"uv.lock": "version = 1\n", "pyproject.toml": "[project]\nname = 'a'\n"},
            {"poetry.lock": "", "pyproject.toml": "[tool.poetry]\nname = 'a'\n"},
            {"Pipfile": "[packages]\n", "Pipfile.lock": "{}"},
            {"pyproject.toml": "[project]\nname = 'a'\ndependencies = []\n"},
        ],
    )
    def test_apps_of_every_manager_pass(self, tmp_path, files):
        """uv.lock, poetry.lock, Pipfile with its lock and [project] dependencies pass."""
        app = tmp_path / "app"
        app.mkdir()
        for name, text in files.items():
            (app / name).write_text(text)
        done = self.detect(app, tmp_path)
        assert done.returncode == 0, done.stderr
        assert tomllib.loads((tmp_path / "plan.toml").read_text())["provides"] == [
            {"name": "python"}
        ]
