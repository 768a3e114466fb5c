"""Both buildpacks fill the wheelhouse from the remote store of their config vars, in-process
against a real S3-compatible server, and push to it when asked."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support import make_wheel, serve_local_index
from support.apps import cli
from support.heroku import HOST_PYTHON, compile_, run_cnb_build
from support.s3server import S3Server

pytestmark = pytest.mark.slow
_buckets = itertools.count()


@pytest.fixture
def remote(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty remote store in a new bucket; no S3 key of this machine takes part."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WHEELBARROW_REMOTE", "WHEELBARROW_PUSH", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", s3.env()["AWS_CONFIG_FILE"])
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", s3.env()["AWS_SHARED_CREDENTIALS_FILE"])
    bucket = f"heroku-{next(_buckets)}"
    s3.make_bucket(bucket)
    return f"s3://{bucket}/team/wheels"


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    """The app's wheels: webapp (a console script) needing alpha."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(
        d,
        "webapp",
        "1.0",
        requires=["alpha"],
        files={"webapp/__init__.py": "def main():\n    print('served')\n"},
        entry_points={"webapp": "webapp:main"},
    )
    return d


def _app(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "requirements.txt").write_text("webapp==1.0\nalpha==1.0\n")
    (directory / ".python-version").write_text(HOST_PYTHON + "\n")
    (directory / "Procfile").write_text("web: webapp\n")
    return directory


def _config_vars(env_dir: Path, values: dict[str, str]) -> Path:
    """An ENV_DIR (or a CNB platform's env/): one file per config var."""
    env_dir.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (env_dir / name).write_text(value)
    return env_dir


def _keys(s3: S3Server) -> dict[str, str]:
    """The server's endpoint and keys, as an app's config vars."""
    env = s3.env()
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
    return {k: env[k] for k in names}


def _pushed_from_a_build(
    s3: S3Server, remote: str, app: Path, store: Path, index_url: str, monkeypatch
) -> str:
    """`wheelbarrow build --push` of ``app`` on another machine (the keys in its environment);
    returns the key. The keys leave the environment again."""
    with monkeypatch.context() as m:
        for name, value in _keys(s3).items():
            m.setenv(name, value)
        result = cli("build", app, "--store", store, "-i", index_url, "--remote", remote,
                     "--push", "--json")  # fmt: skip
    assert result.code == 0, result.err
    key: str = result.json()["key"]
    return key


class TestPullOnHeroku:
    def test_compile_pulls_from_the_config_vars_remote_with_no_index_reachable(
        self, s3, remote, dists, tmp_path, monkeypatch
    ):
        """A wheelhouse pushed by `wheelbarrow build --push`: a compile with the config var
        WHEELBARROW_REMOTE (the keys config vars too) and the index's port closed pulls it,
        says so, and installs the app."""
        build = _app(tmp_path / "build_1234")
        with serve_local_index(dists) as index:
            key = _pushed_from_a_build(s3, remote, build, tmp_path / "ci-store", index.url,
                                       monkeypatch)  # fmt: skip
        env = _config_vars(
            tmp_path / "env",
            {"WHEELBARROW_INDEX_URL": index.url, "WHEELBARROW_REMOTE": remote, **_keys(s3)},
        )
        code, out = compile_(build, tmp_path / "cache", env, tmp_path / "app")
        assert code == 0, out
        assert f"-----> Fetching wheelhouse {key} from {remote}\n" in out
        assert f"wheelhouse {key}: 2 pulled from the remote store" in out
        assert "no package index asked" in out
        assert s3.secret_key not in out
        venv = build / ".heroku" / "venv"
        assert list(venv.glob("lib/python*/site-packages/alpha/__init__.py"))
        assert (venv / "bin" / "webapp").is_file()

    def test_cnb_build_pulls_from_the_platform_env_remote(
        self, s3, remote, dists, tmp_path, monkeypatch
    ):
        """The CNB build takes WHEELBARROW_REMOTE and the keys from the platform's env/, and
        pulls the wheelhouse with the index's port closed."""
        app = _app(tmp_path / "workspace")
        with serve_local_index(dists) as index:
            key = _pushed_from_a_build(s3, remote, app, tmp_path / "ci-store", index.url,
                                       monkeypatch)  # fmt: skip
        platform = tmp_path / "platform"
        _config_vars(
            platform / "env",
            {"WHEELBARROW_INDEX_URL": index.url, "WHEELBARROW_REMOTE": remote, **_keys(s3)},
        )
        out = run_cnb_build(app, tmp_path / "layers", platform)
        assert f"-----> Fetching wheelhouse {key} from {remote}\n" in out
        assert f"wheelhouse {key}: 2 pulled from the remote store" in out


class TestPushOnHeroku:
    def test_the_push_config_var_uploads_what_the_compile_fetched(
        self, s3, remote, dists, tmp_path, monkeypatch
    ):
        """WHEELBARROW_PUSH=1 with the remote: the compile fetches from the index, pushes, says
        so, and another machine pulls the same wheelhouse."""
        build = _app(tmp_path / "build_1234")
        with serve_local_index(dists) as index:
            env = _config_vars(
                tmp_path / "env",
                {
                    "WHEELBARROW_INDEX_URL": index.url,
                    "WHEELBARROW_REMOTE": remote,
                    "WHEELBARROW_PUSH": "1",
                    **_keys(s3),
                },
            )
            code, out = compile_(build, tmp_path / "cache", env, tmp_path / "app")
        assert code == 0, out
        assert "-----> Pushing wheelhouse " in out and f" to {remote}\n" in out
        assert "pushed 2 files" in out and f"to {remote}, 0 already there" in out
        with monkeypatch.context() as m:
            for name, value in _keys(s3).items():
                m.setenv(name, value)
            pulled = cli("pull", build, "--store", tmp_path / "other", "--remote", remote, "--json")
        assert pulled.code == 0, pulled.err
        assert len(pulled.json()["moved"]) == 2

    def test_push_without_a_remote_names_the_config_var(self, dists, tmp_path, local_index):
        """WHEELBARROW_PUSH=1 and no remote anywhere fails, naming the config var to set."""
        build = _app(tmp_path / "build_1234")
        env = _config_vars(
            tmp_path / "env",
            {"WHEELBARROW_INDEX_URL": local_index(dists).url, "WHEELBARROW_PUSH": "1"},
        )
        code, out = compile_(build, tmp_path / "cache", env, tmp_path / "app")
        assert code != 0
        assert "the config var WHEELBARROW_PUSH=1 needs a remote store" in out
        assert "set the config var WHEELBARROW_REMOTE" in out
