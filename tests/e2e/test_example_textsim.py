"""End to end on examples/textsim: lock, build, install into a fresh directory, serve, ask."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support.apps import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "textsim"

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _serve_and_ask() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "serve_and_ask", REPO / "scripts" / "serve_and_ask.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_and_ask"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """examples/textsim copied, locked on the real index, built and installed: (app, env, store)."""
    root = tmp_path_factory.mktemp("textsim")
    app = root / "app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("pylock.toml", "__pycache__"))
    store = root / "store"
    for args in (
        ("lock", app),
        ("build", app, "--store", store),
        ("install", app, "--store", store, "--into", root / "env"),
    ):
        result = cli(*args)
        assert result.code == 0, result.err
    return app, root / "env", store


class TestTextsim:
    def test_service_answers_with_correct_similarities(self, installed):
        """Identical texts score 1.0, unrelated ones 0.0, and the matrix is symmetric."""
        app, env, _ = installed
        ask = _serve_and_ask()
        port = ask.free_port()
        proc = ask.start(app, env, port)
        try:
            ask.wait_until_up(port, proc)
            status, body = ask.post(
                f"http://127.0.0.1:{port}/similarity",
                {"texts": ["the cat sat", "the cat sat", "dogs bark", "the cat ran"]},
            )
            assert status == 200
            m = body["similarity"]
            assert len(m) == 4 and all(len(row) == 4 for row in m)
            assert m[0][1] == pytest.approx(1.0)
            assert m[0][2] == pytest.approx(0.0)
            assert 0.0 < m[0][3] < 1.0
            assert all(m[i][j] == pytest.approx(m[j][i]) for i in range(4) for j in range(4))
            assert all(m[i][i] == pytest.approx(1.0) for i in range(4))

            status, body = ask.post(f"http://127.0.0.1:{port}/similarity", {"text": "oops"})
            assert status == 400
            assert "texts" in body["error"]
            status, body = ask.post(f"http://127.0.0.1:{port}/similarity", {"texts": ["only one"]})
            assert status == 400
        finally:
            ask.stop(proc)

    def test_rebuild_is_a_no_op_and_reinstall_is_instant(self, installed, tmp_path):
        """A second build reports up-to-date; a second directory is cloned from the store."""
        app, _, store = installed
        build = cli("build", app, "--store", store, "--json")
        assert build.code == 0 and build.json()["status"] == "up-to-date"
        again = cli("install", app, "--store", store, "--into", tmp_path / "env2", "--json")
        assert again.code == 0 and again.json()["status"] == "cloned"
        assert (tmp_path / "env2" / "bin" / "gunicorn").is_file()

    def test_lock_pins_the_whole_stack_with_hashes(self, installed):
        """The lock names every package of the stack with a sha256 for its wheel."""
        app, _, _ = installed
        text = (app / "pylock.toml").read_text()
        for name in (
            "numpy",
            "scipy",
            "scikit-learn",
            "flask",
            "gunicorn",
            "joblib",
            "threadpoolctl",
        ):
            assert f'name = "{name}"' in text
        assert "sha256" in text
        assert "[tool.wheelbarrow]" in text
