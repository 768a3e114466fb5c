"""The warm ``install``: answered from the record of the last full install, or not at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import make_c_extension_sdist, make_wheel, unpack_into
from support.apps import build_cli, make_app

# Run in a process of its own: which modules it loaded, and which processes it started, say
# whether it planned (a warm install imports no planner and runs nothing).
_PROBE = textwrap.dedent(
    """
    import json, sys
    spawned = []
    sys.addaudithook(lambda e, a: spawned.append(e) if e == "subprocess.Popen" else None)
    from wheelbarrow.cli import main
    code = main(sys.argv[1:] + ["--json"])
    planners = ("packaging", "installer", "wheelbarrow.lock", "wheelbarrow.app")
    loaded = sorted(m for m in sys.modules if m.startswith(planners))
    # Standard modules a warm install has no use for, whose import alone costs milliseconds.
    slow = ("shutil", "secrets", "random", "threading", "argparse", "hashlib", "typing")
    slow = sorted(m for m in slow if m in sys.modules)
    sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "loaded": loaded,
                                             "slow": slow, "spawned": len(spawned)}) + "\\n")
    """
)


def install(app: Path, store: Path, into: Path, *extra: str | Path, env=None) -> dict[str, Any]:
    """``install`` in a process of its own: its report, exit code, and whether it planned."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "install", app, "--store", store, "--into", into, *extra],
        capture_output=True,
        text=True,
        env=env or os.environ,
        check=False,
        timeout=300,
    )
    probe = json.loads(done.stderr.rsplit("\nPROBE ", 1)[1])
    report = json.loads(done.stdout) if probe["code"] == 0 else {"error": done.stdout}
    return report | {
        "code": probe["code"],
        "planned": bool(probe["loaded"]),
        "spawned": probe["spawned"],
        "slow_imports": probe["slow"],
        "err": done.stderr,
    }


@pytest.fixture
def built(tmp_path: Path, local_index) -> tuple[Path, Path, str]:
    """An app (alpha, and a package named by an environment variable) built: app, store, index."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "alpha", "2.0")
    index = local_index(d)
    app = make_app(tmp_path / "app", "alpha==1.0\n")
    store = tmp_path / "store"
    result = build_cli(app, store, index.url)
    assert result.code == 0, result.err
    return app, store, index.url


def warmed(app: Path, store: Path, tmp_path: Path) -> dict[str, Any]:
    """A first (full) install, then a second that must be warm; returns the second."""
    first = install(app, store, tmp_path / "first")
    assert first["code"] == 0 and first["planned"], first
    second = install(app, store, tmp_path / "second")
    assert second["code"] == 0, second
    assert not second["planned"] and second["spawned"] == 0, second
    return second


class TestWarmInstall:
    def test_the_second_install_plans_nothing_and_runs_nothing(self, tmp_path, built):
        """After one full install, the next into a new directory imports no planner and starts
        no process, and reports what the full one would."""
        app, store, _ = built
        second = warmed(app, store, tmp_path)
        assert second["status"] == "cloned" and second["layout"] == "shared"
        first = json.loads((tmp_path / "first" / ".wheelbarrow-env.json").read_text())
        assert second["env_key"] == first["env_key"]
        assert second["packages"] == 1
        assert second["slow_imports"] == []
        done = subprocess.run(
            [
                tmp_path / "second" / "bin" / "python",
                "-c",
                "import alpha; print(alpha.__version__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == "1.0"

    def test_a_warm_install_into_the_same_directory_is_up_to_date(self, tmp_path, built):
        """The record answers "up to date" too, without planning."""
        app, store, _ = built
        warmed(app, store, tmp_path)
        again = install(app, store, tmp_path / "second")
        assert again["status"] == "up-to-date" and not again["planned"], again

    def test_bytes_unchanged_keep_it_warm(self, tmp_path, built):
        """Rewriting the requirements with the same bytes (a new mtime) changes nothing."""
        app, store, _ = built
        warmed(app, store, tmp_path)
        (app / "requirements.txt").write_text((app / "requirements.txt").read_text())
        assert not install(app, store, tmp_path / "third")["planned"]

    def test_edited_requirements_are_refused_as_the_full_install_refuses_them(
        self, tmp_path, built
    ):
        """A changed input takes the full path, which finds the lock out of date."""
        app, store, _ = built
        warmed(app, store, tmp_path)
        (app / "requirements.txt").write_text("alpha==2.0\n")
        third = install(app, store, tmp_path / "third")
        assert third["code"] == 2 and third["planned"]
        assert "pylock.toml: out of date" in third["err"]

    def test_a_file_added_to_the_app_takes_the_full_path_once(self, tmp_path, built):
        """A new file in the app's directory may change the plan (another manager's lock):
        the full install runs and records again, then installs are warm."""
        app, store, _ = built
        warmed(app, store, tmp_path)
        (app / "notes.txt").write_text("hello\n")
        assert install(app, store, tmp_path / "third")["planned"]
        assert not install(app, store, tmp_path / "fourth")["planned"]

    def test_a_variable_the_requirements_use_is_an_input(self, tmp_path, local_index):
        """${VAR} in requirements.txt: a new value takes the full path, whose lock is stale."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        make_wheel(d, "alpha", "2.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha==${ALPHA_VERSION}\n")
        store = tmp_path / "store"
        env = {**os.environ, "ALPHA_VERSION": "1.0"}
        done = subprocess.run(
            [sys.executable, "-m", "wheelbarrow", "build", app, "--store", store,
             "--index-url", index.url, "--platform", "manylinux_2_28_x86_64"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert install(app, store, tmp_path / "one", env=env)["planned"]
        assert not install(app, store, tmp_path / "two", env=env)["planned"]
        other = install(app, store, tmp_path / "three", env={**env, "ALPHA_VERSION": "2.0"})
        assert other["planned"] and other["code"] == 2, other

    def test_a_wheelhouse_gone_is_said_by_the_full_install(self, tmp_path, built):
        """With the wheelhouse removed, the record does not answer; the full install says to
        build."""
        app, store, _ = built
        warmed(app, store, tmp_path)
        for house in (store / "wheelhouses").iterdir():
            (house / "wheelhouse.json").unlink()
        third = install(app, store, tmp_path / "third")
        assert third["code"] == 1 and "no wheelhouse for" in third["err"]

    def test_a_stored_environment_gone_is_made_again(self, tmp_path, built):
        """With the stored environment removed, the full install makes it again."""
        app, store, _ = built
        warmed(app, store, tmp_path)
        for env in (store / "envs").iterdir():
            subprocess.run(["rm", "-rf", env], check=True)
        third = install(app, store, tmp_path / "third")
        assert third["status"] == "built-and-cloned" and third["planned"]


class TestInterpreterOnTheWarmPath:
    def test_a_given_interpreter_is_not_run_again_until_it_changes(self, tmp_path, built):
        """--python-executable is probed by the full install only; a changed file is probed
        again."""
        app, store, _ = built
        log = tmp_path / "runs.log"
        wrapper = tmp_path / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        wrapper.parent.mkdir()
        real = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        wrapper.write_text(f'#!/bin/sh\necho run >> {log}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
        given = ("--python-executable", wrapper)
        first = install(app, store, tmp_path / "one", *given)
        assert first["code"] == 0, first
        runs = log.read_text().count("run")
        assert runs >= 1
        second = install(app, store, tmp_path / "two", *given)
        assert not second["planned"] and log.read_text().count("run") == runs
        wrapper.write_text(wrapper.read_text() + "# changed\n")
        third = install(app, store, tmp_path / "three", *given)
        assert third["planned"] and log.read_text().count("run") > runs

    def test_an_interpreter_found_on_path_is_not_run_again(self, tmp_path, local_index):
        """An app for another Python than the running one: python3.X found on PATH is probed by
        the full install only; the warm one lstats it and starts no process."""
        other = _other_python()
        if other is None:
            pytest.skip("needs a CPython of another minor version than this one")
        short, real = other
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha==1.0\n", python=short)
        store = tmp_path / "store"
        result = build_cli(app, store, index.url)
        assert result.code == 0, result.err
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / f"python{short}").symlink_to(real)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        first = install(app, store, tmp_path / "one", env=env)
        assert first["code"] == 0 and first["spawned"] > 0, first
        second = install(app, store, tmp_path / "two", env=env)
        assert second["code"] == 0 and not second["planned"] and second["spawned"] == 0, second
        assert second["python_version"].startswith(short + ".")


def _other_python() -> tuple[str, str] | None:
    """The newest CPython 3 of another minor version than this one in pyenv's versions (3.11
    or newer, as wheelbarrow's own packaging needs): (3.X, path)."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = {}
    for candidate in versions.glob("3.*/bin/python3.*"):
        minor = candidate.name.removeprefix("python3.")
        if minor.isdigit() and int(minor) >= 11 and int(minor) != sys.version_info.minor:
            found[int(minor)] = os.path.realpath(candidate)
    if not found:
        return None
    newest = max(found)
    return f"3.{newest}", found[newest]


class TestAnEditedLocalProject:
    def test_an_edited_local_package_is_refused_until_built_again(self, tmp_path):
        """A local project (./localpkg, locked by its path) edited after the build: the
        install names it and asks for a build instead of installing the old code, warm or
        not; after the build, the install has the edit."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("./localpkg\n")
        sdist = make_c_extension_sdist(tmp_path / "d", "localpkg", "2.5")
        unpack_into(sdist, app / "localpkg")
        store = tmp_path / "store"
        build = [sys.executable, "-m", "wheelbarrow", "build", app, "--store", store, "--no-index"]
        subprocess.run(build, check=True, capture_output=True, timeout=300)
        assert install(app, store, tmp_path / "first")["code"] == 0
        init = app / "localpkg" / "localpkg" / "__init__.py"
        init.write_text(init.read_text() + "\nEDITED = True\n")

        refused = install(app, store, tmp_path / "second")

        assert refused["code"] != 0, refused
        assert "localpkg" in refused["error"] and "edited since the last build" in refused["error"]
        assert "wheelbarrow build" in refused["error"]
        subprocess.run(build, check=True, capture_output=True, timeout=300)
        assert install(app, store, tmp_path / "third")["code"] == 0
        done = subprocess.run(
            [
                tmp_path / "third" / "bin" / "python",
                "-c",
                "import localpkg; print(localpkg.EDITED)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == "True"
