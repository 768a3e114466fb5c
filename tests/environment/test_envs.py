"""`wheelbarrow install`: environments built once per wheelhouse, then cloned offline."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import make_wheel, serve_local_index
from support.apps import PLATFORM, build_cli, cli, make_app

from wheelbarrow._core.errors import InstallError
from wheelbarrow.environment.clone import clone_env, link_tree


@pytest.fixture
def built_app(tmp_path: Path, local_index) -> tuple[Path, Path]:
    """An app whose wheelhouse is built: (app dir, store dir)."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0", files={"alpha/__init__.py": "VALUE = 41 + 1\n"})
    make_wheel(
        d,
        "tool",
        "2.0",
        requires=["alpha"],
        files={"tool/__init__.py": "def main():\n    print('tool ran')\n"},
        entry_points={"tool": "tool:main"},
    )
    index = local_index(d)
    app = make_app(tmp_path / "app", "tool==2.0\n")
    store = tmp_path / "store"
    result = build_cli(app, store, index.url)
    assert result.code == 0, result.err
    index.requests.clear()
    return app, store


# These tests are about clones of the stored environment (--link-mode hardlink): the
# default, shared layout has tests of its own (test_shared.py).
CLONE = ("--link-mode", "hardlink")


def install(app: Path, store: Path, into: Path, *extra: str) -> dict[str, object]:
    mode = () if "--link-mode" in extra else CLONE
    result = cli("install", *mode, app, "--store", store, "--into", into, "--json", *extra)
    assert result.code == 0, result.err
    report: dict[str, object] = result.json()
    return report


class TestInstall:
    def test_environment_runs_the_installed_packages(self, tmp_path, built_app):
        """The new environment imports the wheels and runs their console scripts."""
        app, store = built_app
        into = tmp_path / "env"
        report = install(app, store, into)
        assert report["status"] == "built-and-cloned"
        out = subprocess.run(
            [into / "bin" / "python", "-c", "import alpha; print(alpha.VALUE)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == "42"
        tool = subprocess.run([into / "bin" / "tool"], capture_output=True, text=True, check=True)
        assert tool.stdout.strip() == "tool ran"
        assert (into / "bin" / "tool").read_text().startswith(f"#!{into}/bin/python")

    def test_environment_carries_bytecode(self, tmp_path, built_app):
        """Every installed module has a compiled .pyc next to it."""
        app, store = built_app
        into = tmp_path / "env"
        install(app, store, into)
        site = next(into.glob("lib/python*/site-packages"))
        sources = sorted(site.rglob("*.py"))
        assert sources
        for source in sources:
            assert list((source.parent / "__pycache__").glob(f"{source.stem}.*.pyc")), source

    def test_second_install_clones_the_stored_environment(self, tmp_path, built_app):
        """A second directory is cloned from the store by hard links, not installed again."""
        app, store = built_app
        install(app, store, tmp_path / "one")
        report = install(app, store, tmp_path / "two")
        assert report["status"] == "cloned"
        site_one = next((tmp_path / "one").glob("lib/python*/site-packages"))
        site_two = next((tmp_path / "two").glob("lib/python*/site-packages"))
        a = (site_one / "alpha" / "__init__.py").stat()
        b = (site_two / "alpha" / "__init__.py").stat()
        assert a.st_ino == b.st_ino
        assert (
            (tmp_path / "two" / "bin" / "tool")
            .read_text()
            .startswith(f"#!{tmp_path / 'two'}/bin/python")
        )
        # The scripts are rewritten copies: the first environment's stay intact.
        assert (
            (tmp_path / "one" / "bin" / "tool")
            .read_text()
            .startswith(f"#!{tmp_path / 'one'}/bin/python")
        )

    def test_copy_mode_shares_nothing_with_the_store(self, tmp_path, built_app):
        """--link-mode copy gives files of their own."""
        app, store = built_app
        install(app, store, tmp_path / "one")
        install(app, store, tmp_path / "two", "--link-mode", "copy")
        site_one = next((tmp_path / "one").glob("lib/python*/site-packages"))
        site_two = next((tmp_path / "two").glob("lib/python*/site-packages"))
        assert (site_one / "alpha" / "__init__.py").stat().st_ino != (
            site_two / "alpha" / "__init__.py"
        ).stat().st_ino

    def test_reinstall_into_the_same_directory_is_a_no_op(self, tmp_path, built_app):
        """Installing the same wheelhouse into the same directory changes nothing."""
        app, store = built_app
        into = tmp_path / "env"
        install(app, store, into)
        before = (into / "bin" / "tool").stat().st_ino
        report = install(app, store, into)
        assert report["status"] == "up-to-date"
        assert (into / "bin" / "tool").stat().st_ino == before

    def test_install_sends_no_request_to_the_index(self, tmp_path, local_index):
        """Install reads only the store: the index that served the build sees nothing."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha\n")
        store = tmp_path / "store"
        assert build_cli(app, store, index.url).code == 0
        index.requests.clear()
        install(app, store, tmp_path / "env")
        assert index.requests == []

    def test_changed_requirements_replace_the_environment(self, tmp_path, local_index):
        """After a rebuild, installing into the same directory swaps in the new environment."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        make_wheel(d, "alpha", "2.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        store = tmp_path / "store"
        into = tmp_path / "env"
        args = ("--store", store, "--index-url", index.url, "--platform", PLATFORM)
        assert cli("build", app, *args).code == 0
        install(app, store, into)
        (app / "requirements.txt").write_text("alpha==2.0\n")
        assert cli("build", app, *args).code == 0
        install(app, store, into)
        out = subprocess.run(
            [into / "bin" / "python", "-c", "import alpha; print(alpha.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == "2.0"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".env")] == []


class TestDerivedEnvironments:
    def test_changing_one_pin_reinstalls_only_that_package(self, tmp_path, local_index):
        """The new environment is derived from the old: one wheel swapped, the rest hard links."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        make_wheel(d, "alpha", "2.0")
        make_wheel(d, "kept", "1.0", files={"kept/__init__.py": "K = 1\n"})
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha==1.0\nkept==1.0\n")
        store = tmp_path / "store"
        assert build_cli(app, store, index.url).code == 0
        install(app, store, tmp_path / "one")
        (app / "requirements.txt").write_text("alpha==2.0\nkept==1.0\n")
        assert build_cli(app, store, index.url).code == 0
        result = cli("install", *CLONE, app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "1 wheel in, 1 out, 1 kept" in result.err
        one = next((tmp_path / "one").glob("lib/python*/site-packages"))
        two = next((tmp_path / "two").glob("lib/python*/site-packages"))
        assert (one / "kept" / "__init__.py").stat().st_ino == (
            two / "kept" / "__init__.py"
        ).stat().st_ino
        assert not list(two.glob("alpha-1.0.dist-info"))
        assert list(two.glob("alpha-2.0.dist-info"))
        assert list((two / "alpha" / "__pycache__").glob("__init__.*.pyc"))
        code = "import alpha, kept; print(alpha.__version__, kept.K)"
        out = subprocess.run(
            [tmp_path / "two" / "bin" / "python", "-c", code],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == "2.0 1"
        # The environment it was derived from is untouched.
        out = subprocess.run(
            [tmp_path / "one" / "bin" / "python", "-c", code],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == "1.0 1"

    def test_a_restored_store_is_hashed_once_when_an_environment_is_derived(
        self, tmp_path, local_index
    ):
        """A store copied whole (a build cache restored: same bytes, new inodes) is checked by
        hashing the base environment once: its seal takes the new stats, so it checks by stat
        again, and the derived one is sealed sound with those hashes."""
        from wheelbarrow.environment.seal import read_seal

        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        make_wheel(d, "alpha", "2.0")
        make_wheel(d, "kept", "1.0", files={"kept/__init__.py": "K = 1\n"})
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha==1.0\nkept==1.0\n")
        first = tmp_path / "store"
        assert build_cli(app, first, index.url).code == 0
        install(app, first, tmp_path / "one")
        store = tmp_path / "restored"
        shutil.copytree(first, store, symlinks=True)
        [base] = [p for p in (store / "envs").iterdir() if not p.name.startswith("build-")]
        assert read_seal(base).check(base).hashed_bytes > 0  # every inode is new
        (app / "requirements.txt").write_text("alpha==2.0\nkept==1.0\n")
        assert build_cli(app, store, index.url).code == 0
        result = cli("install", *CLONE, app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "1 wheel in, 1 out, 1 kept" in result.err
        check = read_seal(base).check(base)
        assert check.ok and check.hashed_bytes == 0
        [derived] = [
            p for p in (store / "envs").iterdir() if p != base and not p.name.startswith("build-")
        ]
        check = read_seal(derived).check(derived, deep=True)
        assert check.ok, check.problems


class TestBytecodeFailures:
    def test_a_file_that_does_not_compile_is_a_warning_not_a_failure(self, tmp_path, local_index):
        """A wheel shipping Python 2 syntax still installs; the warning names the file."""
        d = tmp_path / "dists"
        make_wheel(
            d,
            "legacy",
            "1.0",
            files={"legacy/__init__.py": "X = 1\n", "legacy/py2.py": "print 'old'\n"},
        )
        index = local_index(d)
        app = make_app(tmp_path / "app", "legacy\n")
        store = tmp_path / "store"
        assert build_cli(app, store, index.url).code == 0
        result = cli("install", *CLONE, app, "--store", store, "--into", tmp_path / "env")
        assert result.code == 0, result.err
        assert "1 file has no bytecode" in result.err
        assert "legacy/py2.py" in result.err
        site = next((tmp_path / "env").glob("lib/python*/site-packages"))
        assert list((site / "legacy" / "__pycache__").glob("__init__.*.pyc"))


class TestInstallErrors:
    def test_install_before_build_says_to_build(self, tmp_path, local_index):
        """Without a wheelhouse, install fails and tells the user to build first."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha\n")
        assert cli("lock", app, "--index-url", index.url, "--platform", PLATFORM).code == 0
        result = cli("install", app, "--store", tmp_path / "store", "--into", tmp_path / "env")
        assert result.code == 1
        assert "no wheelhouse for" in result.err
        assert "run `wheelbarrow build" in result.err
        assert not (tmp_path / "env").exists()

    def test_stale_lock_is_refused_offline(self, tmp_path, built_app):
        """Install does not relock: requirements edited since the build are an error."""
        app, store = built_app
        (app / "requirements.txt").write_text("tool==2.0\nalpha==1.0\n")
        result = cli("install", app, "--store", store, "--into", tmp_path / "env")
        assert result.code == 2
        assert "pylock.toml: out of date" in result.err

    def test_foreign_directory_is_not_overwritten(self, tmp_path, built_app):
        """A non-empty directory that wheelbarrow did not make is left alone."""
        app, store = built_app
        into = tmp_path / "mine"
        into.mkdir()
        (into / "precious.txt").write_text("keep me")
        result = cli("install", app, "--store", store, "--into", into)
        assert result.code == 1
        assert "is not an environment made by wheelbarrow" in result.err
        assert (into / "precious.txt").read_text() == "keep me"


class TestLinkTree:
    def test_symlinks_are_copied_as_links(self, tmp_path):
        """Symlinks (lib64 -> lib, bin/python) stay symlinks in the clone."""
        src = tmp_path / "src"
        (src / "lib").mkdir(parents=True)
        (src / "lib" / "f").write_text("x")
        (src / "lib64").symlink_to("lib")
        (src / "f-link").symlink_to("lib/f")
        link_tree(src, tmp_path / "dst", mode="hardlink")
        assert (tmp_path / "dst" / "lib64").readlink() == Path("lib")
        assert (tmp_path / "dst" / "f-link").readlink() == Path("lib/f")
        assert (tmp_path / "dst" / "lib" / "f").stat().st_ino == (src / "lib" / "f").stat().st_ino

    def test_clone_refuses_a_foreign_directory(self, tmp_path):
        """clone_env raises instead of replacing a directory it did not make."""
        (tmp_path / "src").mkdir()
        (tmp_path / "dst").mkdir()
        (tmp_path / "dst" / "x").write_text("x")
        with pytest.raises(InstallError):
            clone_env(tmp_path / "src", tmp_path / "dst")


class TestDamagedStore:
    def test_an_incomplete_environment_in_the_store_is_replaced(self, tmp_path, built_app):
        """An environment directory without its marker (damaged) is rebuilt, not a crash."""
        app, store = built_app
        install(app, store, tmp_path / "one")
        [env] = list((store / "envs").iterdir())
        shutil.rmtree(env / "bin")
        (env / ".wheelbarrow-env.json").unlink()
        result = cli("install", app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "replacing an incomplete environment in the store" in result.err
        tool = subprocess.run([tmp_path / "two" / "bin" / "tool"], capture_output=True, text=True)
        assert tool.stdout.strip() == "tool ran"

    def test_an_incomplete_wheelhouse_in_the_store_is_replaced(self, tmp_path, local_index):
        """A wheelhouse directory without its manifest is laid out again by the next build."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        store = tmp_path / "store"
        first = build_cli(app, store, index.url, "--json")
        house = Path(first.json()["wheelhouse"])
        (house / "wheelhouse.json").unlink()
        second = build_cli(app, store, index.url, "--json")
        assert second.code == 0, second.err
        assert second.json()["status"] == "built"
        assert (house / "wheelhouse.json").is_file()


def site_of(env: Path) -> Path:
    return next(env.glob("lib/python*/site-packages"))


def run_python(env: Path, code: str) -> str:
    return subprocess.run(
        [env / "bin" / "python", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


class TestContentTrueDerivation:
    def test_a_wheel_rebuilt_under_the_same_name_is_swapped_in(self, tmp_path, local_index):
        """Two wheels with one file name and different bytes: the new bytes are what runs."""
        one, two = tmp_path / "dists-one", tmp_path / "dists-two"
        for d, value in ((one, "old build"), (two, "new build")):
            make_wheel(d, "alpha", "1.0", files={"alpha/__init__.py": f"BUILD = {value!r}\n"})
            make_wheel(d, "kept", "1.0", files={"kept/__init__.py": "K = 1\n"})
        first, second = local_index(one), local_index(two)
        app = make_app(tmp_path / "app", "alpha==1.0\nkept==1.0\n")
        store = tmp_path / "store"
        assert build_cli(app, store, first.url).code == 0
        install(app, store, tmp_path / "env-one")
        assert build_cli(app, store, second.url).code == 0
        result = cli("install", app, "--store", store, "--into", tmp_path / "env-two")
        assert result.code == 0, result.err
        assert "1 wheel in, 1 out, 1 kept" in result.err
        assert run_python(tmp_path / "env-two", "import alpha; print(alpha.BUILD)") == "new build"
        assert run_python(tmp_path / "env-one", "import alpha; print(alpha.BUILD)") == "old build"
        # Twice: the second install of each wheelhouse is a clone of the right environment.
        install(app, store, tmp_path / "env-three")
        assert run_python(tmp_path / "env-three", "import alpha; print(alpha.BUILD)") == "new build"


def store_env(store: Path) -> Path:
    [env] = [p for p in (store / "envs").iterdir() if not p.name.startswith("build-")]
    return env


class TestInPlaceEdits:
    def test_an_append_in_one_environment_never_reaches_the_next_install(self, tmp_path, built_app):
        """An edit through a hard link is caught by the seal; the next install gets the original."""
        app, store = built_app
        install(app, store, tmp_path / "one")
        edited = site_of(tmp_path / "one") / "alpha" / "__init__.py"
        with edited.open("a") as f:
            f.write("VALUE = 'edited'\n")
        result = cli("install", *CLONE, app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "edited in place" in result.err
        assert "site-packages/alpha/__init__.py" in result.err
        assert run_python(tmp_path / "two", "import alpha; print(alpha.VALUE)") == "42"
        # The rebuilt store environment is sealed again: the next install is quiet and right.
        again = cli("install", *CLONE, app, "--store", store, "--into", tmp_path / "three")
        assert again.code == 0, again.err
        assert "edited in place" not in again.err
        assert run_python(tmp_path / "three", "import alpha; print(alpha.VALUE)") == "42"

    def test_a_file_deleted_from_the_stored_environment_is_rebuilt(self, tmp_path, built_app):
        """A file missing from the store's environment is named, and the next install works."""
        app, store = built_app
        install(app, store, tmp_path / "one")
        (site_of(store_env(store)) / "alpha" / "__init__.py").unlink()
        result = cli("install", app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "site-packages/alpha/__init__.py (missing)" in result.err
        assert run_python(tmp_path / "two", "import alpha; print(alpha.VALUE)") == "42"

    def test_a_file_added_to_the_stored_environment_is_not_cloned(self, tmp_path, built_app):
        """A .pth dropped into the store's environment is caught instead of spreading."""
        app, store = built_app
        install(app, store, tmp_path / "one")
        (site_of(store_env(store)) / "evil.pth").write_text("import sys\n")
        result = cli("install", app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "evil.pth (added)" in result.err
        assert not (site_of(tmp_path / "two") / "evil.pth").exists()

    def test_an_edit_never_reaches_a_derived_environment(self, tmp_path, local_index):
        """Another app's environment derived from an edited one carries the original files."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        make_wheel(d, "alpha", "2.0")
        make_wheel(d, "kept", "1.0", files={"kept/__init__.py": "K = 1\n"})
        index = local_index(d)
        first = make_app(tmp_path / "first", "alpha==1.0\nkept==1.0\n")
        other = make_app(tmp_path / "other", "alpha==2.0\nkept==1.0\n")
        store = tmp_path / "store"
        assert build_cli(first, store, index.url).code == 0
        install(first, store, tmp_path / "one")
        with (site_of(tmp_path / "one") / "kept" / "__init__.py").open("a") as f:
            f.write("K = 'edited'\n")
        assert build_cli(other, store, index.url).code == 0
        result = cli("install", *CLONE, other, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "site-packages/kept/__init__.py (changed)" in result.err
        assert (
            run_python(tmp_path / "two", "import kept, alpha; print(kept.K, alpha.__version__)")
            == "1 2.0"
        )

    def test_reinstalling_an_edited_environment_restores_it(self, tmp_path, built_app):
        """Install into a directory whose hard-linked files were edited clones it afresh."""
        app, store = built_app
        into = tmp_path / "one"
        install(app, store, into)
        with (site_of(into) / "alpha" / "__init__.py").open("a") as f:
            f.write("VALUE = 'edited'\n")
        report = install(app, store, into)
        assert report["status"] == "built-and-cloned"
        assert run_python(into, "import alpha; print(alpha.VALUE)") == "42"
        assert install(app, store, into)["status"] == "up-to-date"

    def test_a_touched_but_unchanged_file_is_not_an_edit(self, tmp_path, built_app):
        """A new mtime with the same bytes passes the seal (the hash backs the stat)."""
        app, store = built_app
        install(app, store, tmp_path / "one")
        os.utime(site_of(tmp_path / "one") / "alpha" / "__init__.py", (1, 1))
        result = cli("install", *CLONE, app, "--store", store, "--into", tmp_path / "two", "--json")
        assert result.code == 0, result.err
        assert result.json()["status"] == "cloned"
        assert "edited in place" not in result.err

    def test_copy_mode_edits_stay_in_their_environment(self, tmp_path, built_app):
        """An edit in a --link-mode copy environment touches nothing else."""
        app, store = built_app
        install(app, store, tmp_path / "one", "--link-mode", "copy")
        with (site_of(tmp_path / "one") / "alpha" / "__init__.py").open("a") as f:
            f.write("VALUE = 'edited'\n")
        result = cli("install", app, "--store", store, "--into", tmp_path / "two", "--json")
        assert result.code == 0, result.err
        assert result.json()["status"] == "cloned"
        assert run_python(tmp_path / "two", "import alpha; print(alpha.VALUE)") == "42"


class TestInstallTarget:
    def test_files_the_user_added_are_named_and_kept(self, tmp_path, local_index):
        """Replacing an environment holding the user's files refuses, naming them; they survive."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        make_wheel(d, "alpha", "2.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        store = tmp_path / "store"
        into = tmp_path / "env"
        assert build_cli(app, store, index.url).code == 0
        install(app, store, into)
        mine = site_of(into) / "mine.py"
        mine.write_text("MINE = 1\n")
        (into / "notes.txt").write_text("keep me\n")
        (app / "requirements.txt").write_text("alpha==2.0\n")
        assert build_cli(app, store, index.url).code == 0
        result = cli("install", app, "--store", store, "--into", into)
        assert result.code == 1
        assert "notes.txt" in result.err and "site-packages/mine.py" in result.err
        assert "hint:" in result.err
        assert mine.read_text() == "MINE = 1\n"
        assert (into / "notes.txt").read_text() == "keep me\n"
        assert run_python(into, "import alpha; print(alpha.__version__)") == "1.0"
        # Once they are moved out, the same install replaces the environment.
        mine.unlink()
        (into / "notes.txt").unlink()
        install(app, store, into)
        assert run_python(into, "import alpha; print(alpha.__version__)") == "2.0"

    def test_into_a_regular_file_is_a_clear_error(self, tmp_path, built_app):
        """--into naming a file is an error naming it, not a traceback; the file is kept."""
        app, store = built_app
        target = tmp_path / "file"
        target.write_text("mine\n")
        result = cli("install", app, "--store", store, "--into", target)
        assert result.code == 1
        assert f"{target}: is a file" in result.err
        assert "Traceback" not in result.err
        assert target.read_text() == "mine\n"

    def test_a_killed_installs_leftover_beside_the_target_is_cleaned(self, tmp_path, built_app):
        """The scratch directory of an install killed with SIGKILL goes at the next install."""
        app, store = built_app
        code = textwrap.dedent(
            f"""
            import time
            from pathlib import Path
            from wheelbarrow._core.scratch import scratch
            with scratch(Path({str(tmp_path)!r}), ".env.wheelbarrow-") as p:
                (p / "env").mkdir()
                (p / "env" / "half").write_text("x")
                print("ready", flush=True)
                time.sleep(60)
            """
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".env.")]
        install(app, store, tmp_path / "env")
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".env.")] == []

    def test_a_leftover_beside_an_up_to_date_target_is_cleaned_too(self, tmp_path, built_app):
        """An install killed after renaming its result into place, before removing its scratch,
        leaves an up-to-date target: the next install, which has nothing to do, cleans up."""
        app, store = built_app
        install(app, store, tmp_path / "env")
        orphan = tmp_path / ".env.wheelbarrow-4242-0a1b2c3d"  # its lock is gone with its owner
        (orphan / "old").mkdir(parents=True)
        (tmp_path / ".env.mine").write_text("a file of the user's that merely looks alike")
        install(app, store, tmp_path / "env")
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".env.")) == [
            ".env.mine"
        ]


class TestInstallFailures:
    def test_a_full_disk_is_not_called_a_malformed_wheel(self, tmp_path):
        """ENOSPC while unpacking propagates as OSError (errno 28), never the malformed hint."""
        unshare = shutil.which("unshare")
        if unshare is None or os.geteuid() != 0:
            pytest.skip("needs root and unshare for a real small filesystem")
        wheel = make_wheel(
            tmp_path / "dists", "big", "1.0", files={"big/data.bin": os.urandom(2_000_000)}
        )
        tiny = tmp_path / "tiny"
        tiny.mkdir()
        code = textwrap.dedent(
            f"""
            import os, sys
            from pathlib import Path
            from wheelbarrow.environment.envs import build_store_env
            from wheelbarrow._core.errors import WheelbarrowError
            from wheelbarrow.environment.interpreters import Interpreter
            from wheelbarrow._core.report import NullReporter
            from wheelbarrow._core.runner import run_subprocess
            from wheelbarrow.store.store import Store
            python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
            version = ".".join(map(str, sys.version_info[:3]))
            try:
                build_store_env(
                    [Path({str(wheel)!r})],
                    key="k",
                    wheelhouse_key="w",
                    interpreter=Interpreter(executable=Path(python), version=version),
                    store=Store(Path({str(tiny)!r}) / "store"),
                    runner=run_subprocess,
                    reporter=NullReporter(),
                    compile_bytecode=False,
                )
            except OSError as exc:
                print("oserror", exc.errno)
            except WheelbarrowError as exc:
                print("wheelbarrow", exc.hint)
            """
        )
        script = f'mount -t tmpfs -o size=512k none {tiny} && exec {sys.executable} -c "$0"'
        result = subprocess.run(
            [unshare, "-m", "sh", "-c", script, code], capture_output=True, text=True, timeout=60
        )
        assert result.stdout.strip() == "oserror 28", result.stdout + result.stderr

    def test_a_flipped_byte_in_a_wheel_is_caught_before_it_is_installed(self, tmp_path, built_app):
        """A damaged blob stops a new environment, naming it; repaired and rebuilt, it installs."""
        app, store = built_app
        [house] = list((store / "wheelhouses").iterdir())
        wheel = house / "alpha-1.0-py3-none-any.whl"
        with wheel.open("r+b") as f:  # the wheelhouse file is a hard link to the blob
            f.seek(40)
            byte = f.read(1)
            f.seek(40)
            f.write(bytes([byte[0] ^ 0xFF]))
        result = cli("install", app, "--store", store, "--into", tmp_path / "env")
        assert result.code == 1
        assert f"error: {wheel}: sha256 is" in result.err
        assert "wheelbarrow verify --repair" in result.err
        assert not (tmp_path / "env").exists()
        assert not (store / "envs").exists() or not list((store / "envs").iterdir())
        assert cli("verify", "--store", store, "--repair").code == 0
        d = tmp_path / "dists"
        with serve_local_index(d) as index:
            assert build_cli(app, store, index.url).code == 0
        install(app, store, tmp_path / "env")
        assert run_python(tmp_path / "env", "import alpha; print(alpha.VALUE)") == "42"


class TestReflinks:
    def test_a_reflinked_clone_keeps_edits_to_itself(self, tmp_path):
        """On a filesystem with reflinks (XFS here), clones share blocks, not files: an edit in
        one changes neither the source nor its seal check."""
        unshare, mkfs = shutil.which("unshare"), shutil.which("mkfs.xfs")
        if unshare is None or mkfs is None or os.geteuid() != 0:
            pytest.skip("needs root, unshare and mkfs.xfs for a real reflink filesystem")
        image = tmp_path / "xfs.img"
        with image.open("wb") as f:
            f.truncate(300 * 1024 * 1024)
        made = subprocess.run([mkfs, "-q", "-f", "-m", "reflink=1", image], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"mkfs.xfs failed: {made.stderr.decode().strip()}")
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        code = textwrap.dedent(
            f"""
            from pathlib import Path
            from wheelbarrow.environment.clone import clone_env
            from wheelbarrow.environment.seal import make_seal, read_seal
            root = Path({str(mnt)!r})
            src = root / "src"
            (src / "lib").mkdir(parents=True)
            (src / "lib" / "mod.py").write_text("VALUE = 42\\n")
            (src / ".wheelbarrow-env.json").write_text("{{}}\\n")
            (src / "pyvenv.cfg").write_text(f"home = {{src}}\\n")
            make_seal(src).write(src)
            clone_env(src, root / "one")
            a, s = root / "one" / "lib" / "mod.py", src / "lib" / "mod.py"
            print("inode", a.stat().st_ino != s.stat().st_ino, s.stat().st_nlink)
            with a.open("a") as f:
                f.write("VALUE = 0\\n")
            print("source", s.read_text() == "VALUE = 42\\n", read_seal(src).check(src).ok)
            """
        )
        script = f'mount -o loop {image} {mnt} && exec {sys.executable} -c "$0"'
        result = subprocess.run(
            [unshare, "-m", "sh", "-c", script, code], capture_output=True, text=True, timeout=120
        )
        if "mount" in result.stderr and result.returncode != 0 and not result.stdout:
            pytest.skip(f"no loop mount here: {result.stderr.strip()}")
        assert result.stdout.split("\n")[:2] == ["inode True 1", "source True True"], (
            result.stdout + result.stderr
        )
