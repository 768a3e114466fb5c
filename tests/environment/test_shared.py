"""The shared layout: a small environment of its own that runs on the stored, read-only tree."""

from __future__ import annotations

import ensurepip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import build_cli, cli, make_app

from wheelbarrow.environment.sealfile import UNSEALED

PIP_WHEEL = next((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    """alpha 1.0 and 2.0, a tool with a console script, a wheel shipping a .pth, and pip."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0", files={"alpha/__init__.py": "VALUE = 1\n"})
    make_wheel(d, "alpha", "2.0", files={"alpha/__init__.py": "VALUE = 2\n"})
    make_wheel(
        d,
        "tool",
        "1.0",
        requires=["alpha"],
        files={"tool/__init__.py": "def main():\n    print('tool ran')\n"},
        entry_points={"tool": "tool:main"},
    )
    make_wheel(
        d,
        "hooked",
        "1.0",
        files={"hooked_pth.pth": "import os; os.environ['HOOKED'] = 'yes'\n", "hooked.py": ""},
    )
    shutil.copy(PIP_WHEEL, d)
    return d


@pytest.fixture
def built(tmp_path: Path, dists: Path, local_index) -> tuple[Path, Path, Path]:
    """An app (tool, alpha 1.0, hooked, pip) whose wheelhouse is built: (app, store, dists)."""
    index = local_index(dists)
    app = make_app(tmp_path / "app", f"tool==1.0\nalpha==1.0\nhooked==1.0\n{_pip_pin()}\n")
    store = tmp_path / "store"
    result = build_cli(app, store, index.url)
    assert result.code == 0, result.err
    return app, store, dists


def _pip_pin() -> str:
    return "pip==" + PIP_WHEEL.name.split("-")[1]


def install(app: Path, store: Path, into: Path, *extra: str) -> dict[str, object]:
    result = cli("install", app, "--store", store, "--into", into, "--json", *extra)
    assert result.code == 0, result.err
    report: dict[str, object] = result.json()
    return report


def python(env: Path, code: str, **environ: str) -> str:
    done = subprocess.run(
        [env / "bin" / "python", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **environ},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def pip(env: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The environment's own pip (shared from the store), offline and unconfigured."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    environ |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        [env / "bin" / "python", "-m", "pip", *map(str, args)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )


def stored_env(store: Path) -> Path:
    [env] = [p for p in (store / "envs").iterdir() if not p.name.startswith("build-")]
    return env


def site_of(env: Path) -> Path:
    return next(env.glob("lib/python*/site-packages"))


def verify_clean(store: Path) -> None:
    result = cli("verify", "--store", store)
    assert result.code == 0, result.out + result.err


class TestLayout:
    def test_the_environment_runs_the_stored_packages_from_the_store(self, tmp_path, built):
        """Imports resolve into the stored tree; scripts and python are the environment's."""
        app, store, _ = built
        into = tmp_path / "env"
        report = install(app, store, into)
        assert report["layout"] == "shared"
        assert report["status"] == "built-and-cloned"
        stored_site = site_of(stored_env(store))
        assert python(into, "import alpha; print(alpha.__file__)") == str(
            stored_site / "alpha" / "__init__.py"
        )
        own = python(into, "import sys; print(sys.path.index(sys.prefix + '/lib/python' + "
                     "'%d.%d' % sys.version_info[:2] + '/site-packages'))")  # fmt: skip
        shared = python(into, f"import sys; print(sys.path.index({str(stored_site)!r}))")
        assert int(own) < int(shared)
        assert python(into, "import sys; print(sys.prefix)") == str(into)
        tool = subprocess.run([into / "bin" / "tool"], capture_output=True, text=True, check=True)
        assert tool.stdout.strip() == "tool ran"
        assert (into / "bin" / "tool").read_text().startswith(f"#!{into}/bin/python")

    def test_the_shared_packages_pth_files_run(self, tmp_path, built):
        """A .pth file a shared package ships runs at start-up, as in the stored environment."""
        app, store, _ = built
        into = tmp_path / "env"
        install(app, store, into)
        assert python(into, "import os; print(os.environ.get('HOOKED'))") == "yes"

    def test_the_environment_holds_no_package_file(self, tmp_path, built):
        """Its site-packages holds one .pth and nothing else; nothing in it is a stored file."""
        app, store, _ = built
        into = tmp_path / "env"
        install(app, store, into)
        assert [p.name for p in site_of(into).iterdir()] == ["_wheelbarrow_shared.pth"]
        stored = {p.stat().st_ino for p in stored_env(store).rglob("*") if p.is_file()}
        mine = {p.stat().st_ino for p in into.rglob("*") if p.is_file() and not p.is_symlink()}
        assert not stored & mine

    def test_the_stored_tree_is_read_only(self, tmp_path, built):
        """Once shared, no stored file keeps a write bit; the environment's own files do."""
        app, store, _ = built
        into = tmp_path / "env"
        install(app, store, into)
        env = stored_env(store)
        files = [p for p in env.rglob("*") if p.is_file() and not p.is_symlink()]
        files = [p for p in files if p.parent != env or p.name not in UNSEALED]  # not the tree
        assert files and not [p for p in files if p.stat().st_mode & 0o222]
        assert (into / "bin" / "tool").stat().st_mode & stat.S_IWUSR

    def test_a_second_install_is_up_to_date_and_another_directory_shares_too(self, tmp_path, built):
        """The same directory again changes nothing; another one runs on the same tree."""
        app, store, _ = built
        into = tmp_path / "env"
        install(app, store, into)
        before = (into / "bin" / "tool").stat().st_ino
        assert install(app, store, into)["status"] == "up-to-date"
        assert (into / "bin" / "tool").stat().st_ino == before
        other = tmp_path / "other"
        assert install(app, store, other)["status"] == "cloned"
        assert python(other, "import alpha; print(alpha.VALUE)") == "1"

    def test_layouts_replace_each_other(self, tmp_path, built):
        """A clone installed over a shared environment becomes a clone, and back."""
        app, store, _ = built
        into = tmp_path / "env"
        install(app, store, into)
        assert install(app, store, into, "--link-mode", "hardlink")["status"] == "cloned"
        assert (site_of(into) / "alpha" / "__init__.py").is_file()
        assert install(app, store, into)["layout"] == "shared"
        assert not (site_of(into) / "alpha").exists()
        assert python(into, "import alpha; print(alpha.VALUE)") == "1"


class TestPip:
    def test_pip_sees_the_shared_packages(self, tmp_path, built):
        """pip list names the shared packages with their versions."""
        app, store, _ = built
        into = tmp_path / "env"
        install(app, store, into)
        listed = pip(into, "list", "--format", "freeze")
        assert listed.returncode == 0, listed.stderr
        assert "alpha==1.0" in listed.stdout.split()

    def test_pip_install_shadows_a_shared_package_in_its_environment_only(self, tmp_path, built):
        """A newer alpha pip-installed in one environment wins there; the store and another
        environment keep alpha 1.0."""
        app, store, dists = built
        one, two = tmp_path / "one", tmp_path / "two"
        install(app, store, one)
        install(app, store, two)
        done = pip(one, "install", "--no-index", dists / "alpha-2.0-py3-none-any.whl")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "outside environment" in done.stdout
        assert python(one, "import alpha; print(alpha.VALUE)") == "2"
        assert python(two, "import alpha; print(alpha.VALUE)") == "1"
        assert list(site_of(one).glob("alpha-2.0.dist-info"))
        verify_clean(store)

    def test_pip_uninstall_of_a_shared_package_removes_nothing(self, tmp_path, built):
        """pip refuses to uninstall what lies outside its environment: the package still
        imports everywhere, and the store is as it was."""
        app, store, _ = built
        one, two = tmp_path / "one", tmp_path / "two"
        install(app, store, one)
        install(app, store, two)
        done = pip(one, "uninstall", "-y", "alpha")
        assert "outside environment" in done.stdout, done.stdout + done.stderr
        assert python(one, "import alpha; print(alpha.VALUE)") == "1"
        assert python(two, "import alpha; print(alpha.VALUE)") == "1"
        assert (site_of(stored_env(store)) / "alpha" / "__init__.py").is_file()
        verify_clean(store)

    def test_pip_uninstall_of_its_own_package_brings_the_shared_one_back(self, tmp_path, built):
        """Uninstalling what pip installed in the environment removes only that."""
        app, store, dists = built
        into = tmp_path / "env"
        install(app, store, into)
        wheel = dists / "alpha-2.0-py3-none-any.whl"
        assert pip(into, "install", "--no-index", wheel).returncode == 0
        done = pip(into, "uninstall", "-y", "alpha")
        assert done.returncode == 0, done.stdout + done.stderr
        assert python(into, "import alpha; print(alpha.VALUE)") == "1"
        assert not list(site_of(into).glob("alpha-*"))
        verify_clean(store)

    def test_an_environment_pip_changed_is_not_replaced_without_asking(self, tmp_path, built):
        """Installing another wheelhouse over an environment with pip's files names them."""
        app, store, dists = built
        into = tmp_path / "env"
        install(app, store, into)
        wheel = dists / "alpha-2.0-py3-none-any.whl"
        assert pip(into, "install", "--no-index", wheel).returncode == 0
        assert install(app, store, into)["status"] == "up-to-date"
        result = cli("install", app, "--store", store, "--into", into, "--link-mode", "copy")
        assert result.code == 1
        assert "alpha-2.0.dist-info" in result.err


class TestEditsOfTheSharedTree:
    def test_an_added_pth_is_caught_at_the_next_install_and_every_environment_is_mended(
        self, tmp_path, built
    ):
        """A file added to the stored site-packages makes the next install check the tree in
        full: it names the file, and the tree made again in place serves every environment."""
        app, store, _ = built
        one = tmp_path / "one"
        install(app, store, one)
        evil = site_of(stored_env(store)) / "evil.pth"
        evil.write_text("import os; os.environ['EVIL'] = 'yes'\n")
        assert python(one, "import os; print(os.environ.get('EVIL'))") == "yes"
        result = cli("install", app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "evil.pth (added)" in result.err
        for env in (one, tmp_path / "two"):
            assert python(env, "import os; print(os.environ.get('EVIL'))") == "None"
        verify_clean(store)

    def test_a_replaced_file_is_caught_at_the_next_install(self, tmp_path, built):
        """A file replaced by a rename (as sed -i and most editors do) is named and mended."""
        app, store, _ = built
        one = tmp_path / "one"
        install(app, store, one)
        module = site_of(stored_env(store)) / "alpha" / "__init__.py"
        replacement = module.with_name("new.tmp")
        replacement.write_text("VALUE = 'edited'\n")
        replacement.replace(module)
        for pyc in (module.parent / "__pycache__").glob("*.pyc"):
            pyc.unlink()
        result = cli("install", app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "alpha/__init__.py (changed)" in result.err
        assert python(one, "import alpha; print(alpha.VALUE)") == "1"

    def test_an_in_place_edit_is_caught_by_verify(self, tmp_path, built):
        """An append to a shared file (root ignores read-only modes) is what verify hashes for:
        it names the file; --repair names the environments sharing it, and their next install
        makes the tree again."""
        app, store, _ = built
        one = tmp_path / "one"
        install(app, store, one)
        module = site_of(stored_env(store)) / "alpha" / "__init__.py"
        if os.geteuid() != 0:
            with pytest.raises(PermissionError):
                module.open("a")
            module.chmod(0o644)
        with module.open("a") as f:
            f.write("VALUE = 'edited'\n")
        code = cli("verify", "--store", store, "--json")
        assert code.code == 1
        assert any(p["path"].endswith("alpha/__init__.py") for p in code.json()["problems"])
        repaired = cli("verify", "--store", store, "--repair", "--json")
        assert repaired.code == 0
        [why] = [r["why"] for r in repaired.json()["removed"] if r["path"].startswith("envs/")]
        assert f"the environments that share it must be installed again: {one}" in why
        assert install(app, store, one)["status"] == "built-and-cloned"
        assert python(one, "import alpha; print(open(alpha.__file__).read().strip())") == (
            "VALUE = 1"
        )
        verify_clean(store)

    def test_an_edited_script_is_not_copied(self, tmp_path, built):
        """A stored script edited in place keeping its directory is caught as it is copied."""
        app, store, _ = built
        install(app, store, tmp_path / "one")
        script = stored_env(store) / "bin" / "tool"
        mode = script.stat().st_mode
        script.chmod(mode | stat.S_IWUSR)
        with script.open("a") as f:
            f.write("# edited\n")
        script.chmod(mode)
        result = cli("install", app, "--store", store, "--into", tmp_path / "two")
        assert result.code == 0, result.err
        assert "# edited" not in (tmp_path / "two" / "bin" / "tool").read_text()
        verify_clean(store)


class TestStoreMoves:
    def test_a_removed_stored_environment_is_made_again_in_place(self, tmp_path, built):
        """With the stored environment gone, its environments fail to import until the next
        install makes it again in its place; then the old ones run too."""
        app, store, _ = built
        one = tmp_path / "one"
        install(app, store, one)
        shutil.rmtree(stored_env(store))
        assert install(app, store, tmp_path / "two")["status"] == "built-and-cloned"
        assert python(one, "import alpha; print(alpha.VALUE)") == "1"
