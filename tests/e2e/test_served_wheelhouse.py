"""A built wheelhouse as a package index: static simple/ files and `wheelbarrow serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import build_cli, make_app
from support.net import free_port

from wheelbarrow.share.serve import make_server


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(tmp_path / "uvc"),
        UV_PYTHON_DOWNLOADS="never",
        NO_PROXY="127.0.0.1",
    )
    return env


def _pip_install(index_url: str, tmp_path: Path) -> None:
    """pip-install beta (and alpha) from ``index_url`` into tmp_path/t, isolated from pip config."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--index-url",
            index_url,
            "--target",
            str(tmp_path / "t"),
            "--no-cache-dir",
            "--disable-pip-version-check",
            "beta",
        ],
        check=True,
        env=_clean_env(tmp_path),
        capture_output=True,
    )


@pytest.fixture
def wheelhouse(tmp_path: Path, local_index) -> tuple[Path, Path, Path]:
    """A built wheelhouse for `beta` (which needs alpha): (app, store, wheelhouse dir)."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "beta", "1.0", requires=["alpha"])
    index = local_index(d)
    app = make_app(tmp_path / "app", "beta\n")
    store = tmp_path / "store"
    result = build_cli(app, store, index.url, "--json")
    assert result.code == 0, result.err
    return app, store, Path(result.json()["wheelhouse"])


class TestServedWheelhouse:
    def test_pip_installs_from_the_served_wheelhouse(self, tmp_path, wheelhouse):
        """pip --index-url on the served simple/ resolves and installs from it alone."""
        _, _, house = wheelhouse
        with make_server(house) as server:
            _pip_install(server.simple_url, tmp_path)
        assert (tmp_path / "t" / "alpha").is_dir() and (tmp_path / "t" / "beta").is_dir()

    def test_uv_installs_from_the_served_wheelhouse(self, tmp_path, wheelhouse):
        """uv pip install --index-url (PEP 691 JSON) installs from the served wheelhouse."""
        _, _, house = wheelhouse
        venv = tmp_path / "venv"
        env = _clean_env(tmp_path)
        subprocess.run(
            ["uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env
        )
        with make_server(house) as server:
            subprocess.run(
                [
                    "uv",
                    "pip",
                    "install",
                    "-q",
                    "--python",
                    str(venv / "bin" / "python"),
                    "--index-url",
                    server.simple_url,
                    "beta",
                ],
                check=True,
                env=env,
                capture_output=True,
            )
        out = subprocess.run([venv / "bin" / "python", "-c", "import alpha, beta"], env=env)
        assert out.returncode == 0

    def test_pip_installs_from_the_static_files(self, tmp_path, wheelhouse):
        """The static simple/ tree works without a server, as a file:// index."""
        _, _, house = wheelhouse
        _pip_install((house / "simple").as_uri(), tmp_path)
        assert (tmp_path / "t" / "alpha").is_dir()

    def test_serve_command_serves_the_apps_wheelhouse(self, tmp_path, wheelhouse):
        """`wheelbarrow serve APP` prints its URL and pip installs from it."""
        app, store, _ = wheelhouse
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wheelbarrow",
                "serve",
                str(app),
                "--store",
                str(store),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert f"http://127.0.0.1:{port}/simple/" in line
            _pip_install(f"http://127.0.0.1:{port}/simple/", tmp_path)
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
        assert (tmp_path / "t" / "beta").is_dir()
