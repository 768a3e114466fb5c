"""An unchanged app rebuilds without the package index in both buildpacks: the last lock is
kept in the build cache, keyed by its inputs digest, and reused while the inputs hold."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

from support import build_local_index, make_wheel, serve_local_index
from support.heroku import restore_like_the_lifecycle

from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.ship.heroku.cnb_build import build as cnb_build
from wheelbarrow.ship.heroku.compile import run_compile
from wheelbarrow.ship.heroku.lockcache import keep_lock, restore_lock
from wheelbarrow.ship.heroku.output import HerokuReporter

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def checkout(source: Path, dest: Path) -> Path:
    """A fresh checkout of the app: what each build starts from (no lock committed)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    return dest


def alpha_in(python: Path) -> str:
    """The alpha version the environment imports."""
    done = subprocess.run(
        [python, "-c", "import alpha; print(alpha.__version__)"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def make_source(tmp_path: Path) -> Path:
    """An app needing webapp, whose dependency alpha is not pinned anywhere."""
    source = tmp_path / "repo"
    source.mkdir()
    (source / "requirements.txt").write_text("webapp==1.0\n")
    (source / ".python-version").write_text(HOST_PYTHON + "\n")
    return source


def make_dists(tmp_path: Path) -> Path:
    """webapp 1.0 (requires alpha, unpinned) and alpha 1.0."""
    dists = tmp_path / "index"
    make_wheel(dists, "alpha", "1.0")
    make_wheel(dists, "webapp", "1.0", requires=["alpha"])
    return dists


class TestClassic:
    def compile(self, build: Path, tmp_path: Path, index_url: str) -> tuple[int, str]:
        env = tmp_path / "env"
        env.mkdir(exist_ok=True)
        (env / "WHEELBARROW_INDEX_URL").write_text(index_url)
        stream = io.StringIO()
        code = run_compile(
            build,
            tmp_path / "cache",
            env,
            out=HerokuReporter(stream),
            environ=dict(os.environ, WHEELBARROW_SLUG_HOME=str(build), STACK="test-stack"),
            runner=run_subprocess,
            which=shutil.which,
            uv=_uv(),
        )
        return code, stream.getvalue()

    def test_fresh_checkouts_reuse_the_cached_lock_without_the_index(self, tmp_path):
        """A new release of an unpinned dependency changes nothing, and with the index stopped
        an unchanged app still builds, without a Locking line."""
        source, dists = make_source(tmp_path), make_dists(tmp_path)
        build = tmp_path / "build"
        with serve_local_index(dists) as index:
            code, out = self.compile(checkout(source, build), tmp_path, index.url)
            assert code == 0, out
            assert "Locking" in out
            make_wheel(dists, "alpha", "2.0")
            build_local_index(dists, [])
            code, out = self.compile(checkout(source, build), tmp_path, index.url)
            assert code == 0, out
            assert "pylock.toml: the last lock, from the build cache" in out
            assert "Locking" not in out
            assert alpha_in(build / ".heroku" / "venv" / "bin" / "python") == "1.0"
            url = index.url
        code, out = self.compile(checkout(source, build), tmp_path, url)
        assert code == 0, out
        assert "Locking" not in out
        assert alpha_in(build / ".heroku" / "venv" / "bin" / "python") == "1.0"

    def test_changed_inputs_lock_again(self, tmp_path):
        """A changed requirement is locked again: the cached lock no longer matches its inputs."""
        source, dists = make_source(tmp_path), make_dists(tmp_path)
        build = tmp_path / "build"
        with serve_local_index(dists) as index:
            assert self.compile(checkout(source, build), tmp_path, index.url)[0] == 0
            make_wheel(dists, "alpha", "2.0")
            build_local_index(dists, [])
            (source / "requirements.txt").write_text("webapp==1.0\nalpha>=2.0\n")
            code, out = self.compile(checkout(source, build), tmp_path, index.url)
        assert code == 0, out
        assert "Locking" in out
        assert alpha_in(build / ".heroku" / "venv" / "bin" / "python") == "2.0"

    def test_a_committed_lock_is_never_overwritten(self, tmp_path):
        """An app that commits its own pylock.toml keeps it byte for byte."""
        lock = tmp_path / "app" / "pylock.toml"
        lock.parent.mkdir()
        cached = tmp_path / "cached.toml"
        cached.write_text(
            'lock-version = "1.0"\n[tool.wheelbarrow]\ninputs = "sha256:' + "a" * 64 + '"\n'
        )
        assert keep_lock(cached, tmp_path / "cache") == "sha256:" + "a" * 64
        lock.write_text('lock-version = "1.0"\ncreated-by = "pip"\n')
        assert restore_lock(lock, tmp_path / "cache") is None
        assert lock.read_text() == 'lock-version = "1.0"\ncreated-by = "pip"\n'
        lock.unlink()
        assert restore_lock(lock, tmp_path / "cache") == "sha256:" + "a" * 64
        assert lock.read_text() == cached.read_text()


class TestCloudNative:
    def test_fresh_workspaces_reuse_the_cached_lock_without_the_index(self, tmp_path):
        """The CNB keeps the lock in its cache layer: with the index stopped the next build of
        an unchanged app succeeds without locking, and the new alpha release is not taken."""
        source, dists = make_source(tmp_path), make_dists(tmp_path)
        platform = tmp_path / "platform"
        (platform / "env").mkdir(parents=True)
        layers = tmp_path / "layers"
        layers.mkdir()
        workspace = tmp_path / "workspace"

        def build() -> str:
            stream = io.StringIO()
            cnb_build(
                checkout(source, workspace),
                layers_dir=layers,
                platform_dir=platform,
                plan_path=None,
                environ={"PATH": "/usr/bin:/bin"},
                runner=run_subprocess,
                which=shutil.which,
                uv=_uv(),
                out=HerokuReporter(stream),
            )
            return stream.getvalue()

        with serve_local_index(dists) as index:
            (platform / "env" / "WHEELBARROW_INDEX_URL").write_text(index.url)
            assert "Locking" in build()
            make_wheel(dists, "alpha", "2.0")
            build_local_index(dists, [])
        restore_like_the_lifecycle(layers)
        out = build()
        assert "pylock.toml: the last lock, from the build cache" in out
        assert "Locking" not in out
        assert "Reusing the environment layer (metadata matches)" in out
