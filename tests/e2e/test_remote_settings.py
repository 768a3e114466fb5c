"""The remote store named in the app's settings: a plain `wheelbarrow build` shares through it."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import make_wheel, serve_local_index
from support.apps import PLATFORM, make_app
from support.s3server import S3Server, session_s3_server

pytestmark = pytest.mark.slow
_buckets = itertools.count()
WHEELS = sorted(f"{n}-1.0-py3-none-any.whl" for n in ("alpha", "beta", "gamma"))


@pytest.fixture
def s3(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> S3Server:
    """The session's S3-compatible server."""
    return session_s3_server(request.config, tmp_path_factory.mktemp("s3"))


@pytest.fixture
def remote(s3: S3Server) -> str:
    """The URL of an empty remote store in a new bucket."""
    bucket = f"settings-{next(_buckets)}"
    s3.make_bucket(bucket)
    return f"s3://{bucket}/team/wheels"


def _app(tmp_path: Path, settings: str) -> tuple[Path, Path]:
    """An app needing gamma (beta, alpha) whose pyproject.toml holds ``settings``: (app, wheels)."""
    dists = tmp_path / "dists"
    make_wheel(dists, "alpha", "1.0", files={"alpha/__init__.py": "VALUE = 'alpha'\n"})
    make_wheel(dists, "beta", "1.0", requires=["alpha"])
    make_wheel(dists, "gamma", "1.0", requires=["beta"])
    app = make_app(tmp_path / "app", "gamma\n")
    (app / "pyproject.toml").write_text(f"[tool.wheelbarrow]\n{settings}", encoding="utf-8")
    return app, dists


def _env(s3: S3Server, store: Path) -> dict[str, str]:
    """This machine's environment with the server's credentials, and no remote of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WHEELBARROW_"))}
    return env | s3.env() | {"WHEELBARROW_STORE": str(store)}


def _ok(env: dict[str, str], *args: str | Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "wheelbarrow", *map(str, args), "--json"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


class TestRemoteInTheSettings:
    def test_a_plain_build_elsewhere_pulls_from_it_without_an_index(
        self, s3: S3Server, remote: str, tmp_path: Path
    ) -> None:
        """`remote` in pyproject.toml: `build --push` uploads there, and on another machine with an
        empty store and no index reachable, a plain `wheelbarrow build APP` pulls from it."""
        root, dists = _app(tmp_path, f'remote = "{remote}"\n')
        with serve_local_index(dists) as index:
            built = _ok(_env(s3, tmp_path / "store1"), "build", root, "-i", index.url,
                        "--platform", PLATFORM, "--push")  # fmt: skip
        assert built["status"] == "built"
        other = tmp_path / "machine2" / "app"
        shutil.copytree(root, other)
        # The index's port is closed now: asking it anything would fail the build.
        pulled = _ok(_env(s3, tmp_path / "store2"), "build", other)
        assert pulled["key"] == built["key"]
        assert sorted(pulled["fetched"]) == WHEELS

    def test_push_true_uploads_on_a_plain_build_and_pull_reads_the_setting(
        self, s3: S3Server, remote: str, tmp_path: Path
    ) -> None:
        """`push = true` makes a plain build upload (the settings leave the key as it was), and
        `wheelbarrow pull APP` finds the remote in the settings too."""
        root, dists = _app(tmp_path, f'remote = "{remote}"\npush = true\n')
        with serve_local_index(dists) as index:
            built = _ok(_env(s3, tmp_path / "store1"), "build", root, "-i", index.url,
                        "--platform", PLATFORM)  # fmt: skip
        keyed = _ok(_env(s3, tmp_path / "store1"), "key", root)
        (root / "pyproject.toml").write_text("[tool.wheelbarrow]\n", encoding="utf-8")
        assert _ok(_env(s3, tmp_path / "store1"), "key", root)["key"] == keyed["key"]
        assert keyed["key"] == built["key"]
        (root / "pyproject.toml").write_text(
            f'[tool.wheelbarrow]\nremote = "{remote}"\n', encoding="utf-8"
        )
        pulled = _ok(_env(s3, tmp_path / "store2"), "pull", root)
        assert pulled["key"] == built["key"] and len(pulled["moved"]) == 3
