"""What the platform does: compile in a build container, run the slug at /app in another.

The build container is a debootstrapped Debian with python3 (the "stack"); the
buildpack is this repository, mounted read-only. The index the containers use is
served from this machine on 127.0.0.1: the app's wheels, one alternative pin, and
wheelbarrow's own dependencies (for the tool venv the buildpack keeps in the cache).
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from support import make_build_helper_sdist
from support.apps import cli
from support.containers import Podman
from support.net import wait_for_json

from wheelbarrow.share.serve import make_server
from wheelbarrow.wheelhouse.index import index_files_in, write_index

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "textsim"
pytestmark = [pytest.mark.container, pytest.mark.network, pytest.mark.slow]


@dataclass
class Platform:
    podman: Podman
    image: str
    index_url: str
    build: Path
    cache: Path
    env: Path
    timings: dict[str, float] = field(default_factory=dict)

    def compile(self, label: str) -> str:
        """detect + compile + release in a build container; returns the output."""
        start = time.monotonic()
        done = self.podman.container(
            self.image,
            [
                "bash",
                "-c",
                "/buildpack/bin/detect /tmp/build_a1b2 && "
                "/buildpack/bin/compile /tmp/build_a1b2 /tmp/cache /tmp/env && "
                "echo '--- release' && /buildpack/bin/release /tmp/build_a1b2",
            ],
            volumes={
                REPO: "/buildpack:ro",
                self.build: "/tmp/build_a1b2",
                self.cache: "/tmp/cache",
                self.env: "/tmp/env",
            },
            env={"STACK": "bookworm-test"},
        )
        self.timings[label] = time.monotonic() - start
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        return output


def _tool_requirements() -> str:
    """wheelbarrow's dependencies and its build backend, for the tool venv in the container."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = [d.split(";")[0].strip() for d in project["project"]["dependencies"]]
    return "\n".join([*deps, *project["build-system"]["requires"]]) + "\n"


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, debian_base: tuple[Podman, str]
) -> Iterator[Platform]:
    """A served index, the base image, and the directories of one app's builds."""
    root = tmp_path_factory.mktemp("platform")
    podman, image = debian_base
    store = root / "store"
    wheels = root / "index"
    wheels.mkdir()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name, requirements in (
        ("textsim", (EXAMPLE / "requirements.txt").read_text()),
        (
            "textsim-next",
            (EXAMPLE / "requirements.txt").read_text().replace("flask==3.1.2", "flask==3.1.1"),
        ),
        ("tool", _tool_requirements()),
    ):
        app = root / name
        app.mkdir()
        (app / "requirements.txt").write_text(requirements)
        (app / ".python-version").write_text(python + "\n")
        result = cli("build", app, "--store", store, "--output", root / f"{name}-wheels")
        assert result.code == 0, result.err
        for wheel in (root / f"{name}-wheels").glob("*.whl"):
            shutil.copyfile(wheel, wheels / wheel.name)
    make_build_helper_sdist(wheels, "sdistonly", "1.0")  # no wheel: compile builds it
    write_index(index_files_in(wheels), wheels / "simple")
    build = root / "build"
    shutil.copytree(EXAMPLE, build, ignore=shutil.ignore_patterns("pylock.toml", "__pycache__"))
    (build / ".python-version").write_text(python + "\n")
    env = root / "env"
    env.mkdir()
    cache = root / "cache"
    cache.mkdir()
    with make_server(wheels) as server:
        (env / "WHEELBARROW_INDEX_URL").write_text(server.simple_url)
        (env / "WHEELBARROW_TOOL_INDEX_URL").write_text(server.simple_url)
        yield Platform(
            podman=podman,
            image=image,
            index_url=server.simple_url,
            build=build,
            cache=cache,
            env=env,
        )


class TestPlatform:
    def test_first_compile_builds_the_slug(self, platform):
        """detect passes, compile provides the stack's Python and installs the environment."""
        out = platform.compile("first compile")
        assert "Python (wheelbarrow)" in out
        assert "-----> No build cache yet" in out
        assert "-----> Using Python 3.11" in out
        assert "-----> Slug: " in out
        assert "--- release" in out
        print(
            "\n"
            + "\n".join(line for line in out.splitlines() if "Slug" in line or "stripped" in line)
        )
        assert (platform.build / ".heroku" / "venv" / "bin" / "gunicorn").is_file()

    def test_slug_answers_a_request_at_app_in_a_run_container(self, platform):
        """The slug mounted at /app, .profile.d sourced, the Procfile's web process answers."""
        web = next(
            line.split(":", 1)[1].strip()
            for line in (platform.build / "Procfile").read_text().splitlines()
            if line.startswith("web:")
        )
        podman = platform.podman
        with podman.serving(
            platform.image,
            "bash",
            "-c",
            f'for f in .profile.d/*.sh; do . "$f"; done; exec {web}',
            options=["-v", f"{platform.build}:/app", "-w", "/app", "-e", "HOME=/app"],
        ) as port:
            answer = wait_for_json(
                f"http://127.0.0.1:{port}/similarity",
                payload={"texts": ["the cat sat", "the cat sat", "dogs bark"]},
                timeout=60,
                diagnose=lambda: podman.logs(port),
            )
        assert answer["similarity"][0][1] == pytest.approx(1.0)
        assert answer["similarity"][0][2] == pytest.approx(0.0)

    def test_second_compile_reuses_the_cache(self, platform):
        """Unchanged requirements: the cache is restored, nothing downloaded or installed."""
        shutil.rmtree(platform.build / ".heroku")
        out = platform.compile("second compile")
        assert "-----> Restoring the build cache" in out
        assert "nothing to download" in out
        assert "reusing the environment from the cache" in out
        # How much faster is a figure for the closing note, not a timed assertion.
        print(f"\ncompile times so far: {platform.timings}")

    def test_changing_one_pin_reinstalls_only_that(self, platform):
        """flask 3.1.2 -> 3.1.1: one wheel fetched, the environment derived, the rest kept."""
        requirements = platform.build / "requirements.txt"
        requirements.write_text(requirements.read_text().replace("flask==3.1.2", "flask==3.1.1"))
        out = platform.compile("pin change")
        assert "changed: flask 3.1.2 -> 3.1.1" in out
        assert "1 wheel in, 1 out, 14 kept" in out

    def test_changing_the_python_version_drops_the_cache(self, platform):
        """Pinning the stack's full version is a different Python pin: the cache goes, with why."""
        (platform.build / ".python-version").write_text("3.11.2\n")
        out = platform.compile("python change")
        assert "-----> Dropping the build cache: the Python version changed" in out
        print(f"\nplatform timings: {platform.timings}")


class TestCloudNativeBuildpack:
    def test_detect_and_build_under_lifecycle_variables(self, platform, tmp_path):
        """bin/detect then bin/build with CNB_* set; a second build reuses the venv layer."""
        app = tmp_path / "workspace"
        shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("pylock.toml", "__pycache__"))
        (app / ".python-version").write_text((platform.build / ".python-version").read_text())
        layers = tmp_path / "layers"
        layers.mkdir()
        platform_dir = tmp_path / "platform"
        shutil.copytree(platform.env, platform_dir / "env")
        script = (
            "set -e; /cnb/buildpack/bin/detect; echo detect=ok; cat /layers/plan.toml; "
            "/cnb/buildpack/bin/build"
        )
        env = {
            "CNB_LAYERS_DIR": "/layers/wheelbarrow_python",
            "CNB_PLATFORM_DIR": "/platform",
            "CNB_BUILD_PLAN_PATH": "/layers/plan.toml",
            "CNB_BP_PLAN_PATH": "/layers/plan.toml",
            "CNB_BUILDPACK_DIR": "/cnb/buildpack",
        }
        (layers / "wheelbarrow_python").mkdir()

        def build() -> str:
            done = platform.podman.container(
                platform.image,
                ["bash", "-c", script],
                volumes={
                    REPO: "/cnb/buildpack:ro",
                    app: "/workspace",
                    layers: "/layers",
                    platform_dir: "/platform",
                },
                env=env,
                workdir="/workspace",
            )
            output = done.stdout + done.stderr
            assert done.returncode == 0, output
            return output

        first = build()
        assert "detect=ok" in first and 'name = "python"' in first
        assert "Environment layer made (no previous layer)" in first
        bp_layers = layers / "wheelbarrow_python"
        launch = tomllib.loads((bp_layers / "launch.toml").read_text())
        assert launch["processes"][0]["type"] == "web"
        # What the lifecycle does between builds: launch-only layers keep only their toml.
        shutil.rmtree(bp_layers / "venv")
        second = build()
        assert "Reusing the environment layer (metadata matches)" in second
        assert not (bp_layers / "venv").exists()


class TestPlatformSourceBuilds:
    def test_compile_builds_an_sdist_only_package_and_a_local_path(self, platform, tmp_path):
        """In the build container an sdist-only package and a local path package are built
        from source (pure Python: the stack image has no compiler), and the slug imports both."""
        build = tmp_path / "build"
        build.mkdir()
        with tarfile.open(make_build_helper_sdist(tmp_path / "local", "localpkg", "2.0")) as tar:
            tar.extractall(build, filter="data")
        (build / "requirements.txt").write_text("sdistonly==1.0\n./localpkg-2.0\n")  # no pin
        cache = tmp_path / "cache"
        cache.mkdir()
        out = replace(platform, build=build, cache=cache).compile("source builds")
        lines = out.splitlines()
        assert "       Building sdistonly 1.0 from source" in lines
        assert "       Building localpkg 2.0 from source" in lines
        assert any(line.startswith("       Built localpkg 2.0 in ") for line in lines), out
        done = platform.podman.container(
            platform.image,
            [
                "/app/.heroku/venv/bin/python",
                "-c",
                "import sdistonly, localpkg; print(sdistonly.__version__, localpkg.__version__)",
            ],
            volumes={build: "/app"},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.split() == ["1.0", "2.0"]
