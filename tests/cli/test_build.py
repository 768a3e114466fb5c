"""`wheelbarrow build`: lock when inputs change, fetch only what the store lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import (
    build_local_index,
    make_c_extension_sdist,
    make_sdist,
    make_wheel,
    unpack_into,
)
from support.apps import PLATFORM, build_cli, build_ok, cli, make_app

from wheelbarrow.store.store import Store


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """A directory of wheels: two versions of alpha, beta (needs alpha), gamma."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "alpha", "2.0")
    make_wheel(d, "beta", "1.0", requires=["alpha>=1"])
    make_wheel(d, "gamma", "0.5", tag=f"cp311-cp311-{PLATFORM}")
    make_wheel(d, "gamma", "0.5", tag="cp311-cp311-macosx_11_0_arm64")
    return d


class TestBuild:
    def test_first_build_fetches_every_wheel_into_the_store(self, tmp_path, wheels, local_index):
        """A cold build locks, downloads each locked wheel once and lays out the wheelhouse."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        report = build_ok(app, tmp_path / "store", index.url)
        assert report["status"] == "built"
        assert sorted(report["fetched"]) == [
            "alpha-2.0-py3-none-any.whl",
            "beta-1.0-py3-none-any.whl",
        ]
        # uv, while locking, may read the same wheels for their metadata.
        assert set(index.downloads) == set(report["fetched"])
        house = Path(report["wheelhouse"])
        assert sorted(p.name for p in house.glob("*.whl")) == sorted(report["fetched"])
        manifest = json.loads((house / "wheelhouse.json").read_text())
        assert {w["name"] for w in manifest["wheels"]} == {"alpha", "beta"}
        assert (app / "pylock.toml").is_file()

    def test_second_build_with_nothing_changed_is_a_no_op(self, tmp_path, wheels, local_index):
        """An unchanged app reports up-to-date and sends no request to the index at all."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        first = build_ok(app, tmp_path / "store", index.url)
        index.requests.clear()
        second = build_ok(app, tmp_path / "store", index.url)
        assert second["status"] == "up-to-date"
        assert second["key"] == first["key"]
        assert second["fetched"] == []
        assert index.requests == []

    def test_no_op_build_text_says_so(self, tmp_path, wheels, local_index):
        """The human report of a no-op build says that there is nothing to do."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "alpha\n")
        build_ok(app, tmp_path / "store", index.url)
        result = build_cli(app, tmp_path / "store", index.url)
        assert result.code == 0
        assert "is up to date (1 package): nothing to do" in result.out

    def test_changing_one_pin_fetches_only_that_package(self, tmp_path, wheels, local_index):
        """A changed pin relocks, names the change and downloads only the new wheel."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "alpha==1.0\nbeta==1.0\n")
        first = build_ok(app, tmp_path / "store", index.url)
        beta_blob = next(Path(first["wheelhouse"]).glob("beta-*.whl")).stat()
        (app / "requirements.txt").write_text("alpha==2.0\nbeta==1.0\n")
        second = build_ok(app, tmp_path / "store", index.url)
        assert second["key"] != first["key"]
        assert second["fetched"] == ["alpha-2.0-py3-none-any.whl"]
        # beta's blob is the very same file, not a fresh download.
        again = next(Path(second["wheelhouse"]).glob("beta-*.whl")).stat()
        assert (again.st_ino, again.st_mtime_ns) == (beta_blob.st_ino, beta_blob.st_mtime_ns)
        assert second["changes"] == [{"name": "alpha", "old": "1.0", "new": "2.0", "detail": None}]
        assert second["reused"] == ["beta-1.0-py3-none-any.whl"]

    def test_comment_only_edit_keeps_the_lock(self, tmp_path, wheels, local_index):
        """Reformatting requirements.txt (comments, order) does not relock or rebuild."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "alpha==1.0\nbeta==1.0\n")
        build_ok(app, tmp_path / "store", index.url)
        (app / "requirements.txt").write_text("# deps\nbeta==1.0   # web\n\nalpha==1.0\n")
        index.requests.clear()
        assert build_ok(app, tmp_path / "store", index.url)["status"] == "up-to-date"
        assert index.requests == []

    def test_platform_specific_wheel_is_chosen_for_the_target(self, tmp_path, wheels, local_index):
        """Of two builds of one version, the one whose tags fit the target is fetched."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "gamma==0.5\n", python="3.11")
        report = build_ok(app, tmp_path / "store", index.url)
        assert report["fetched"] == [f"gamma-0.5-cp311-cp311-{PLATFORM}.whl"]

    def test_the_wheelhouse_serves_pip_as_a_find_links_dir(self, tmp_path, wheels, local_index):
        """The wheelhouse installs offline with pip --no-index -f, like the seed's /wheelhouse."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        report = build_ok(app, tmp_path / "store", index.url, "--output", str(tmp_path / "wh"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        target = tmp_path / "site"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-index",
                "-f",
                str(tmp_path / "wh"),
                "--target",
                str(target),
                "--no-cache-dir",
                "--disable-pip-version-check",
                "beta",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        assert (target / "alpha" / "__init__.py").read_text().strip() == '__version__ = "2.0"'
        assert report["status"] == "built"


class TestScratchCleanup:
    def test_an_up_to_date_build_cleans_a_killed_builds_scratch(
        self, tmp_path, wheels, local_index
    ):
        """A build killed after its wheelhouse was renamed into place leaves only scratch; the
        next build, up to date, removes it (and nothing of the user's)."""
        index = local_index(wheels)
        app = make_unpinned_app(tmp_path / "app", "alpha==1.0\n")
        store = tmp_path / "store"
        build_ok(app, store, index.url)
        orphan = store / "tmp" / "wheelhouse-0123456789abcdef-4242-0a1b2c3d"
        orphan.mkdir(parents=True)
        report = build_ok(app, store, index.url)
        assert report["status"] == "up-to-date"
        assert not orphan.exists()


class TestBuildErrors:
    def test_package_without_compatible_wheel_is_listed(self, tmp_path, local_index):
        """With --only-binary :all:, packages lacking a wheel stop the build, all named together."""
        d = tmp_path / "dists"
        make_sdist(d, "onlysdist", "1.0")
        make_wheel(d, "macwheel", "1.0", tag="cp311-cp311-macosx_11_0_arm64")
        make_sdist(d, "macwheel", "1.0")
        make_wheel(d, "fine", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "onlysdist\nmacwheel\nfine\n")
        result = build_cli(app, tmp_path / "store", index.url, "--only-binary", ":all:")
        assert result.code == 1
        assert "2 packages have no compatible wheel for CPython" in result.err
        # uv leaves wheels for other platforms out of the lock: only the sdist remains.
        assert "macwheel 1.0 (has an sdist; only-binary forbids a source build)" in result.err
        assert "onlysdist 1.0 (has an sdist; only-binary forbids a source build)" in result.err
        assert not (tmp_path / "store" / "wheelhouses").exists()

    def test_malformed_requirement_names_file_and_line(self, tmp_path):
        """A bad line is reported as requirements.txt:LINE before anything is resolved."""
        app = make_app(tmp_path / "app", "flask\n\nnumpy=>1.0\n")
        result = cli("build", app, "--store", tmp_path / "store")
        assert result.code == 2
        assert f"{app / 'requirements.txt'}:3: invalid requirement 'numpy=>1.0'" in result.err

    def test_unknown_package_is_a_clear_error(self, tmp_path, wheels, local_index):
        """A name the index does not have fails the lock, naming the package and its line."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "alpha\nno-such-package==1.0\n")
        result = build_cli(app, tmp_path / "store", index.url)
        assert result.code == 1
        assert "could not lock the requirements" in result.err
        assert "no-such-package" in result.err
        assert f"{app / 'requirements.txt'}:2: no-such-package==1.0" in result.err
        assert not (app / "pylock.toml").exists()

    def test_unknown_version_is_a_clear_error(self, tmp_path, wheels, local_index):
        """A version the index does not have fails the lock and keeps the old lock intact."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        build_ok(app, tmp_path / "store", index.url)
        before = (app / "pylock.toml").read_text()
        (app / "requirements.txt").write_text("alpha==9.9\n")
        result = build_cli(app, tmp_path / "store", index.url)
        assert result.code == 1
        assert "alpha==9.9" in result.err
        assert (app / "pylock.toml").read_text() == before

    def test_hash_mismatch_is_refused_and_nothing_is_stored(self, tmp_path, wheels, local_index):
        """A wheel changed on the index after locking is refused; the store gains no blob."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        cli("lock", app, "--index-url", index.url, "--platform", PLATFORM)
        # Replace the served file with different bytes under the same name.
        make_wheel(tmp_path / "evil", "alpha", "1.0", files={"alpha/__init__.py": "EVIL = 1\n"})
        (wheels / "alpha-1.0-py3-none-any.whl").write_bytes(
            (tmp_path / "evil" / "alpha-1.0-py3-none-any.whl").read_bytes()
        )
        result = build_cli(app, tmp_path / "store", index.url)
        assert result.code == 1
        assert "alpha 1.0 (alpha-1.0-py3-none-any.whl): sha256 is" in result.err
        store = tmp_path / "store"
        assert list((store / "blobs").rglob("*.whl")) == []
        assert [p for p in (store / "blobs").rglob("*") if p.is_file()] == []
        assert list((store / "tmp").iterdir()) == []
        assert not (store / "wheelhouses").exists()


class TestConcurrentBuilds:
    def test_two_builds_at_once_on_one_store_both_succeed(self, tmp_path, wheels, local_index):
        """Two processes building the same app into one store both finish with the same key."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "alpha==2.0\nbeta==1.0\n")
        cli("lock", app, "--index-url", index.url, "--platform", PLATFORM)
        store = tmp_path / "store"
        cmd = [
            sys.executable,
            "-m",
            "wheelbarrow",
            "build",
            str(app),
            "--store",
            str(store),
            "--index-url",
            index.url,
            "--platform",
            PLATFORM,
            "--json",
        ]
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
        keys = {json.loads(o)["key"] for o, _ in outs}
        assert len(keys) == 1
        house = Store(store).wheelhouse(keys.pop())
        assert sorted(p.name for p in house.glob("*.whl")) == [
            "alpha-2.0-py3-none-any.whl",
            "beta-1.0-py3-none-any.whl",
        ]
        assert list((store / "tmp").iterdir()) == []


def make_unpinned_app(directory: Path, requirements: str) -> Path:
    """An app with only requirements.txt: no .python-version, no pyproject, as many are."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "requirements.txt").write_text(requirements, encoding="utf-8")
    return directory


def changes_line(out: str) -> str | None:
    """The "Changed since the last build" line of a text report, if there is one."""
    return next((line for line in out.splitlines() if line.startswith("Changed since")), None)


class TestChangedSinceLastBuild:
    def test_a_reused_source_build_is_not_listed(self, tmp_path, wheels, local_index):
        """Adding a package lists only it, not the unchanged package built from its sdist."""
        make_c_extension_sdist(wheels)
        index = local_index(wheels)
        app = make_unpinned_app(tmp_path / "app", "cext==1.0\n")
        store = tmp_path / "store"
        build_ok(app, store, index.url)
        (app / "requirements.txt").write_text("cext==1.0\nalpha==2.0\n")

        result = build_cli(app, store, index.url)
        again = build_ok(make_unpinned_app(tmp_path / "other", "cext==1.0\n"), store, index.url)

        assert result.code == 0, result.err
        assert changes_line(result.out) == "Changed since the last build: alpha 2.0 (added)"
        assert again["changes"] == []  # another app: no previous build to compare with

    def test_a_rebuild_with_new_settings_says_why_not_old_to_same(
        self, tmp_path, wheels, local_index
    ):
        """Same source, new build settings: the package is listed as rebuilt, with the reason."""
        make_c_extension_sdist(wheels)
        index = local_index(wheels)
        app = make_unpinned_app(tmp_path / "app", "cext==1.0\nalpha==2.0\n")
        store = tmp_path / "store"
        build_ok(app, store, index.url)
        (app / "wheelbarrow.toml").write_text(
            '[packages.cext]\nconfig-settings = { define = "FIXTURE_VALUE=7" }\n'
        )

        report = build_ok(app, store, index.url)

        assert report["changes"] == [
            {
                "name": "cext",
                "old": "1.0",
                "new": "1.0",
                "detail": "rebuilt: build settings changed",
            }
        ]

    def test_an_edited_local_package_shows_its_version(self, tmp_path):
        """A local ./pkg directory edited between builds is listed by its version, never ?."""
        app = make_unpinned_app(tmp_path / "app", "./localpkg\n")
        unpack_into(make_c_extension_sdist(tmp_path / "d", "localpkg", "2.5"), app / "localpkg")
        store = tmp_path / "store"
        args = ("build", app, "--store", store, "--platform", PLATFORM, "--no-index")
        first = cli(*args)
        init = app / "localpkg" / "localpkg" / "__init__.py"
        init.write_text(init.read_text() + "\nEDITED = True\n")

        second = cli(*args)

        assert (first.code, second.code) == (0, 0), second.err
        assert "?" not in first.out + first.err + second.out + second.err
        assert "  localpkg 2.5: built (first build for this target)" in first.out
        assert changes_line(second.out) == (
            "Changed since the last build: localpkg 2.5 (rebuilt: source changed)"
        )

    def test_a_new_wheel_of_the_same_version_says_so(self, tmp_path, wheels, local_index):
        """A downloaded wheel replaced by another file of the same version is named as such."""
        index = local_index(wheels)
        app = make_unpinned_app(tmp_path / "app", "alpha\n")
        store = tmp_path / "store"
        build_ok(app, store, index.url)
        make_wheel(wheels, "alpha", "2.0", tag=f"py3-none-{PLATFORM}")  # ranks above any
        build_local_index(wheels)
        (app / "requirements.txt").write_text("alpha==2.0\n")  # relocks

        report = build_ok(app, store, index.url)

        assert report["changes"] == [
            {"name": "alpha", "old": "2.0", "new": "2.0", "detail": "same version, new file"}
        ]

    def test_a_local_wheel_rebuilt_under_its_name_is_locked_again(self, tmp_path):
        """A wheel file named by path and rebuilt with the same file name relocks, so the
        next build takes its new bytes and an install deploys its new code."""
        wheel = make_wheel(tmp_path / "mine", "gamma", "1.0", files={"gamma/__init__.py": "V=1\n"})
        app = make_unpinned_app(tmp_path / "app", f"{wheel}\n")
        store = tmp_path / "store"
        args = ("build", app, "--store", store, "--platform", PLATFORM, "--no-index", "--json")
        first = cli(*args)
        assert first.code == 0, first.err
        make_wheel(tmp_path / "mine", "gamma", "1.0", files={"gamma/__init__.py": "V=2\n"})

        second = cli(*args)
        again = cli(*args)

        assert second.code == 0, second.err
        assert second.json()["key"] != first.json()["key"]
        house = Path(second.json()["wheelhouse"]) / wheel.name
        assert house.read_bytes() == wheel.read_bytes()
        assert again.json()["key"] == second.json()["key"]  # and then it is up to date

    def test_a_local_sdist_rebuilt_under_its_name_is_locked_again(self, tmp_path):
        """An sdist file named by path and replaced with other bytes of the same name relocks
        and is built again."""
        sdist = make_c_extension_sdist(tmp_path / "mine", "cext", "1.0")
        app = make_unpinned_app(tmp_path / "app", f"{sdist}\n")
        store = tmp_path / "store"
        args = ("build", app, "--store", store, "--platform", PLATFORM, "--no-index", "--json")
        first = cli(*args)
        assert first.code == 0, first.err
        renamed = sdist.with_name("old-" + sdist.name)
        sdist.rename(renamed)
        make_c_extension_sdist(tmp_path / "mine", "cext", "1.0", define="FIXTURE_VALUE=9")

        second = cli(*args)

        assert second.code == 0, second.err
        assert second.json()["key"] != first.json()["key"]
        assert renamed.read_bytes() != sdist.read_bytes()

    def test_version_changes_and_removals_are_listed(self, tmp_path, wheels, local_index):
        """An upgrade reads old -> new; a dropped package reads removed."""
        index = local_index(wheels)
        app = make_unpinned_app(tmp_path / "app", "alpha==1.0\ngamma\n")
        store = tmp_path / "store"
        build_ok(app, store, index.url)
        (app / "requirements.txt").write_text("alpha==2.0\n")

        result = build_cli(app, store, index.url)

        assert changes_line(result.out) == (
            "Changed since the last build: alpha 1.0 -> 2.0, gamma 0.5 (removed)"
        )


class TestReportWording:
    def test_counts_of_one_read_in_the_singular(self, tmp_path, wheels, local_index):
        """One package reads "1 package" in lock, build and install, never "(s)"."""
        index = local_index(wheels)
        app = make_unpinned_app(tmp_path / "app", "alpha==2.0\n")
        store = tmp_path / "store"

        locked = cli("lock", app, "--index-url", index.url, "--platform", PLATFORM)
        first = build_cli(app, store, index.url)
        second = build_cli(app, store, index.url)
        installed = cli("install", app, "--store", store, "--into", tmp_path / "env")

        runs = (locked, first, second, installed)
        assert [r.code for r in runs] == [0, 0, 0, 0], [r.err for r in runs]
        assert "(s)" not in "".join(r.out + r.err for r in runs)
        assert "Locking 1 requirement for" in locked.err
        assert "Locked 1 package for" in locked.out
        assert "Fetching 1 file\n" in first.err
        assert " built: 1 package, 1 fetched" in first.out
        assert "is up to date (1 package): nothing to do" in second.out
        assert ": 1 package, Python" in installed.out

    def test_one_package_without_a_wheel_reads_in_the_singular(self, tmp_path, local_index):
        """The no-compatible-wheel error for one package says "1 package has"."""
        d = tmp_path / "dists"
        make_sdist(d, "onlysdist", "1.0")
        index = local_index(d)
        app = make_unpinned_app(tmp_path / "app", "onlysdist\n")

        result = build_cli(app, tmp_path / "store", index.url, "--only-binary", ":all:")

        assert result.code == 1
        assert "1 package has no compatible wheel for CPython" in result.err
