"""pipfilelock: Pipfile.lock files made by the real Pipenv, read into exact pins."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.managers import (
    make_pipenv_project,
    pipenv_lock_is_fresh,
    run_pipenv,
    write_pipfile,
)

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.managers import Groups, ManagedLock, StaleLockError
from wheelbarrow.app.pipfilelock import pipfile_hashes, read_pipfile_lock
from wheelbarrow.app.target import Target

PY311 = Target.parse(python="3.11", platform="manylinux_2_28_x86_64")
PY39 = Target.parse(python="3.9", platform="manylinux_2_28_x86_64")
MAIN = {"requests", "idna", "certifi", "chardet", "urllib3"}

# No [[source]]: Pipenv uses its default index, as most Pipfiles do.
PIPFILE = """
    [packages]
    requests = "==2.25.1"
    idna = "==2.10"
    six = {version = "==1.15.0", markers = "python_version < '3.10'"}
    localpkg = {path = "localpkg", editable = true}

    [dev-packages]
    iniconfig = "==1.1.1"

    [docs]
    packaging = "==20.9"

    [requires]
    python_version = "3.11"
"""


LOCALPKG = """\
[build-system]
requires = ["flit_core>=3.2,<4"]
build-backend = "flit_core.buildapi"

[project]
name = "localpkg"
version = "0.3.0"
description = "a local package"
"""


def _versions(lock: ManagedLock) -> dict[str, str]:
    return {pin.name: pin.version for pin in lock.pins}


def _copy(project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".venv"))
    return copy


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the real Pipenv keeps its caches and configuration for this module."""
    return tmp_path_factory.mktemp("tools-home")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Path:
    """A Pipenv project (with a local path package) locked once by the real `pipenv lock`."""
    root = tmp_path_factory.mktemp("pipenv")
    package = root / "localpkg"
    (package / "localpkg").mkdir(parents=True)
    (package / "localpkg" / "__init__.py").write_text("", encoding="utf-8")
    (package / "pyproject.toml").write_text(LOCALPKG, encoding="utf-8")
    return make_pipenv_project(root, PIPFILE, home=home)


@pytest.mark.network
class TestPipfileLock:
    """A Pipfile with default, develop and a custom category, locked by Pipenv."""

    def test_default_pins_locked_versions_and_dependencies(self, project: Path) -> None:
        """The default section deploys the locked (old) versions and their dependencies."""
        lock = read_pipfile_lock(project, groups=Groups(), target=PY311)
        versions = _versions(lock)
        assert set(versions) == MAIN | {"localpkg"}
        assert versions["requests"] == "2.25.1"
        assert versions["idna"] == "2.10"
        assert lock.manager == "pipenv"
        assert lock.path == project / "Pipfile.lock"

    def test_pins_carry_the_lock_hashes(self, project: Path) -> None:
        """Each pin carries every hash the lock lists for it."""
        data = json.loads((project / "Pipfile.lock").read_text(encoding="utf-8"))
        for pin in read_pipfile_lock(project, groups=Groups(), target=PY39).pins:
            if pin.requirement is not None:
                continue
            assert pin.hashes and set(pin.hashes) == set(data["default"][pin.name]["hashes"])

    def test_path_entry_is_a_direct_reference(self, project: Path) -> None:
        """An editable path entry becomes ``name @ file:///absolute/path``, with a note."""
        lock = read_pipfile_lock(project, groups=Groups(), target=PY311)
        (local,) = [pin for pin in lock.pins if pin.name == "localpkg"]
        assert local.requirement == f"localpkg @ {(project / 'localpkg').resolve().as_uri()}"
        assert lock.notes == (
            "localpkg is editable in Pipfile.lock: it is built into a wheel and installed "
            "non-editable",
        )

    def test_marker_kept_and_applied(self, project: Path) -> None:
        """six keeps its marker on the pin, and is dropped for a target it excludes."""
        assert "six" not in _versions(read_pipfile_lock(project, groups=Groups(), target=PY311))
        lock = read_pipfile_lock(project, groups=Groups(), target=PY39)
        (six,) = [pin for pin in lock.pins if pin.name == "six"]
        assert six.version == "1.15.0"
        assert six.marker == "python_version < '3.10'"

    def test_develop_only_when_asked(self, project: Path) -> None:
        """The develop section is left out by default and deployed with Groups(dev=True)."""
        assert "iniconfig" not in _versions(
            read_pipfile_lock(project, groups=Groups(), target=PY311)
        )
        dev = _versions(read_pipfile_lock(project, groups=Groups(dev=True), target=PY311))
        assert dev["iniconfig"] == "1.1.1"
        assert "packaging" not in dev

    def test_category_by_name(self, project: Path) -> None:
        """A custom Pipfile category is deployed by name with its dependencies."""
        docs = _versions(read_pipfile_lock(project, groups=Groups(names=("docs",)), target=PY311))
        assert docs["packaging"] == "20.9"
        assert "pyparsing" in docs

    def test_unknown_category_is_an_error(self, project: Path) -> None:
        """A category the Pipfile does not define is refused, listing those it does."""
        with pytest.raises(InputError, match=r"no package category named tests.*docs"):
            read_pipfile_lock(project, groups=Groups(names=("tests",)), target=PY311)

    def test_python_and_sources(self, project: Path) -> None:
        """The lock's python_version and its source URL are reported."""
        lock = read_pipfile_lock(project, groups=Groups(), target=PY311)
        data = json.loads((project / "Pipfile.lock").read_text(encoding="utf-8"))
        assert lock.python == "3.11"
        assert lock.index_urls == (data["_meta"]["sources"][0]["url"],)

    def test_unchanged_is_fresh_for_pipenv_and_reader(self, project: Path, home: Path) -> None:
        """`pipenv verify` and the reader both accept the lock as Pipenv wrote it."""
        assert pipenv_lock_is_fresh(project, home=home).code == 0
        read_pipfile_lock(project, groups=Groups(), target=PY311)

    def test_edited_is_stale(self, project: Path, home: Path, tmp_path: Path) -> None:
        """A changed pin makes `pipenv verify` and the reader refuse the lock."""
        copy = _copy(project, tmp_path)
        write_pipfile(copy, PIPFILE.replace('idna = "==2.10"', 'idna = "==2.9"'))
        checked = pipenv_lock_is_fresh(copy, home=home)
        assert checked.code != 0
        assert "out-of-date" in checked.output
        with pytest.raises(StaleLockError) as caught:
            read_pipfile_lock(copy, groups=Groups(), target=PY311)
        assert str(copy / "Pipfile.lock") in caught.value.message
        assert str(copy / "Pipfile") in caught.value.message
        assert caught.value.hint is not None and caught.value.hint.startswith("run `pipenv lock`")

    def test_name_spelling_stays_fresh(self, project: Path, home: Path, tmp_path: Path) -> None:
        """``Requests`` for ``requests`` is the same Pipfile to Pipenv and to the reader."""
        copy = _copy(project, tmp_path)
        write_pipfile(copy, PIPFILE.replace("requests =", "Requests ="))
        assert pipenv_lock_is_fresh(copy, home=home).code == 0
        read_pipfile_lock(copy, groups=Groups(), target=PY311)

    def test_digest_follows_groups(self, project: Path) -> None:
        """The digest is stable, and changes with the sections selected."""
        one = read_pipfile_lock(project, groups=Groups(), target=PY311).digest
        assert one == read_pipfile_lock(project, groups=Groups(), target=PY311).digest
        assert one != read_pipfile_lock(project, groups=Groups(dev=True), target=PY311).digest


@pytest.mark.network
class TestPipfileSourceVariable:
    """A [[source]] whose URL is an environment variable, as Pipenv allows."""

    @pytest.fixture(scope="class")
    @classmethod
    def sourced(cls, tmp_path_factory: pytest.TempPathFactory, home: Path, project: Path) -> Path:
        # The default index's URL, as Pipenv wrote it, reached through a variable.
        url = json.loads((project / "Pipfile.lock").read_text(encoding="utf-8"))["_meta"][
            "sources"
        ][0]["url"]
        root = tmp_path_factory.mktemp("pipenv-source")
        write_pipfile(
            root,
            """
            [[source]]
            name = "mine"
            url = "${WB_TEST_INDEX_URL}"
            verify_ssl = true

            [packages]
            six = "==1.15.0"
            """,
        )
        done = run_pipenv(root, "lock", home=home, env={"WB_TEST_INDEX_URL": url})
        assert done.code == 0, done.output
        return root

    def test_variable_kept_as_written(self, sourced: Path) -> None:
        """The source URL stays ``${VAR}``: it is expanded where the index is used."""
        lock = read_pipfile_lock(sourced, groups=Groups(), target=PY311)
        assert lock.index_urls == ("${WB_TEST_INDEX_URL}",)
        assert _versions(lock) == {"six": "1.15.0"}


class TestMalformedPipfileLock:
    """Broken or missing files are errors naming the file and saying what to do."""

    def test_missing_lock_refused_as_heroku_does(self, tmp_path: Path) -> None:
        """A Pipfile without Pipfile.lock is refused with `pipenv lock` as the fix."""
        write_pipfile(tmp_path, PIPFILE)
        with pytest.raises(InputError) as caught:
            read_pipfile_lock(tmp_path, groups=Groups(), target=PY311)
        assert str(tmp_path / "Pipfile.lock") in caught.value.message
        assert "aren't pinned" in caught.value.message
        assert caught.value.hint is not None and "run 'pipenv lock'" in caught.value.hint

    def test_invalid_json_names_file_and_line(self, tmp_path: Path) -> None:
        """A lock that is not JSON is refused naming the file and the line."""
        write_pipfile(tmp_path, PIPFILE)
        (tmp_path / "Pipfile.lock").write_text('{\n  "_meta": {,\n}', encoding="utf-8")
        with pytest.raises(InputError, match=r"Pipfile\.lock: not valid JSON: .*line 2") as caught:
            read_pipfile_lock(tmp_path, groups=Groups(), target=PY311)
        assert caught.value.hint is not None and "pipenv lock" in caught.value.hint

    def test_missing_pipfile(self, tmp_path: Path) -> None:
        """A Pipfile.lock without its Pipfile cannot be checked and is refused."""
        (tmp_path / "Pipfile.lock").write_text('{"_meta": {}}', encoding="utf-8")
        with pytest.raises(InputError, match=r"Pipfile: not found") as caught:
            read_pipfile_lock(tmp_path, groups=Groups(), target=PY311)
        assert caught.value.hint == "commit the Pipfile that Pipfile.lock was made from"

    def test_entry_without_exact_version(self, tmp_path: Path) -> None:
        """An entry whose version is not ``==X`` is refused naming the section and package."""
        write_pipfile(tmp_path, '[[source]]\nname = "mine"\nurl = "${INDEX}"\nverify_ssl = true\n')
        pipfile = {"source": [{"name": "mine", "url": "${INDEX}", "verify_ssl": True}]}
        meta = {"hash": {"sha256": pipfile_hashes(pipfile)[0]}, "sources": pipfile["source"]}
        lock = {"_meta": meta, "default": {"six": {"version": ">=1.15"}}}
        (tmp_path / "Pipfile.lock").write_text(json.dumps(lock), encoding="utf-8")
        with pytest.raises(InputError, match=r'"default" → "six": version \'>=1\.15\''):
            read_pipfile_lock(tmp_path, groups=Groups(), target=PY311)
