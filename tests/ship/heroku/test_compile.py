"""bin/compile's work, run in-process on this machine against a local index."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import make_c_extension_sdist, make_wheel
from support.heroku import HOST_PYTHON, compile_


@pytest.fixture
def platform(tmp_path: Path, local_index):
    """An app, a cache and an ENV_DIR pointing at a local index: (build, cache, env, slug_home)."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "alpha", "2.0")
    make_wheel(
        d,
        "webapp",
        "1.0",
        requires=["alpha"],
        files={"webapp/__init__.py": "def main():\n    print('served')\n"},
        entry_points={"webapp": "webapp:main"},
    )
    index = local_index(d)
    build = tmp_path / "build_1234"
    build.mkdir()
    (build / "requirements.txt").write_text("webapp==1.0\nalpha==1.0\n")
    (build / ".python-version").write_text(HOST_PYTHON + "\n")
    (build / "Procfile").write_text("web: webapp\n")
    env = tmp_path / "env"
    env.mkdir()
    (env / "WHEELBARROW_INDEX_URL").write_text(index.url)
    return build, tmp_path / "cache", env, tmp_path / "app"


class TestCompile:
    def test_slug_runs_after_moving_to_the_slug_home(self, platform, tmp_path):
        """The compiled slug, moved from the build dir to the app dir, runs its scripts."""
        build, cache, env, slug_home = platform
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert "-----> Building the wheelhouse" in out
        assert "-----> Slug: " in out
        assert (build / ".profile.d" / "wheelbarrow.sh").is_file()
        # The platform moves the slug: drop the build-time link, move the tree in.
        (slug_home / ".heroku").unlink()
        slug_home.rmdir()
        shutil.move(build, slug_home)
        script = (
            f"cd {slug_home} && export HOME={slug_home} && . ./.profile.d/wheelbarrow.sh && "
            "webapp && python -c 'import alpha; print(alpha.__version__)'"
        )
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["served", "1.0"]

    def test_second_compile_reuses_the_cache_and_says_so(self, platform):
        """Unchanged requirements: the cache is restored and nothing is downloaded or installed."""
        build, cache, env, slug_home = platform
        assert compile_(build, cache, env, slug_home)[0] == 0
        shutil.rmtree(build / ".heroku")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert "-----> Restoring the build cache (same stack, Python" in out
        assert "nothing to download" in out
        assert "reusing the environment from the cache" in out

    def test_a_cached_environment_edited_in_place_is_rebuilt(self, platform):
        """An edit inside the cached store environment is caught by its seal: the next compile
        rebuilds it instead of shipping the edited file."""
        build, cache, env, slug_home = platform
        assert compile_(build, cache, env, slug_home)[0] == 0
        [stored] = list(cache.rglob("envs/*/lib/python*/site-packages/alpha/__init__.py"))
        with stored.open("a") as f:
            f.write("raise SystemExit('edited in place')\n")
        shutil.rmtree(build / ".heroku")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert "reusing the environment from the cache" not in out
        assert "edited in place" in out
        [shipped] = list((build / ".heroku").rglob("site-packages/alpha/__init__.py"))
        assert "edited in place" not in shipped.read_text()

    def test_changing_one_pin_reinstalls_only_that_package(self, platform):
        """A new pin fetches one wheel and derives the environment, keeping the rest."""
        build, cache, env, slug_home = platform
        assert compile_(build, cache, env, slug_home)[0] == 0
        (build / "requirements.txt").write_text("webapp==1.0\nalpha==2.0\n")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert "1 fetched" in out and "changed: alpha 1.0 -> 2.0" in out
        assert "1 wheel in, 1 out, 1 kept" in out

    def test_changing_the_python_version_drops_the_cache_and_says_why(self, platform):
        """A different Python pin empties the cache, naming the change."""
        build, cache, env, slug_home = platform
        assert compile_(build, cache, env, slug_home)[0] == 0
        full = ".".join(map(str, sys.version_info[:3]))
        (build / ".python-version").write_text(full + "\n")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert (
            f"-----> Dropping the build cache: the Python version changed ({HOST_PYTHON} -> {full})"
        ) in out

    def test_hooks_run_with_the_config_vars(self, platform):
        """bin/pre_compile and bin/post_compile run, the latter with the environment on PATH."""
        build, cache, env, slug_home = platform
        (env / "GREETING").write_text("hi")
        (build / "bin").mkdir()
        (build / "bin" / "pre_compile").write_text('echo "pre $GREETING"\n')
        (build / "bin" / "post_compile").write_text("webapp\n")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert "-----> Running bin/pre_compile\n       pre hi" in out
        assert "-----> Running bin/post_compile\n       served" in out


class TestCompileStrip:
    def test_test_suites_are_never_copied_into_the_slug(self, tmp_path, local_index):
        """A package's test suite stays in the cached store's environment and never reaches
        the slug (bin/post_compile, which runs before the strip, does not see it), and the
        strip still reports it; the slug's seal does not list it; the second compile too."""
        d = tmp_path / "dists"
        make_wheel(
            d,
            "suite",
            "1.0",
            files={
                "suite/__init__.py": "",
                "suite/tests/__init__.py": "",
                "suite/tests/test_it.py": "def test(): pass\n",
            },
        )
        index = local_index(d)
        build = tmp_path / "build_1234"
        (build / "bin").mkdir(parents=True)
        (build / "requirements.txt").write_text("suite==1.0\n")
        (build / ".python-version").write_text(HOST_PYTHON + "\n")
        (build / "bin" / "post_compile").write_text(
            "ls .heroku/venv/lib/python*/site-packages/suite\n"
        )
        env, cache = tmp_path / "env", tmp_path / "cache"
        env.mkdir()
        (env / "WHEELBARROW_INDEX_URL").write_text(index.url)
        for _ in range(2):
            shutil.rmtree(build / ".heroku", ignore_errors=True)
            code, out = compile_(build, cache, env, tmp_path / "app")
            assert code == 0, out
            hook = out.split("-----> Running bin/post_compile\n")[1].split("----->")[0]
            assert hook.split() == ["__init__.py", "__pycache__"]
            assert "       stripped 4 files" in out  # two sources and their bytecode
            [site] = (build / ".heroku" / "venv").glob("lib/python*/site-packages")
            assert (site / "suite" / "__init__.py").is_file()
            assert not (site / "suite" / "tests").exists()
            seal = (build / ".heroku" / "venv" / ".wheelbarrow-seal").read_text()
            assert "suite/__init__.py" in seal and "suite/tests" not in seal
            [stored] = cache.rglob("envs/*/lib/python*/site-packages/suite/tests/test_it.py")
            assert stored.is_file()


def unpack_sdist(sdist: Path, into: Path) -> Path:
    """A project directory made from a fixture sdist (a local path package)."""
    import tarfile

    with tarfile.open(sdist) as tar:
        tar.extractall(into, filter="data")
    return into / sdist.name.removesuffix(".tar.gz")


@pytest.fixture
def source_app(tmp_path: Path, local_index):
    """An app needing an sdist-only C extension and a local path package, with no Python pin."""
    d = tmp_path / "dists"
    make_c_extension_sdist(d)  # cext 1.0: no wheel on the index
    index = local_index(d)
    build = tmp_path / "build_5678"
    build.mkdir()
    unpack_sdist(make_c_extension_sdist(tmp_path / "local", "localpkg", "1.0"), build)
    (build / "requirements.txt").write_text("cext==1.0\n./localpkg-1.0\n")
    env = tmp_path / "env"
    env.mkdir()
    (env / "WHEELBARROW_INDEX_URL").write_text(index.url)
    return build, tmp_path / "cache", env, tmp_path / "app"


class TestCompileSourceBuilds:
    def test_an_sdist_only_package_and_a_local_path_are_built_from_source(self, source_app):
        """bin/compile builds what has no wheel as `wheelbarrow build` does; the slug runs it."""
        build, cache, env, slug_home = source_app
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        lines = out.splitlines()
        assert "       Building cext 1.0 from source" in lines
        assert "       Building localpkg 1.0 from source" in lines
        assert any(line.startswith("       Built cext 1.0 in ") for line in lines), out
        assert any(line.startswith("       Built localpkg 1.0 in ") for line in lines), out
        assert ", 2 built from source" in out
        python = build / ".heroku" / "venv" / "bin" / "python"
        done = subprocess.run(
            [python, "-c", "import cext, localpkg; print(cext.add(2, 3), localpkg.add(20, 22))"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["5", "42"]

    def test_the_second_compile_takes_both_from_the_build_cache(self, source_app):
        """Unchanged sources are not built again: the wheelhouse is in the cache."""
        build, cache, env, slug_home = source_app
        assert compile_(build, cache, env, slug_home)[0] == 0
        shutil.rmtree(build / ".heroku")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert "from source" not in out
        assert "nothing to download" in out


class TestCompileErrors:
    def _fails(self, build: Path, cache: Path, env: Path, slug_home: Path) -> str:
        code, out = compile_(build, cache, env, slug_home)
        assert code != 0
        return out

    def test_no_requirements_at_all(self, platform):
        """An app without requirements ends with a ` !     ` message saying what to add."""
        build, cache, env, slug_home = platform
        (build / "requirements.txt").unlink()
        out = self._fails(build, cache, env, slug_home)
        assert " !     " in out and "nothing says what the app needs" in out

    def test_misspelled_requirements_file(self, platform):
        """requirement.txt is pointed out."""
        build, cache, env, slug_home = platform
        (build / "requirements.txt").rename(build / "requirement.txt")
        out = self._fails(build, cache, env, slug_home)
        assert "did you mean 'requirements.txt'" in out

    def test_unknown_python_version(self, platform):
        """A version no runtime covers is refused with the supported range."""
        build, cache, env, slug_home = platform
        (build / ".python-version").write_text("3.8\n")
        out = self._fails(build, cache, env, slug_home)
        assert " !     " in out and "3.8" in out

    def test_package_that_cannot_be_had(self, platform):
        """A requirement the index lacks fails the lock, named in the message."""
        build, cache, env, slug_home = platform
        (build / "requirements.txt").write_text("no-such-package==1.0\n")
        out = self._fails(build, cache, env, slug_home)
        assert " !     " in out and "no-such-package" in out


class TestCompileCheck:
    def test_a_console_script_that_cannot_start_fails_the_compile(self, tmp_path, local_index):
        """The environment's check, made on the stored environment while the slug's is cloned,
        fails the compile after its step line, naming the script, as it did after the clone;
        so does the next compile, from the cache."""
        d = tmp_path / "dists"
        make_wheel(d, "tool", "1.0", entry_points={"tool": "tool.missing:main"})
        index = local_index(d)
        build = tmp_path / "build_1234"
        build.mkdir()
        (build / "requirements.txt").write_text("tool==1.0\n")
        (build / ".python-version").write_text(HOST_PYTHON + "\n")
        (build / "Procfile").write_text("worker: tool\n")
        env = tmp_path / "env"
        env.mkdir()
        (env / "WHEELBARROW_INDEX_URL").write_text(index.url)
        for _ in range(2):
            shutil.rmtree(build / ".heroku", ignore_errors=True)
            code, out = compile_(build, tmp_path / "cache", env, tmp_path / "app")
            assert code != 0
            step = out.index("-----> Checking the installed environment")
            assert out.index("tool.missing") > step
            assert "1 console script of the installed packages cannot start" in out


class TestCompileWebServer:
    def test_a_detected_web_app_without_gunicorn_fails_naming_it(self, platform):
        """bin/release would offer gunicorn for app.py: without it in the requirements the
        compile fails saying what to add, instead of 'gunicorn: command not found' at launch."""
        build, cache, env, slug_home = platform
        (build / "Procfile").unlink()
        (build / "app.py").write_text("from flask import Flask\n\napp = Flask(__name__)\n")
        code, out = compile_(build, cache, env, slug_home)
        assert code != 0
        assert (
            f" !     {build}: the web process found for app:app (WSGI) runs "
            "'gunicorn --bind 0.0.0.0:$PORT app:app', but gunicorn is not among the app's "
            "requirements"
        ) in out
        assert " !     Hint: add gunicorn to requirements.txt, or write a Procfile" in out


class TestCompileSbom:
    def test_the_slug_carries_its_bill_of_materials(self, platform):
        """The slug has .wheelbarrow/sbom.cdx.json: its wheels with the wheelhouse's hashes, and
        the slug's Python as the runtime, valid against the strict schema."""
        import json

        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator

        build, cache, env, slug_home = platform
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert "       wrote .wheelbarrow/sbom.cdx.json (CycloneDX 1.6)" in out
        text = (build / ".wheelbarrow" / "sbom.cdx.json").read_text()
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
        document = json.loads(text)
        assert document["metadata"]["component"]["type"] == "application"
        key = next(
            p["value"]
            for p in document["metadata"]["component"]["properties"]
            if p["name"] == "wheelbarrow:wheelhouse-key"
        )
        manifest = json.loads(
            (cache / "wheelbarrow" / "store" / "wheelhouses" / key / "wheelhouse.json").read_text()
        )
        listed = {
            c["name"]: c["hashes"][0]["content"]
            for c in document["components"]
            if c["type"] == "library"
        }
        assert listed == {w["name"]: w["sha256"] for w in manifest["wheels"]}
        assert sorted(listed) == ["alpha", "webapp"]
        (alpha,) = [c for c in document["components"] if c["name"] == "alpha"]
        assert alpha["externalReferences"][0]["url"].endswith("/alpha-1.0-py3-none-any.whl")
        (runtime,) = [c for c in document["components"] if c["type"] == "platform"]
        slug_python = build / ".heroku" / "venv" / "bin" / "python"
        version = subprocess.run(
            [slug_python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert runtime["version"] == version

    def test_a_users_file_of_that_name_is_refused_and_kept(self, platform):
        """An app that has its own .wheelbarrow/sbom.cdx.json fails before the build, naming
        it, and the file stays as it was."""
        build, cache, env, slug_home = platform
        (build / ".wheelbarrow").mkdir()
        (build / ".wheelbarrow" / "sbom.cdx.json").write_text("the user's\n")
        code, out = compile_(build, cache, env, slug_home)
        assert code != 0
        assert (
            f" !     {build}: the app has its own .wheelbarrow/sbom.cdx.json, where wheelbarrow "
            "writes the bill of materials (.wheelbarrow/sbom.cdx.json)"
        ) in out
        assert "-----> Building the wheelhouse" not in out
        assert (build / ".wheelbarrow" / "sbom.cdx.json").read_text() == "the user's\n"

    def test_a_wheelbarrow_file_where_its_directory_goes_is_refused(self, platform):
        """A file named .wheelbarrow in the app is not replaced by the directory."""
        build, cache, env, slug_home = platform
        (build / ".wheelbarrow").write_text("mine\n")
        code, out = compile_(build, cache, env, slug_home)
        assert code != 0
        assert "the app has its own .wheelbarrow, where wheelbarrow writes" in out
        assert (build / ".wheelbarrow").read_text() == "mine\n"
