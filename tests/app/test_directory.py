"""Reading an app directory: requirements, pyproject, lock, Python version."""

from __future__ import annotations

import pytest

from wheelbarrow._core.errors import InputError, RequirementsError, TargetError
from wheelbarrow.app.directory import read_app
from wheelbarrow.app.target import PythonVersion

RUNNING = PythonVersion(major=3, minor=11, micro=7)


class TestSources:
    def test_requirements_txt_wins_over_pyproject(self, tmp_path):
        """requirements.txt is what the app is deployed from when both exist."""
        (tmp_path / "requirements.txt").write_text("flask==3.1.2\n")
        (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\ndependencies=["django"]\n')
        app = read_app(tmp_path, environ={})
        assert app.requirements is not None
        assert [str(r) for r in app.requirements.requirements] == ["flask==3.1.2"]
        assert app.requirements_source == tmp_path / "requirements.txt"

    def test_pyproject_dependencies(self, tmp_path):
        """[project] dependencies are read when there is no requirements.txt."""
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname="x"\ndependencies=["numpy>=2", "scipy; python_version>=\'3.11\'"]\n'
        )
        app = read_app(tmp_path, environ={})
        assert app.requirements is not None
        assert [r.name for r in app.requirements.requirements] == ["numpy", "scipy"]

    def test_malformed_pyproject_dependency_names_its_index(self, tmp_path):
        """A bad dependency string is reported with the file and its position."""
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname="x"\ndependencies=["ok", "bad=>1"]\n'
        )
        with pytest.raises(RequirementsError, match=r"pyproject\.toml: dependencies\[1\]"):
            read_app(tmp_path, environ={})

    def test_lock_only_app(self, tmp_path):
        """An app with only pylock.toml has no requirements to lock: the lock is used as is."""
        (tmp_path / "pylock.toml").write_text('lock-version = "1.0"\ncreated-by = "me"\n')
        app = read_app(tmp_path, environ={})
        assert app.requirements is None

    def test_nothing_to_install_is_an_error(self, tmp_path):
        """An app that names no dependencies at all is refused with what to add."""
        with pytest.raises(InputError, match="nothing says what the app needs") as info:
            read_app(tmp_path, environ={})
        assert "requirements.txt" in (info.value.hint or "")

    def test_misspelled_requirements_file_is_pointed_out(self, tmp_path):
        """requirement.txt (no s) gets a did-you-mean hint."""
        (tmp_path / "requirement.txt").write_text("flask\n")
        with pytest.raises(InputError) as info:
            read_app(tmp_path, environ={})
        assert (
            info.value.hint == "found 'requirement.txt': did you mean 'requirements.txt'? rename it"
        )

    def test_not_a_directory(self, tmp_path):
        """A file given as the app is a clear error."""
        (tmp_path / "f").write_text("")
        with pytest.raises(InputError, match="not a directory"):
            read_app(tmp_path / "f", environ={})

    def test_invalid_pyproject_names_the_file(self, tmp_path):
        """Broken TOML is reported with the file name."""
        (tmp_path / "pyproject.toml").write_text("[project\n")
        with pytest.raises(InputError, match=r"pyproject\.toml: not valid TOML"):
            read_app(tmp_path, environ={})


class TestPythonVersion:
    def test_python_version_file_wins(self, tmp_path):
        """.python-version is read before runtime.txt and requires-python."""
        (tmp_path / "requirements.txt").write_text("flask\n")
        (tmp_path / ".python-version").write_text("# comment\n3.12\n")
        (tmp_path / "runtime.txt").write_text("python-3.10.4\n")
        app = read_app(tmp_path, environ={})
        assert app.choose_python(RUNNING) == (PythonVersion(major=3, minor=12), ".python-version")

    def test_runtime_txt(self, tmp_path):
        """Heroku's runtime.txt form is understood."""
        (tmp_path / "requirements.txt").write_text("flask\n")
        (tmp_path / "runtime.txt").write_text("python-3.10.4\n")
        version, source = read_app(tmp_path, environ={}).choose_python(RUNNING)
        assert (str(version), source) == ("3.10.4", "runtime.txt")

    def test_requires_python_picks_the_running_one_when_allowed(self, tmp_path):
        """requires-python admitting the running interpreter keeps its minor version only: the
        lock must hold for every 3.X.y, not this machine's micro release."""
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname="x"\nrequires-python=">=3.10"\ndependencies=[]\n'
        )
        version, _ = read_app(tmp_path, environ={}).choose_python(RUNNING)
        assert version == RUNNING.minor_only
        assert str(version) == RUNNING.short

    def test_requires_python_excluding_the_running_one(self, tmp_path):
        """Otherwise the oldest admitted version is chosen."""
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname="x"\nrequires-python=">=3.12"\ndependencies=[]\n'
        )
        version, source = read_app(tmp_path, environ={}).choose_python(RUNNING)
        assert version.short == "3.12" and "requires-python" in source

    def test_bad_version_file_names_file_and_line(self, tmp_path):
        """A nonsense .python-version is an error naming the file."""
        (tmp_path / "requirements.txt").write_text("flask\n")
        (tmp_path / ".python-version").write_text("latest\n")
        with pytest.raises(
            TargetError, match=r"\.python-version:1: 'latest' is not a CPython version"
        ):
            read_app(tmp_path, environ={})
