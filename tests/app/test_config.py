"""Build settings: the remote store and pushing to it, read from the app's settings file."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.config import BuildConfig, push_from_environ, read_build_config


def _pyproject(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "pyproject.toml"
    path.write_text(f"[tool.wheelbarrow]\n{body}", encoding="utf-8")
    return path


def _error(root: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_build_config(root)
    return str(caught.value)


class TestRemoteSetting:
    def test_read_from_pyproject(self, tmp_path):
        """`remote` and `push` under [tool.wheelbarrow] are read as given."""
        _pyproject(tmp_path, 'remote = "s3://team-bucket/wheels"\npush = true\n')
        config = read_build_config(tmp_path)
        assert (config.remote, config.push) == ("s3://team-bucket/wheels", True)

    def test_read_from_wheelbarrow_toml(self, tmp_path):
        """At the top level of wheelbarrow.toml they are read the same way (an OCI remote here)."""
        (tmp_path / "wheelbarrow.toml").write_text(
            'remote = "oci://registry.example:5000/team/wheels"\n', encoding="utf-8"
        )
        config = read_build_config(tmp_path)
        assert (config.remote, config.push) == ("oci://registry.example:5000/team/wheels", False)

    def test_none_by_default(self, tmp_path):
        """Without the settings there is no remote, and nothing is pushed."""
        _pyproject(tmp_path, "build-jobs = 2\n")
        config = read_build_config(tmp_path)
        assert (config.remote, config.push) == (None, False)

    def test_not_a_string_names_the_file_and_key(self, tmp_path):
        """A remote that is not a string is an error naming pyproject.toml and the key."""
        path = _pyproject(tmp_path, "remote = 3\n")
        assert f"{path}: tool.wheelbarrow.remote: must be" in _error(tmp_path)

    @pytest.mark.parametrize(
        "url", ["https://bucket.example/wheels", "s3:///wheels", "oci://registry.example", ""]
    )
    def test_another_kind_of_url_names_the_file_key_and_forms(self, tmp_path, url):
        """A remote that is not s3://BUCKET[/PREFIX] or oci://REGISTRY/REPOSITORY is refused,
        with the two forms it may take."""
        (tmp_path / "wheelbarrow.toml").write_text(f'remote = "{url}"\n', encoding="utf-8")
        message = _error(tmp_path)
        assert f"{tmp_path / 'wheelbarrow.toml'}: remote: must be" in message
        assert "s3://BUCKET/PREFIX" in message and "oci://REGISTRY/REPOSITORY" in message

    def test_credentials_in_the_url_are_refused_and_not_shown(self, tmp_path):
        """A URL holding a password is refused without printing the password, saying where
        credentials belong."""
        _pyproject(tmp_path, 'remote = "oci://ci:hunter22@registry.example/team/wheels"\n')
        message = _error(tmp_path)
        assert "tool.wheelbarrow.remote" in message and "credentials" in message
        assert "hunter22" not in message

    def test_push_not_a_boolean_names_the_file_and_key(self, tmp_path):
        """`push = "yes"` is an error naming the file and key, with the other problems."""
        path = _pyproject(tmp_path, 'push = "yes"\nremote = 1\n')
        message = _error(tmp_path)
        assert f"{path}: tool.wheelbarrow.push: must be true or false" in message
        assert f"{path}: tool.wheelbarrow.remote: must be" in message

    def test_a_misspelt_key_is_suggested(self, tmp_path):
        """`remotes` is unknown, and the error suggests `remote`."""
        _pyproject(tmp_path, 'remotes = "s3://b/p"\n')
        assert "did you mean 'remote'?" in _error(tmp_path)

    def test_they_are_not_part_of_the_wheelhouse_key(self, tmp_path):
        """Where a wheelhouse is kept changes none of its bytes: the key's part of the settings
        is the same with or without them, and with source builds configured too."""
        plain = _pyproject(tmp_path / "plain", 'no-binary = ["markupsafe"]\n').parent
        shared = _pyproject(
            tmp_path / "shared", 'no-binary = ["markupsafe"]\nremote = "s3://b/p"\npush = true\n'
        ).parent
        assert read_build_config(shared).key_data() == read_build_config(plain).key_data()
        assert BuildConfig(remote="s3://b/p", push=True).key_data() == BuildConfig().key_data()


class TestPushFromEnviron:
    @pytest.mark.parametrize(
        ("value", "wanted"),
        [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False), ("no", False)],
    )
    def test_yes_and_no(self, value, wanted):
        """WHEELBARROW_PUSH=1 (true, yes) pushes and =0 (false, no) does not, in any case."""
        assert push_from_environ({"WHEELBARROW_PUSH": value}) is wanted

    def test_unset_or_empty_says_nothing(self):
        """Unset or empty, the variable leaves the choice to the settings."""
        assert push_from_environ({}) is None
        assert push_from_environ({"WHEELBARROW_PUSH": ""}) is None

    def test_another_value_names_the_variable(self):
        """WHEELBARROW_PUSH=sometimes is an error naming the variable and what it may be."""
        with pytest.raises(InputError, match=r"WHEELBARROW_PUSH='sometimes': must be 1 or 0"):
            push_from_environ({"WHEELBARROW_PUSH": "sometimes"})


class TestClusterSetting:
    def test_read_from_pyproject(self, tmp_path):
        """`cluster` under [tool.wheelbarrow] is the Dask scheduler's address."""
        _pyproject(tmp_path, 'cluster = "tcp://scheduler.internal:8786"\n')
        assert read_build_config(tmp_path).cluster == "tcp://scheduler.internal:8786"

    def test_none_by_default(self, tmp_path):
        """Without the setting, builds run here."""
        _pyproject(tmp_path, "build-jobs = 2\n")
        assert read_build_config(tmp_path).cluster is None

    @pytest.mark.parametrize(
        "value", ['"scheduler:8786"', '"http://scheduler:8786"', '"tcp://scheduler"', "8786"]
    )
    def test_not_a_scheduler_address_names_the_file_key_and_form(self, tmp_path, value):
        """A value that is not tcp://HOST:PORT is refused, naming the file, the key and the form."""
        path = _pyproject(tmp_path, f"cluster = {value}\n")
        message = _error(tmp_path)
        assert f"{path}: tool.wheelbarrow.cluster: must be" in message
        assert "tcp://HOST:PORT" in message

    def test_not_part_of_the_wheelhouse_key(self, tmp_path):
        """Where builds run changes no wheel: the cluster setting is in no key."""
        _pyproject(tmp_path / "a", "build-jobs = 2\n")
        _pyproject(tmp_path / "b", 'build-jobs = 2\ncluster = "tcp://s:8786"\n')
        plain, clustered = (read_build_config(tmp_path / n) for n in "ab")
        assert clustered.cluster and plain.key_data() == clustered.key_data()
