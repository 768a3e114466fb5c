"""A private index end to end: lock, build, build again and install with each way of giving
credentials, true hints when they are missing or wrong, and no secret in any output or file."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import LocalIndex, make_wheel, serve_local_index
from support.apps import HOST_PYTHON, PLATFORM, Result, cli

USER = "alice"
# Distinctive: any occurrence anywhere is a leak. A test credential, not a secret.
TOKEN = "tok-7c1d9e2f4a6b"  # noqa: S105
ENV_VARS = (
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_PRIV_USERNAME",
    "UV_INDEX_PRIV_PASSWORD",
    "NETRC",
)


@dataclass(slots=True)
class Indexes:
    """A private index needing ``USER``/``TOKEN`` and a public one, both on 127.0.0.1."""

    private: LocalIndex
    public: LocalIndex

    @property
    def with_token(self) -> str:
        """The private index URL with the credentials in it."""
        return self.private.url.replace("http://", f"http://{USER}:{TOKEN}@")

    @property
    def host(self) -> str:
        return self.private.base_url.split("//", 1)[1].split(":", 1)[0]


@pytest.fixture
def indexes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Indexes]:
    """The two indexes, and an environment with no index variables and an empty netrc."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    private = tmp_path / "private-dists"
    make_wheel(private, "privdemo", "1.0", requires=["privdep"])
    make_wheel(private, "privdep", "2.0")
    public = tmp_path / "public-dists"
    make_wheel(public, "pubthing", "1.0")
    with (
        serve_local_index(tmp_path / "private", [*private.iterdir()], auth=(USER, TOKEN)) as p,
        serve_local_index(tmp_path / "public", [*public.iterdir()]) as q,
    ):
        yield Indexes(private=p, public=q)


def write_app(root: Path, requirements: str, *, pin: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "requirements.txt").write_text(requirements)
    if pin:
        (root / ".python-version").write_text(HOST_PYTHON + "\n")
    return root


@dataclass(frozen=True, slots=True)
class Case:
    """One way of giving credentials: the app, the options for every command, the environment
    for locking and for what follows (None: the same)."""

    app: Path
    options: tuple[str, ...]
    lock_env: dict[str, str]
    build_env: dict[str, str] | None = None


def _requirements_index(ix: Indexes, tmp: Path) -> Case:
    app = write_app(tmp / "app", f"-i {ix.with_token}\nprivdemo\n", pin=True)
    return Case(app, (), {})


def _requirements_extra_index(ix: Indexes, tmp: Path) -> Case:
    text = f"-i {ix.public.url}\n--extra-index-url {ix.with_token}\nprivdemo\npubthing\n"
    return Case(write_app(tmp / "app", text, pin=False), (), {})


def _command_line_index(ix: Indexes, tmp: Path) -> Case:
    app = write_app(tmp / "app", "privdemo\n", pin=True)
    return Case(app, ("--index-url", ix.with_token), {})


def _command_line_extra_index(ix: Indexes, tmp: Path) -> Case:
    app = write_app(tmp / "app", "privdemo\npubthing\n", pin=True)
    return Case(app, ("-i", ix.public.url, "--extra-index-url", ix.with_token), {})


def _uv_index_url(ix: Indexes, tmp: Path) -> Case:
    app = write_app(tmp / "app", "privdemo\n", pin=True)
    return Case(app, (), {"UV_INDEX_URL": ix.with_token})


def _uv_extra_index_url(ix: Indexes, tmp: Path) -> Case:
    app = write_app(tmp / "app", "privdemo\npubthing\n", pin=True)
    return Case(app, (), {"UV_INDEX_URL": ix.public.url, "UV_EXTRA_INDEX_URL": ix.with_token})


def _pip_index_url(ix: Indexes, tmp: Path) -> Case:
    # uv reads no PIP_ variables: the lock here comes from UV_INDEX_URL (see
    # TestResolverEnviron for locking through PIP_INDEX_URL); what follows has only pip's.
    app = write_app(tmp / "app", "privdemo\n", pin=True)
    return Case(app, (), {"UV_INDEX_URL": ix.with_token}, {"PIP_INDEX_URL": ix.with_token})


def _pip_extra_index_url(ix: Indexes, tmp: Path) -> Case:
    app = write_app(tmp / "app", "privdemo\npubthing\n", pin=True)
    lock = {"UV_INDEX_URL": ix.public.url, "UV_EXTRA_INDEX_URL": ix.with_token}
    return Case(app, (), lock, {"PIP_EXTRA_INDEX_URL": ix.with_token})


def _netrc(ix: Indexes, tmp: Path) -> Case:
    netrc = tmp / "netrc"
    netrc.write_text(f"machine {ix.host} login {USER} password {TOKEN}\n")
    app = write_app(tmp / "app", f"-i {ix.private.url}\nprivdemo\n", pin=False)
    return Case(app, (), {"NETRC": str(netrc)})


def _home_netrc(ix: Indexes, tmp: Path) -> Case:
    home = tmp / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine {ix.host} login {USER} password {TOKEN}\n")
    app = write_app(tmp / "app", "privdemo\n", pin=True)
    return Case(app, ("-i", ix.private.url), {"HOME": str(home), "NETRC": ""})


def _uv_named_index(ix: Indexes, tmp: Path) -> Case:
    app = write_app(tmp / "app", "privdemo\npubthing\n", pin=True)
    env = {
        "UV_DEFAULT_INDEX": ix.public.url,
        "UV_INDEX": f"priv={ix.private.url}",
        "UV_INDEX_PRIV_USERNAME": USER,
        "UV_INDEX_PRIV_PASSWORD": TOKEN,
    }
    return Case(app, (), env)


def _pyproject_named_index(ix: Indexes, tmp: Path) -> Case:
    # A pyproject-only app without a Python pin, its index named in [[tool.uv.index]].
    app = tmp / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(
        '[project]\nname = "svc"\nversion = "0"\ndependencies = ["privdemo"]\n\n'
        f'[[tool.uv.index]]\nname = "priv"\nurl = "{ix.private.url}"\n'
    )
    creds = {"UV_INDEX_PRIV_USERNAME": USER, "UV_INDEX_PRIV_PASSWORD": TOKEN}
    # The lock names the index through UV_INDEX too (uv runs outside the app; see
    # TestResolverEnviron); the build finds it in pyproject.toml alone.
    return Case(app, (), {**creds, "UV_INDEX": f"priv={ix.private.url}"}, creds)


def _uv_toml_named_index(ix: Indexes, tmp: Path) -> Case:
    app = write_app(tmp / "app", "privdemo\n", pin=True)
    (app / "uv.toml").write_text(f'[[index]]\nname = "priv"\nurl = "{ix.private.url}"\n')
    creds = {"UV_INDEX_PRIV_USERNAME": USER, "UV_INDEX_PRIV_PASSWORD": TOKEN}
    return Case(app, (), {**creds, "UV_INDEX": f"priv={ix.private.url}"}, creds)


CASES: dict[str, Callable[[Indexes, Path], Case]] = {
    "requirements -i": _requirements_index,
    "requirements --extra-index-url, no pin": _requirements_extra_index,
    "--index-url": _command_line_index,
    "--extra-index-url": _command_line_extra_index,
    "UV_INDEX_URL": _uv_index_url,
    "UV_EXTRA_INDEX_URL": _uv_extra_index_url,
    "PIP_INDEX_URL": _pip_index_url,
    "PIP_EXTRA_INDEX_URL": _pip_extra_index_url,
    "NETRC, no pin": _netrc,
    "~/.netrc": _home_netrc,
    "UV_INDEX name": _uv_named_index,
    "[[tool.uv.index]] pyproject-only, no pin": _pyproject_named_index,
    "uv.toml [[index]]": _uv_toml_named_index,
}


def run(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str | Path) -> Result:
    """The CLI with ``env`` set (empty values unset) for this one run."""
    with monkeypatch.context() as m:
        for name, value in env.items():
            if value:
                m.setenv(name, value)
            else:
                m.delenv(name, raising=False)
        return cli(*args)


def snapshot(root: Path) -> dict[Path, bytes]:
    """The files under ``root`` and their bytes."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def leaks(root: Path, users: dict[Path, bytes] | None = None) -> list[str]:
    """Files under ``root`` whose bytes hold the token, leaving out the ``users`` own files
    as they wrote them (a requirements file that gives the credentials)."""
    theirs = users or {}
    return sorted(
        str(p.relative_to(root))
        for p, data in snapshot(root).items()
        if TOKEN.encode() in data and theirs.get(p) != data
    )


class TestPrivateIndex:
    @pytest.mark.parametrize("case", CASES, ids=list(CASES))
    def test_lock_build_build_again_and_install(self, tmp_path, indexes, monkeypatch, case):
        """With credentials from this source, every step works, the downloads carried them,
        and the token is in no output and no file of the app, store or environment."""
        c = CASES[case](indexes, tmp_path)
        users = snapshot(c.app)
        store = tmp_path / "store"
        common = ("--store", store, "--platform", PLATFORM, *c.options)
        env = c.build_env if c.build_env is not None else c.lock_env
        unset_lock_only = {k: "" for k in c.lock_env if k not in env}
        results = [run(monkeypatch, c.lock_env, "lock", c.app, *common)]
        assert results[-1].code == 0, results[-1].err
        indexes.private.requests.clear()
        indexes.private.refused.clear()
        results.append(
            run(monkeypatch, {**unset_lock_only, **env}, "build", c.app, *common, "--json")
        )
        assert results[-1].code == 0, results[-1].err
        private = ["privdemo-1.0-py3-none-any.whl", "privdep-2.0-py3-none-any.whl"]
        assert set(private) <= set(results[-1].json()["fetched"])
        assert sorted(indexes.private.downloads) == private
        assert indexes.private.refused == []
        results.append(run(monkeypatch, {**unset_lock_only, **env}, "build", c.app, *common))
        assert results[-1].code == 0, results[-1].err
        assert "is up to date" in results[-1].out
        dest = tmp_path / "venv"
        install = ("install", c.app, "--store", store, "--platform", PLATFORM, "--into", dest)
        install += ("--link-mode", "hardlink")  # a clone: the package's files are in dest
        results.append(run(monkeypatch, {**unset_lock_only, **env}, *install))
        assert results[-1].code == 0, results[-1].err
        assert list(dest.glob("lib/python*/site-packages/privdemo/__init__.py"))
        for r in results:
            assert TOKEN not in r.out + r.err
        assert leaks(c.app, users) == [] and leaks(store) == [] and leaks(dest) == []


class TestRefused:
    def test_no_credentials_at_build_gives_a_hint_naming_what_was_tried(
        self, tmp_path, indexes, monkeypatch
    ):
        """A build without the credentials the lock was made with fails with HTTP 401 and a
        hint listing where credentials were looked for; not "lock again", and no value."""
        app = write_app(tmp_path / "app", "privdemo\n", pin=False)
        opts = ("--store", tmp_path / "store", "--platform", PLATFORM)
        assert run(monkeypatch, {"UV_INDEX_URL": indexes.with_token}, "lock", app, *opts).code == 0
        result = run(monkeypatch, {"UV_EXTRA_INDEX_URL": indexes.private.url}, "build", app, *opts)
        assert result.code == 1
        assert "answered HTTP 401" in result.err
        assert "privdemo-1.0-py3-none-any.whl" in result.err
        hint = result.err.split("hint: ", 1)[1]
        assert hint.startswith(f"no credentials for http://{indexes.host}:"), hint
        assert "the index URLs in UV_EXTRA_INDEX_URL" in hint
        assert str(tmp_path / "no-netrc") in hint
        assert "lock again" not in hint
        assert TOKEN not in result.out + result.err

    def test_wrong_credentials_name_their_source(self, tmp_path, indexes, monkeypatch):
        """Credentials the index refuses: the hint names where they came from, in --json too."""
        app = write_app(tmp_path / "app", "privdemo\n", pin=True)
        opts = ("--store", tmp_path / "store", "--platform", PLATFORM)
        assert run(monkeypatch, {"UV_INDEX_URL": indexes.with_token}, "lock", app, *opts).code == 0
        wrong = indexes.private.url.replace("http://", f"http://{USER}:not-{TOKEN}@")
        result = run(monkeypatch, {"UV_INDEX_URL": wrong}, "build", app, *opts, "--json")
        assert result.code == 1
        error = result.json()
        assert "answered HTTP 401" in error["message"]
        assert (
            error["hint"].startswith(f"http://{indexes.host}:")
            and "refused the credentials from the index URL in UV_INDEX_URL" in error["hint"]
        )
        assert TOKEN not in result.out + result.err


class TestNothingLeaks:
    def test_a_404_does_not_print_the_url_credentials(self, tmp_path, indexes, monkeypatch):
        """A file gone from the index after locking: the error shows the URL without the token,
        in text and in --json."""
        app = write_app(tmp_path / "app", f"-i {indexes.with_token}\nprivdemo\n", pin=True)
        opts = ("--store", tmp_path / "store", "--platform", PLATFORM)
        assert run(monkeypatch, {}, "lock", app, *opts).code == 0
        (indexes.private.files_dir / "privdep-2.0-py3-none-any.whl").unlink()
        for extra in ((), ("--json",)):
            result = run(monkeypatch, {}, "build", app, *opts, *extra)
            assert result.code == 1
            assert "answered HTTP 404" in result.out + result.err
            assert TOKEN not in result.out + result.err

    def test_a_lock_of_the_users_own_with_credentials_in_its_urls(
        self, tmp_path, indexes, monkeypatch
    ):
        """A pylock.toml of the user's own whose URLs carry credentials builds with them, and
        neither output nor store shows them, also when a file is missing."""
        app = write_app(tmp_path / "app", f"-i {indexes.with_token}\nprivdemo\n", pin=True)
        opts = ("--store", tmp_path / "store", "--platform", PLATFORM)
        assert run(monkeypatch, {}, "lock", app, *opts).code == 0
        lock = (app / "pylock.toml").read_text()
        own = lock.split("[tool.wheelbarrow]")[0].replace(
            indexes.private.base_url, indexes.private.base_url.replace("//", f"//{USER}:{TOKEN}@")
        )
        assert TOKEN in own
        (app / "requirements.txt").unlink()
        (app / "pylock.toml").write_text(own)
        built = run(monkeypatch, {}, "build", app, *opts, "--json")
        assert built.code == 0, built.err
        assert TOKEN not in built.out + built.err
        assert leaks(tmp_path / "store") == []
        (indexes.private.files_dir / "privdep-2.0-py3-none-any.whl").unlink()
        opts = ("--store", tmp_path / "store2", "--platform", PLATFORM)
        failed = run(monkeypatch, {}, "build", app, *opts)
        assert failed.code == 1 and "HTTP 404" in failed.err
        assert TOKEN not in failed.out + failed.err

    def test_a_failed_lock_does_not_print_the_credentials(self, tmp_path, indexes, monkeypatch):
        """uv's explanation of a failed lock, as wheelbarrow prints it, holds no token."""
        app = write_app(tmp_path / "app", f"-i {indexes.with_token}\nno-such-thing\n", pin=True)
        opts = ("--store", tmp_path / "store", "--platform", PLATFORM)
        for extra in ((), ("--json",)):
            result = run(monkeypatch, {}, "lock", app, *opts, *extra)
            assert result.code == 1
            assert "no-such-thing" in result.out + result.err
            assert TOKEN not in result.out + result.err
        wrong = indexes.private.url.replace("http://", f"http://{USER}:wrong-{TOKEN}@")
        (app / "requirements.txt").write_text(f"-i {wrong}\nprivdemo\n")
        result = run(monkeypatch, {}, "lock", app, *opts)
        assert result.code == 1 and TOKEN not in result.out + result.err

    def test_an_export_and_the_store_hold_no_credentials(self, tmp_path, indexes, monkeypatch):
        """Everything a build writes (store, app, export) and prints is free of the token."""
        app = write_app(tmp_path / "app", f"-i {indexes.with_token}\nprivdemo\n", pin=True)
        users = snapshot(app)
        store, out = tmp_path / "store", tmp_path / "export"
        opts = ("--store", store, "--platform", PLATFORM)
        result = run(monkeypatch, {}, "build", app, *opts, "--output", out)
        assert result.code == 0, result.err
        assert TOKEN not in result.out + result.err
        assert leaks(app, users) == [] and leaks(store) == [] and leaks(out) == []

    def test_a_direct_url_with_credentials_stays_out_of_the_lock(
        self, tmp_path, indexes, monkeypatch
    ):
        """``name @ http://user:token@host/file`` locks, and neither the lock nor the output
        keeps the token."""
        base = indexes.private.base_url.replace("//", f"//{USER}:{TOKEN}@")
        text = f"privdep @ {base}privdep-2.0-py3-none-any.whl\n"
        app = write_app(tmp_path / "app", text, pin=True)
        users = snapshot(app)
        result = run(monkeypatch, {}, "lock", app, "--platform", PLATFORM)
        assert result.code == 0, result.err
        assert TOKEN not in result.out + result.err
        assert leaks(app, users) == []


class TestHerokuCompile:
    def test_a_private_index_config_var_builds_and_the_log_shows_no_token(self, tmp_path, indexes):
        """WHEELBARROW_INDEX_URL with credentials: bin/compile fetches with them and its build
        log, cache and slug hold no token; a missing file's error shows none either."""
        from wheelbarrow._core.runner import run_subprocess
        from wheelbarrow.cli.common import host
        from wheelbarrow.ship.heroku.compile import run_compile
        from wheelbarrow.ship.heroku.output import HerokuReporter

        build = write_app(tmp_path / "build", "privdemo\n", pin=True)
        users = snapshot(build)
        env_dir = tmp_path / "env"
        env_dir.mkdir()
        (env_dir / "WHEELBARROW_INDEX_URL").write_text(indexes.with_token)
        cache, slug_home = tmp_path / "cache", tmp_path / "slug"

        def compile_() -> tuple[int, str]:
            stream = io.StringIO()
            environ = dict(os.environ, WHEELBARROW_SLUG_HOME=str(slug_home), STACK="test")
            code = run_compile(
                build,
                cache,
                env_dir,
                out=HerokuReporter(stream),
                environ=environ,
                runner=run_subprocess,
                which=shutil.which,
                uv=host().uv,
            )
            return code, stream.getvalue()

        code, log = compile_()
        assert code == 0, log
        assert "Fetched privdemo-1.0-py3-none-any.whl" in log
        assert TOKEN not in log
        assert leaks(build, users) == [] and leaks(cache) == []
        (indexes.private.files_dir / "privdep-2.0-py3-none-any.whl").unlink()
        shutil.rmtree(cache)
        shutil.rmtree(build / ".heroku")
        code, log = compile_()
        assert code == 1 and "HTTP 404" in log
        assert TOKEN not in log
