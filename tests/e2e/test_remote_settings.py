"""The remote store named in the app's settings: a plain `wheelbarrow build` shares through it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support import make_wheel, serve_local_index
from support.apps import PLATFORM, make_app, run_ok
from support.s3server import S3Server

pytestmark = pytest.mark.slow
WHEELS = sorted(f"{n}-1.0-py3-none-any.whl" for n in ("alpha", "beta", "gamma"))


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


class TestRemoteInTheSettings:
    def test_a_plain_build_elsewhere_pulls_from_it_without_an_index(
        self, s3: S3Server, remote: str, tmp_path: Path
    ) -> None:
        """`remote` in pyproject.toml: `build --push` uploads there, and on another machine with an
        empty store and no index reachable, a plain `wheelbarrow build APP` pulls from it."""
        root, dists = _app(tmp_path, f'remote = "{remote}"\n')
        with serve_local_index(dists) as index:
            built = run_ok(_env(s3, tmp_path / "store1"), "build", root, "-i", index.url,
                        "--platform", PLATFORM, "--push")  # fmt: skip
        assert built["status"] == "built"
        other = tmp_path / "machine2" / "app"
        shutil.copytree(root, other)
        # The index's port is closed now: asking it anything would fail the build.
        pulled = run_ok(_env(s3, tmp_path / "store2"), "build", other)
        assert pulled["key"] == built["key"]
        assert sorted(pulled["fetched"]) == WHEELS

    def test_push_true_uploads_on_a_plain_build_and_pull_reads_the_setting(
        self, s3: S3Server, remote: str, tmp_path: Path
    ) -> None:
        """`push = true` makes a plain build upload (the settings leave the key as it was), and
        `wheelbarrow pull APP` finds the remote in the settings too."""
        root, dists = _app(tmp_path, f'remote = "{remote}"\npush = true\n')
        with serve_local_index(dists) as index:
            built = run_ok(_env(s3, tmp_path / "store1"), "build", root, "-i", index.url,
                        "--platform", PLATFORM)  # fmt: skip
        keyed = run_ok(_env(s3, tmp_path / "store1"), "key", root)
        (root / "pyproject.toml").write_text("[tool.wheelbarrow]\n", encoding="utf-8")
        assert run_ok(_env(s3, tmp_path / "store1"), "key", root)["key"] == keyed["key"]
        assert keyed["key"] == built["key"]
        (root / "pyproject.toml").write_text(
            f'[tool.wheelbarrow]\nremote = "{remote}"\n', encoding="utf-8"
        )
        pulled = run_ok(_env(s3, tmp_path / "store2"), "pull", root)
        assert pulled["key"] == built["key"] and len(pulled["moved"]) == 3
