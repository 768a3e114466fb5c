"""poetrylock: poetry.lock files made by the real Poetry 1.8 and 2.x, read into exact pins."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from support.managers import (
    POETRY_1,
    POETRY_2,
    PoetryVersion,
    make_poetry_project,
    poetry_lock_is_fresh,
    write_pyproject,
)

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.managers import Groups, ManagedLock, StaleLockError
from wheelbarrow.app.poetrylock import is_poetry_project, read_poetry_lock
from wheelbarrow.app.target import Target

PY311 = Target.parse(python="3.11", platform="manylinux_2_28_x86_64")
PY39 = Target.parse(python="3.9", platform="manylinux_2_28_x86_64")
# requests 2.25.1 pulls certifi, chardet, idna and urllib3: transitive pins.
MAIN = {"requests", "idna", "certifi", "chardet", "urllib3"}

POETRY1_PYPROJECT = """
    [tool.poetry]
    name = "app"
    version = "0.1.0"
    description = "an app"
    authors = ["A <a@example.com>"]
    package-mode = false

    [tool.poetry.dependencies]
    python = "^3.9"
    requests = "2.25.1"
    idna = "2.10"
    six = {version = "1.15.0", markers = "python_version < '3.10'"}
    localpkg = {path = "localpkg"}

    [tool.poetry.dev-dependencies]
    iniconfig = "1.1.1"

    [tool.poetry.group.docs.dependencies]
    packaging = "20.9"
"""

LOCALPKG = """
    [tool.poetry]
    name = "localpkg"
    version = "0.3.0"
    description = ""
    authors = ["A <a@example.com>"]

    [build-system]
    requires = ["poetry-core"]
    build-backend = "poetry.core.masonry.api"
"""

POETRY2_PYPROJECT = """
    [project]
    name = "app"
    version = "0.1.0"
    description = "an app"
    requires-python = ">=3.9"
    dependencies = [
        "requests==2.25.1",
        "idna==2.10",
        "six==1.15.0; python_version < '3.10'",
    ]

    [dependency-groups]
    dev = ["iniconfig==1.1.1"]

    [tool.poetry]
    package-mode = false

    [tool.poetry.group.docs.dependencies]
    packaging = "20.9"
"""

# Poetry 1's layout ([tool.poetry.dependencies] only), locked by Poetry 2: the
# apps that "nothing says what the app needs" failed on.
POETRY2_LEGACY_PYPROJECT = """
    [tool.poetry]
    name = "app"
    version = "0.1.0"
    description = "an app"
    authors = ["A <a@example.com>"]
    package-mode = false

    [tool.poetry.dependencies]
    python = ">=3.9"
    six = "1.15.0"
    iniconfig = {version = "1.1.1", optional = true}

    [tool.poetry.extras]
    ini = ["iniconfig"]
"""


def _versions(lock: ManagedLock) -> dict[str, str]:
    return {pin.name: pin.version for pin in lock.pins}


def _lock_hashes(project: Path) -> dict[str, set[str]]:
    data = tomllib.loads((project / "poetry.lock").read_text(encoding="utf-8"))
    return {p["name"]: {f["hash"] for f in p.get("files", [])} for p in data["package"]}


def _copy(project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    return copy


@pytest.fixture(scope="class")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the real tools keep their caches and configuration for this class."""
    return tmp_path_factory.mktemp("tools-home")


@pytest.mark.network
class TestPoetry1Lock:
    """A Poetry 1.8 project ([tool.poetry] dependencies, dev-dependencies, a group), lock 2.0."""

    @pytest.fixture(scope="class")
    @classmethod
    def project(cls, tmp_path_factory: pytest.TempPathFactory, home: Path) -> Path:
        root = tmp_path_factory.mktemp("poetry1")
        write_pyproject(root / "localpkg", LOCALPKG)
        (root / "localpkg" / "localpkg").mkdir()
        (root / "localpkg" / "localpkg" / "__init__.py").write_text("", encoding="utf-8")
        return make_poetry_project(root, POETRY_1, POETRY1_PYPROJECT, home=home)

    def test_main_group_pins_locked_versions_and_dependencies(self, project: Path) -> None:
        """The main group deploys the locked (old) versions and their transitive dependencies."""
        lock = read_poetry_lock(project, groups=Groups(), target=PY311)
        versions = _versions(lock)
        assert set(versions) == MAIN | {"localpkg"}
        assert versions["requests"] == "2.25.1"
        assert versions["idna"] == "2.10"
        assert lock.manager == "poetry"
        assert lock.path == project / "poetry.lock"

    def test_pins_carry_every_hash_of_the_lock(self, project: Path) -> None:
        """Each index pin carries every sha256 the lock's files list for it."""
        lock = read_poetry_lock(project, groups=Groups(), target=PY311)
        hashes = _lock_hashes(project)
        for pin in lock.pins:
            if pin.requirement is None:
                assert pin.hashes and set(pin.hashes) == hashes[pin.name]

    def test_path_dependency_is_a_direct_reference(self, project: Path) -> None:
        """A path dependency becomes ``name @ file:///absolute/path``."""
        lock = read_poetry_lock(project, groups=Groups(), target=PY311)
        (local,) = [pin for pin in lock.pins if pin.name == "localpkg"]
        assert local.requirement == f"localpkg @ {(project / 'localpkg').resolve().as_uri()}"

    def test_marker_selects_for_the_target(self, project: Path) -> None:
        """six (``python_version < '3.10'``) is pinned for Python 3.9, not for 3.11."""
        assert "six" not in _versions(read_poetry_lock(project, groups=Groups(), target=PY311))
        assert _versions(read_poetry_lock(project, groups=Groups(), target=PY39))["six"] == "1.15.0"

    def test_dev_dependencies_only_when_asked(self, project: Path) -> None:
        """dev-dependencies are left out by default and deployed with Groups(dev=True)."""
        assert "iniconfig" not in _versions(
            read_poetry_lock(project, groups=Groups(), target=PY311)
        )
        dev = _versions(read_poetry_lock(project, groups=Groups(dev=True), target=PY311))
        assert dev["iniconfig"] == "1.1.1"
        assert "packaging" not in dev

    def test_named_group_with_its_dependencies(self, project: Path) -> None:
        """A named group adds its packages and theirs (packaging pulls pyparsing)."""
        docs = _versions(read_poetry_lock(project, groups=Groups(names=("docs",)), target=PY311))
        assert docs["packaging"] == "20.9"
        assert "pyparsing" in docs

    def test_unknown_group_is_an_error(self, project: Path) -> None:
        """A group the project does not define is refused, listing those it does."""
        with pytest.raises(InputError, match=r"no group named tests.*docs"):
            read_poetry_lock(project, groups=Groups(names=("tests",)), target=PY311)

    def test_unchanged_is_fresh_for_poetry_and_reader(self, project: Path, home: Path) -> None:
        """Poetry 1.8 and the reader both accept the lock as Poetry wrote it."""
        assert poetry_lock_is_fresh(POETRY_1, project, home=home).code == 0
        read_poetry_lock(project, groups=Groups(), target=PY311)

    def test_irrelevant_edit_stays_fresh(self, project: Path, home: Path, tmp_path: Path) -> None:
        """A new description changes no content-hash, for Poetry and for the reader."""
        copy = _copy(project, tmp_path)
        write_pyproject(copy, POETRY1_PYPROJECT.replace("an app", "another app"))
        assert poetry_lock_is_fresh(POETRY_1, copy, home=home).code == 0
        read_poetry_lock(copy, groups=Groups(), target=PY311)

    def test_edited_dependencies_are_stale(self, project: Path, home: Path, tmp_path: Path) -> None:
        """A changed pin makes Poetry 1.8 and the reader refuse the lock, with 1.x's fix."""
        copy = _copy(project, tmp_path)
        write_pyproject(copy, POETRY1_PYPROJECT.replace('idna = "2.10"', 'idna = "2.9"'))
        checked = poetry_lock_is_fresh(POETRY_1, copy, home=home)
        assert checked.code != 0, checked.output
        assert "changed significantly" in checked.output
        with pytest.raises(StaleLockError) as caught:
            read_poetry_lock(copy, groups=Groups(), target=PY311)
        assert str(copy / "poetry.lock") in caught.value.message
        assert str(copy / "pyproject.toml") in caught.value.message
        assert caught.value.hint is not None and "`poetry lock --no-update`" in caught.value.hint

    def test_digest_follows_lock_and_groups(self, project: Path) -> None:
        """The digest is stable, and changes with the groups selected."""
        one = read_poetry_lock(project, groups=Groups(), target=PY311).digest
        assert one == read_poetry_lock(project, groups=Groups(), target=PY311).digest
        assert one != read_poetry_lock(project, groups=Groups(dev=True), target=PY311).digest

    def test_is_a_poetry_project(self, project: Path) -> None:
        """[tool.poetry.dependencies] marks a project that needs its poetry.lock."""
        assert is_poetry_project(project)


@pytest.mark.network
class TestPoetry2Lock:
    """A Poetry 2 project: [project] dependencies, [dependency-groups], a Poetry group."""

    @pytest.fixture(scope="class")
    @classmethod
    def project(cls, tmp_path_factory: pytest.TempPathFactory, home: Path) -> Path:
        root = tmp_path_factory.mktemp("poetry2")
        return make_poetry_project(root, POETRY_2, POETRY2_PYPROJECT, home=home)

    def test_main_group_pins_locked_versions_and_dependencies(self, project: Path) -> None:
        """[project] dependencies deploy the locked versions and their dependencies."""
        lock = read_poetry_lock(project, groups=Groups(), target=PY311)
        assert _versions(lock)["requests"] == "2.25.1"
        assert set(_versions(lock)) == MAIN
        assert lock.requires_python == ">=3.9"

    def test_pins_carry_every_hash_of_the_lock(self, project: Path) -> None:
        """Each pin carries every sha256 the lock's files list for it."""
        hashes = _lock_hashes(project)
        for pin in read_poetry_lock(project, groups=Groups(dev=True), target=PY39).pins:
            assert pin.hashes and set(pin.hashes) == hashes[pin.name]

    def test_marker_selects_for_the_target(self, project: Path) -> None:
        """six's marker keeps it for Python 3.9 only."""
        assert "six" not in _versions(read_poetry_lock(project, groups=Groups(), target=PY311))
        assert "six" in _versions(read_poetry_lock(project, groups=Groups(), target=PY39))

    def test_dev_group_only_when_asked(self, project: Path) -> None:
        """The PEP 735 dev group is deployed with Groups(dev=True) only."""
        assert "iniconfig" not in _versions(
            read_poetry_lock(project, groups=Groups(), target=PY311)
        )
        assert "iniconfig" in _versions(
            read_poetry_lock(project, groups=Groups(dev=True), target=PY311)
        )

    def test_named_group(self, project: Path) -> None:
        """A [tool.poetry.group] is deployed by name."""
        docs = _versions(read_poetry_lock(project, groups=Groups(names=("docs",)), target=PY311))
        assert docs["packaging"] == "20.9"

    def test_unchanged_is_fresh_for_poetry_and_reader(self, project: Path, home: Path) -> None:
        """`poetry check --lock` and the reader both accept the lock as Poetry 2 wrote it."""
        assert poetry_lock_is_fresh(POETRY_2, project, home=home).code == 0
        read_poetry_lock(project, groups=Groups(), target=PY311)

    @pytest.mark.parametrize(
        ("old", "new"),
        [("idna==2.10", "idna==2.9"), ('dev = ["iniconfig==1.1.1"]', 'dev = ["iniconfig"]')],
        ids=["project-dependency", "dependency-group"],
    )
    def test_edited_is_stale(
        self, project: Path, home: Path, tmp_path: Path, old: str, new: str
    ) -> None:
        """An edited dependency or group makes `poetry check --lock` and the reader refuse it."""
        copy = _copy(project, tmp_path)
        write_pyproject(copy, POETRY2_PYPROJECT.replace(old, new))
        checked = poetry_lock_is_fresh(POETRY_2, copy, home=home)
        assert checked.code != 0, checked.output
        assert "Run `poetry lock` to fix the lock file." in checked.output
        with pytest.raises(StaleLockError) as caught:
            read_poetry_lock(copy, groups=Groups(), target=PY311)
        assert caught.value.hint is not None and caught.value.hint.startswith("run `poetry lock`")

    def test_irrelevant_edit_stays_fresh(self, project: Path, home: Path, tmp_path: Path) -> None:
        """A new description changes no content-hash, for Poetry 2 and for the reader."""
        copy = _copy(project, tmp_path)
        write_pyproject(copy, POETRY2_PYPROJECT.replace("an app", "another app"))
        assert poetry_lock_is_fresh(POETRY_2, copy, home=home).code == 0
        read_poetry_lock(copy, groups=Groups(), target=PY311)


@pytest.mark.network
class TestPoetry2LegacyLayout:
    """Poetry 1's [tool.poetry.dependencies] layout with an extra, locked by Poetry 2."""

    @pytest.fixture(scope="class")
    @classmethod
    def project(cls, tmp_path_factory: pytest.TempPathFactory, home: Path) -> Path:
        root = tmp_path_factory.mktemp("poetry2-legacy")
        return make_poetry_project(root, POETRY_2, POETRY2_LEGACY_PYPROJECT, home=home)

    def test_tool_poetry_dependencies_are_the_main_group(self, project: Path) -> None:
        """[tool.poetry.dependencies] are deployed; an optional one is not."""
        assert _versions(read_poetry_lock(project, groups=Groups(), target=PY311)) == {
            "six": "1.15.0"
        }

    def test_extra_adds_its_optional_dependency(self, project: Path) -> None:
        """Asking for the ``ini`` extra deploys iniconfig as locked."""
        lock = read_poetry_lock(project, groups=Groups(extras=("ini",)), target=PY311)
        assert _versions(lock) == {"six": "1.15.0", "iniconfig": "1.1.1"}

    def test_unknown_extra_is_an_error(self, project: Path) -> None:
        """An extra the project does not define is refused, listing those it does."""
        with pytest.raises(InputError, match=r"no extra named socks.*ini"):
            read_poetry_lock(project, groups=Groups(extras=("socks",)), target=PY311)

    def test_fresh_for_poetry_and_reader(self, project: Path, home: Path) -> None:
        """Poetry 2 hashes this layout as 1.x did; both it and the reader accept the lock."""
        assert poetry_lock_is_fresh(POETRY_2, project, home=home).code == 0
        read_poetry_lock(project, groups=Groups(), target=PY311)


class TestMalformedPoetryLock:
    """Broken or missing files are errors naming the file and saying what to do."""

    def _project(self, tmp_path: Path, lock: str | None) -> Path:
        write_pyproject(tmp_path, POETRY1_PYPROJECT)
        if lock is not None:
            (tmp_path / "poetry.lock").write_text(lock, encoding="utf-8")
        return tmp_path

    def test_missing_lock(self, tmp_path: Path) -> None:
        """A Poetry project without poetry.lock is refused with `poetry lock` as the fix."""
        root = self._project(tmp_path, None)
        with pytest.raises(InputError) as caught:
            read_poetry_lock(root, groups=Groups(), target=PY311)
        assert str(root / "poetry.lock") in caught.value.message
        assert caught.value.hint == "run `poetry lock` and commit poetry.lock"

    def test_invalid_toml_names_file_and_line(self, tmp_path: Path) -> None:
        """A lock that is not TOML is refused naming the file and the line."""
        root = self._project(tmp_path, '[metadata]\nlock-version = "2.0"\ncontent-hash = \n')
        with pytest.raises(InputError, match=r"poetry\.lock: not valid TOML: .*line 3"):
            read_poetry_lock(root, groups=Groups(), target=PY311)

    def test_unknown_lock_version(self, tmp_path: Path) -> None:
        """A lock format wheelbarrow does not know is refused, naming the version."""
        root = self._project(tmp_path, '[metadata]\nlock-version = "3.0"\ncontent-hash = "x"\n')
        with pytest.raises(InputError, match=r"lock-version '3\.0'"):
            read_poetry_lock(root, groups=Groups(), target=PY311)

    def test_no_content_hash(self, tmp_path: Path) -> None:
        """A lock without content-hash cannot be checked and is refused."""
        root = self._project(tmp_path, '[metadata]\nlock-version = "2.0"\n')
        with pytest.raises(InputError, match="no content-hash") as caught:
            read_poetry_lock(root, groups=Groups(), target=PY311)
        assert caught.value.hint is not None and "poetry lock" in caught.value.hint

    def test_invalid_pyproject(self, tmp_path: Path) -> None:
        """A pyproject.toml that is not TOML is refused naming it."""
        (tmp_path / "pyproject.toml").write_text("[tool.poetry\n", encoding="utf-8")
        (tmp_path / "poetry.lock").write_text("", encoding="utf-8")
        with pytest.raises(InputError, match=r"pyproject\.toml: not valid TOML"):
            read_poetry_lock(tmp_path, groups=Groups(), target=PY311)

    @pytest.mark.parametrize("version", [POETRY_1, POETRY_2])
    def test_stale_hand_edit_of_hash(self, tmp_path: Path, version: PoetryVersion) -> None:
        """A content-hash that matches nothing is stale, with the fix of the writer's Poetry."""
        header = f"# This file is automatically @generated by Poetry {version}.0 and ...\n"
        root = self._project(
            tmp_path, header + '[metadata]\nlock-version = "2.0"\ncontent-hash = "00"\n'
        )
        with pytest.raises(StaleLockError) as caught:
            read_poetry_lock(root, groups=Groups(), target=PY311)
        expected = "run `poetry lock --no-update`" if version == POETRY_1 else "run `poetry lock`"
        assert caught.value.hint is not None and caught.value.hint.startswith(expected)
