"""Locking with uv, and reading locks back: hashes, preferences, freshness, bad locks."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from support import build_local_index, make_wheel, sha256_of
from support.apps import HOST_PYTHON, PLATFORM, build_cli, cli, make_app

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.requirements_file import parse_requirements_text
from wheelbarrow.app.target import Target
from wheelbarrow.lock.lockfile import read_lock
from wheelbarrow.lock.resolve import LockRequest


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "beta", "1.0", requires=["alpha"])
    return d


def lock(app: Path, index_url: str, *extra: str) -> None:
    result = cli("lock", app, "--index-url", index_url, "--platform", PLATFORM, *extra)
    assert result.code == 0, result.err


class TestLock:
    def test_lock_records_hashes_and_its_inputs(self, tmp_path, dists, local_index):
        """pylock.toml holds each wheel with its sha256 and wheelbarrow's inputs digest."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "beta\n")
        lock(app, index.url)
        data = tomllib.loads((app / "pylock.toml").read_text())
        packages = {p["name"]: p for p in data["packages"]}
        assert set(packages) == {"alpha", "beta"}
        wheel = packages["alpha"]["wheels"][0]
        assert wheel["hashes"]["sha256"] == sha256_of(dists / "alpha-1.0-py3-none-any.whl")
        tool = data["tool"]["wheelbarrow"]
        assert tool["inputs"].startswith("sha256:")
        assert tool["platform"] == PLATFORM
        assert "127.0.0.1" not in tool["index"]  # a digest, never the URL itself

    def test_existing_lock_keeps_versions_of_unchanged_packages(self, tmp_path, dists, local_index):
        """Adding a requirement relocks, but an unpinned package keeps its locked version."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "alpha\n")
        lock(app, index.url)
        make_wheel(dists, "alpha", "2.0")
        make_wheel(dists, "gamma", "1.0")
        from support import build_local_index

        build_local_index(dists)
        (app / "requirements.txt").write_text("alpha\ngamma\n")
        lock(app, index.url)
        versions = {
            p["name"]: p["version"]
            for p in tomllib.loads((app / "pylock.toml").read_text())["packages"]
        }
        assert versions == {"alpha": "1.0", "gamma": "1.0"}

    def test_constraints_file_is_honoured(self, tmp_path, dists, local_index):
        """A -c constraints file limits versions without adding packages."""
        make_wheel(dists, "alpha", "2.0")
        index = local_index(dists)
        app = make_app(tmp_path / "app", "-c constraints.txt\nbeta\n")
        (app / "constraints.txt").write_text("alpha<2\nunused==1.0\n")
        lock(app, index.url)
        versions = {
            p["name"]: p["version"]
            for p in tomllib.loads((app / "pylock.toml").read_text())["packages"]
        }
        assert versions == {"alpha": "1.0", "beta": "1.0"}

    def test_matching_hash_option_is_accepted(self, tmp_path, dists, local_index):
        """A --hash that matches the locked wheel passes."""
        index = local_index(dists)
        digest = sha256_of(dists / "alpha-1.0-py3-none-any.whl")
        app = make_app(tmp_path / "app", f"alpha==1.0 --hash=sha256:{digest}\n")
        lock(app, index.url)

    def test_mismatching_hash_option_names_the_line(self, tmp_path, dists, local_index):
        """A --hash no locked file has stops the lock at that requirement's line."""
        index = local_index(dists)
        app = make_app(
            tmp_path / "app", "beta\nalpha==1.0 \\\n    --hash=sha256:" + "ab" * 32 + "\n"
        )
        result = cli("lock", app, "--index-url", index.url, "--platform", PLATFORM)
        assert result.code == 1
        assert f"{app / 'requirements.txt'}:2: alpha 1.0" in result.err
        assert "no file matching the --hash options" in result.err
        assert not (app / "pylock.toml").exists()

    def test_another_platform_gets_its_own_lock_beside_the_default(
        self, tmp_path, dists, local_index
    ):
        """A second --platform writes pylock.<name>.toml; pylock.toml stays the default."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "alpha\n")
        store = tmp_path / "store"
        assert build_cli(app, store, index.url).code == 0
        default = (app / "pylock.toml").read_bytes()
        other = ("--platform", "manylinux_2_17_x86_64")
        result = cli("build", app, "--store", store, "--index-url", index.url, *other)
        assert result.code == 0, result.err
        side = app / f"pylock.py{HOST_PYTHON.replace('.', '_')}-manylinux_2_17_x86_64.toml"
        assert f"locked: no {side.name} yet" in result.err
        tool = tomllib.loads(side.read_text())["tool"]["wheelbarrow"]
        assert tool["platform"] == "manylinux_2_17_x86_64"
        assert (app / "pylock.toml").read_bytes() == default
        # Both stand: neither build locks again, and the default is still pylock.toml's target.
        again = cli("build", app, "--store", store, "--index-url", index.url, *other)
        plain = cli("build", app, "--store", store, "--index-url", index.url)
        assert "Locking" not in again.err + plain.err
        assert "manylinux_2_17_x86_64" not in plain.err
        assert (app / "pylock.toml").read_bytes() == default

    def test_install_finds_the_lock_of_the_target_it_is_asked_for(
        self, tmp_path, dists, local_index
    ):
        """install --platform reads that target's pylock.<name>.toml, offline."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "alpha\n")
        store = tmp_path / "store"
        other = ("--platform", "manylinux_2_17_x86_64")
        assert build_cli(app, store, index.url).code == 0
        assert cli("build", app, "--store", store, "--index-url", index.url, *other).code == 0
        index.requests.clear()
        for platform in ("manylinux_2_17_x86_64", PLATFORM):
            into = tmp_path / f"env-{platform}"
            result = cli("install", app, "--store", store, "--into", into, "--platform", platform)
            assert result.code == 0, result.err
            assert (into / "bin" / "python").exists()
        assert index.requests == []  # both locks stood, so nothing was asked of the index
        assert len(list(app.glob("pylock*.toml"))) == 2

    def test_lock_recorded_target_is_reused_by_build(self, tmp_path, dists, local_index):
        """build without --platform uses the platform the lock was made for: no relock."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "alpha\n")
        lock(app, index.url, "--platform", "manylinux_2_17_aarch64")
        result = cli(
            "build", app, "--store", tmp_path / "store", "--index-url", index.url, "--json"
        )
        assert result.code == 0, result.err
        assert result.json()["target"]["platform"] == "manylinux_2_17_aarch64"
        assert "locked again" not in result.err


def locked(app: Path) -> dict[str, str]:
    """``{name: version}`` of app's pylock.toml."""
    data = tomllib.loads((app / "pylock.toml").read_text())
    return {p["name"]: p["version"] for p in data["packages"]}


class TestUpgrade:
    @pytest.fixture
    def index_with_newer(self, tmp_path, local_index):
        """alpha and beta 1.0; after the first lock, 2.0 of both is published."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        make_wheel(d, "beta", "1.0", requires=["alpha"])
        index = local_index(d)

        def publish() -> None:
            make_wheel(index.files_dir, "alpha", "2.0")
            make_wheel(index.files_dir, "beta", "2.0", requires=["alpha"])
            build_local_index(index.files_dir, ())

        return index, publish

    def test_a_removed_pin_keeps_its_version_until_asked_to_upgrade(
        self, tmp_path, index_with_newer
    ):
        """Unpinning keeps the locked version (preferences); --upgrade-package takes the newest
        of that package only, --upgrade of every package."""
        index, publish = index_with_newer
        app = make_app(tmp_path / "app", "alpha==1.0\nbeta==1.0\n")
        lock(app, index.url)
        publish()
        (app / "requirements.txt").write_text("alpha\nbeta\n")
        lock(app, index.url)
        assert locked(app) == {"alpha": "1.0", "beta": "1.0"}
        lock(app, index.url, "--upgrade-package", "beta")
        assert locked(app) == {"alpha": "1.0", "beta": "2.0"}
        lock(app, index.url, "--upgrade")
        assert locked(app) == {"alpha": "2.0", "beta": "2.0"}

    def test_build_with_an_unchanged_app_does_not_upgrade(self, tmp_path, index_with_newer):
        """Without --upgrade a newer release changes nothing: the lock stands."""
        index, publish = index_with_newer
        app = make_app(tmp_path / "app", "alpha\n")
        lock(app, index.url)
        publish()
        assert build_cli(app, tmp_path / "store", index.url).code == 0
        assert locked(app) == {"alpha": "1.0"}

    def test_upgrading_a_package_managers_lock_is_refused_with_its_own_command(self, tmp_path):
        """uv.lock pins the versions: `lock --upgrade` says to run `uv lock --upgrade`."""
        (tmp_path / "pyproject.toml").write_text('[project]\nname = "a"\nversion = "1"\n')
        (tmp_path / "uv.lock").write_text("")
        result = cli("lock", tmp_path, "--upgrade")
        assert result.code == 2
        assert "hint: upgrade with `uv lock --upgrade`, then build again" in result.err


class TestForeignLocks:
    def _foreign(self, app: Path, index_url: str) -> str:
        """Lock ``app``, then strip wheelbarrow's table: a lock as another tool leaves it."""
        lock(app, index_url)
        text = (app / "pylock.toml").read_text()
        foreign = text[: text.index("[tool.wheelbarrow]")]
        (app / "pylock.toml").write_text(foreign)
        return foreign

    def test_lock_written_elsewhere_is_used_as_given(self, tmp_path, dists, local_index):
        """A pylock.toml without wheelbarrow's table is the user's: used, never rewritten."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "alpha\n")
        foreign = self._foreign(app, index.url)
        (app / "requirements.txt").write_text("alpha>=1\n")  # would relock if the lock were ours
        result = cli(
            "build", app, "--store", tmp_path / "store", "--index-url", index.url, "--json"
        )
        assert result.code == 0, result.err
        assert "using pylock.toml as given (written by uv, not by wheelbarrow)" in result.err
        assert [w.split("-")[0] for w in result.json()["fetched"]] == ["alpha"]
        assert (app / "pylock.toml").read_text() == foreign

    def test_a_requirement_the_foreign_lock_lacks_is_an_error_naming_it(
        self, tmp_path, dists, local_index
    ):
        """A requirement added beside another tool's lock is not dropped without a word."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "alpha\n")
        foreign = self._foreign(app, index.url)
        (app / "requirements.txt").write_text("alpha\nbeta\n")
        result = cli("build", app, "--store", tmp_path / "store", "--index-url", index.url)
        assert result.code == 2
        assert f"{app / 'requirements.txt'}:2: beta is not in pylock.toml" in result.err
        assert "--force" in result.err
        assert (app / "pylock.toml").read_text() == foreign

    def test_a_version_the_foreign_lock_does_not_pin_is_an_error(
        self, tmp_path, dists, local_index
    ):
        """A specifier the foreign lock's version does not satisfy names both."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "alpha\n")
        self._foreign(app, index.url)
        version = tomllib.loads((app / "pylock.toml").read_text())["packages"][0]["version"]
        (app / "requirements.txt").write_text(f"alpha>{version}\n")
        result = cli("build", app, "--store", tmp_path / "store", "--index-url", index.url)
        assert result.code == 2
        wanted = f":1: alpha>{version} is not satisfied by pylock.toml, which pins alpha {version}"
        assert wanted in result.err

    def test_lock_never_overwrites_a_foreign_lock_without_force(self, tmp_path, dists, local_index):
        """`wheelbarrow lock` refuses to replace another tool's lock; --force replaces it."""
        index = local_index(dists)
        app = make_app(tmp_path / "app", "alpha\n")
        foreign = self._foreign(app, index.url)
        refused = cli("lock", app, "--index-url", index.url)
        assert refused.code == 2
        assert "pylock.toml: was not written by wheelbarrow (uv); locking would replace it" in (
            refused.err
        )
        assert (app / "pylock.toml").read_text() == foreign
        forced = cli("lock", app, "--index-url", index.url, "--force")
        assert forced.code == 0, forced.err
        assert "[tool.wheelbarrow]" in (app / "pylock.toml").read_text()

    def test_lock_only_app_builds(self, tmp_path, dists, local_index):
        """An app with just a pylock.toml builds from it."""
        index = local_index(dists)
        source = make_app(tmp_path / "source", "beta\n")
        lock(source, index.url)
        app = tmp_path / "app"
        app.mkdir()
        (app / "pylock.toml").write_text((source / "pylock.toml").read_text())
        result = cli("build", app, "--store", tmp_path / "store", "--json")
        assert result.code == 0, result.err
        assert result.json()["packages"] == 2

    def test_invalid_lock_names_the_file(self, tmp_path):
        """A lock that breaks PEP 751 is reported with its path and the rule broken."""
        path = tmp_path / "pylock.toml"
        path.write_text('lock-version = "1.0"\ncreated-by = "x"\n[[packages]]\nversion = "1"\n')
        with pytest.raises(InputError, match=r"pylock\.toml: not a valid PEP 751 lock"):
            read_lock(path)

    def test_lock_that_is_not_toml_names_the_file(self, tmp_path):
        """Broken TOML is reported with its path."""
        path = tmp_path / "pylock.toml"
        path.write_text("lock-version = \n")
        with pytest.raises(InputError, match=r"pylock\.toml: not valid TOML"):
            read_lock(path)


class TestDigest:
    def _request(self, text: str, **kw: object) -> LockRequest:
        reqs = parse_requirements_text(text, path=Path("requirements.txt"))
        target = Target.parse(python="3.12", platform=str(kw.get("platform", PLATFORM)))
        return LockRequest(requirements=reqs, target=target, index=IndexOptions())

    def test_formatting_does_not_change_the_digest(self):
        """Comments, blank lines and order are not inputs."""
        assert (
            self._request("a==1\nb==2\n").digest == self._request("# x\nb==2  # y\n\na==1\n").digest
        )

    def test_pins_and_targets_change_the_digest(self):
        """A different pin or platform is a different lock."""
        base = self._request("a==1\n").digest
        assert self._request("a==2\n").digest != base
        assert self._request("a==1\n", platform="manylinux_2_17_x86_64").digest != base


class TestLockScratch:
    def test_a_killed_locks_scratch_directory_is_cleaned_by_the_next_lock(
        self, tmp_path, dists, local_index, monkeypatch
    ):
        """wheelbarrow-lock-* left in TMPDIR by a killed lock goes at the next lock; a file of
        the user's that merely starts the same way stays."""
        import tempfile

        tmp = tmp_path / "tmp"
        tmp.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        (tmp / "wheelbarrow-lock-4242-0a1b2c3d").mkdir()
        (tmp / "wheelbarrow-lock-4242-0a1b2c3d" / "requirements.in").write_text("x\n")
        (tmp / "wheelbarrow-lock-notes.txt").write_text("mine")
        index = local_index(dists)
        lock(make_app(tmp_path / "app", "alpha\n"), index.url)
        assert sorted(p.name for p in tmp.iterdir()) == ["wheelbarrow-lock-notes.txt"]


class TestLockDigest:
    @pytest.mark.parametrize("text", ["tool = 3\n", '[tool]\nwheelbarrow = "x"\n', "= bad"])
    def test_a_lock_whose_tool_is_not_a_table_has_no_digest(self, text):
        """A lock whose tool (or tool.wheelbarrow) is not a table is simply not ours."""
        from wheelbarrow.lock.resolve import lock_digest

        assert lock_digest(text) is None


class TestLockFailure:
    def test_a_missing_system_library_met_while_locking_is_named(self):
        """uv building an sdist for its metadata (GDAL without gdal-config) fails the lock; the
        hint names the library and its Debian package instead of "check the names"."""
        from wheelbarrow.lock.resolve import _lock_failure

        stderr = (
            "  \u00d7 Failed to build `gdal==3.9.2`\n"  # uv's marker, as it prints it
            "  ╰─▶ Call to `setuptools.build_meta.prepare_metadata_for_build_wheel` failed\n"
            "      [stderr]\n"
            "      Could not find gdal-config. Make sure you have installed the GDAL native "
            "library and development headers.\n"
        )
        reqs = parse_requirements_text("gdal==3.9.2\n", path=Path("requirements.txt"))
        target = Target.parse(python="3.11", platform=PLATFORM)
        error = _lock_failure(stderr, reqs, target)
        assert error.hint == (
            "uv had to build a package to read its metadata, and the build needs GDAL (the log "
            'says "Could not find gdal-config"): apt-get install libgdal-dev, then build again'
        )
        assert "requirements.txt:1: gdal==3.9.2" in error.message
