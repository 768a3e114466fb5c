"""Environments that run on a stored one are back-references: ``store gc`` keeps what they use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import make_wheel
from support.apps import build_ok, cli, make_app

from wheelbarrow.store import dependents


@pytest.fixture
def index_url(tmp_path, local_index):
    """A local index: alpha 1.0 and 2.0."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "alpha", "2.0")
    return local_index(d).url


def install(app: Path, store: Path, into: Path, *extra: str) -> dict[str, Any]:
    result = cli("install", app, "--store", store, "--into", into, "--json", *extra)
    assert result.code == 0, result.err
    report: dict[str, Any] = result.json()
    return report


def gc(store: Path, *args: str) -> dict[str, Any]:
    result = cli("store", "gc", "--store", store, "--json", *args)
    assert result.code == 0, result.err
    report: dict[str, Any] = result.json()
    return report


def removed(report: dict[str, Any], kind: str) -> set[str]:
    return {r["name"] for r in report["removed"] if r["kind"] == kind}


def version_in(env: Path) -> str:
    done = subprocess.run(
        [env / "bin" / "python", "-c", "import alpha; print(alpha.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def shared_then_rebuilt(tmp_path, index_url):
    """An environment shares the store's alpha 1.0 environment; then the app moves to 2.0:
    (app, store, old environment's directory, its report)."""
    store = tmp_path / "store"
    app = make_app(tmp_path / "app", "alpha==1.0\n")
    build_ok(app, store, index_url)
    old = install(app, store, tmp_path / "old")
    (app / "requirements.txt").write_text("alpha==2.0\n")
    build_ok(app, store, index_url)
    install(app, store, tmp_path / "new")
    return app, store, tmp_path / "old", old


class TestGcAndSharedEnvironments:
    def test_gc_keeps_the_stored_environment_a_shared_one_runs_on(self, shared_then_rebuilt):
        """The old wheelhouse may go; the stored environment the old directory uses stays."""
        _, store, old_dir, old = shared_then_rebuilt
        report = gc(store, "--older-than", "0")
        assert old["env_key"] not in removed(report, "environment")
        assert (store / "envs" / old["env_key"]).is_dir()
        assert version_in(old_dir) == "1.0"
        assert cli("verify", "--store", store).code == 0

    def test_gc_keeps_it_under_any_size_limit(self, shared_then_rebuilt):
        """--max-size 0 removes all it may, and not what a directory runs on."""
        _, store, old_dir, _ = shared_then_rebuilt
        gc(store, "--max-size", "0", "--older-than", "0")
        assert version_in(old_dir) == "1.0"

    def test_gc_removes_it_once_the_environment_is_deleted(self, shared_then_rebuilt):
        """With the directory gone, the stored environment and its record go at the next gc."""
        _, store, old_dir, old = shared_then_rebuilt
        shutil.rmtree(old_dir)
        report = gc(store, "--older-than", "0")
        assert old["env_key"] in removed(report, "environment")
        assert dependents.records(store, old["env_key"]) == []
        assert not dependents.dependents_dir(store, old["env_key"]).exists()

    def test_an_environment_installed_over_lets_the_old_one_go(self, shared_then_rebuilt):
        """The old directory, installed again from the new wheelhouse, no longer holds the old."""
        app, store, old_dir, old = shared_then_rebuilt
        install(app, store, old_dir)
        assert version_in(old_dir) == "2.0"
        assert old["env_key"] in removed(gc(store, "--older-than", "0"), "environment")

    def test_a_clone_over_it_lets_the_old_one_go(self, shared_then_rebuilt):
        """A directory that became a clone shares nothing: its old record is stale."""
        app, store, old_dir, old = shared_then_rebuilt
        install(app, store, old_dir, "--link-mode", "copy")
        assert dependents.live(store, old["env_key"]) == []
        assert old["env_key"] in removed(gc(store, "--older-than", "0"), "environment")

    def test_a_dry_run_prunes_nothing(self, shared_then_rebuilt):
        """--dry-run leaves stale records where they are."""
        _, store, old_dir, old = shared_then_rebuilt
        shutil.rmtree(old_dir)
        dry = gc(store, "--older-than", "0", "--dry-run")
        assert old["env_key"] in removed(dry, "environment")
        assert len(dependents.records(store, old["env_key"])) == 1


class TestRecords:
    def test_a_record_names_its_directory_and_is_live_while_it_shares(self, tmp_path):
        """register, live and prune, on a directory whose marker says what it shares."""
        store = tmp_path / "store"
        stored = store / "envs" / "k"
        stored.mkdir(parents=True)
        env = tmp_path / "env"
        env.mkdir()
        marker = env / ".wheelbarrow-env.json"
        marker.write_text(f'{{"layout": "shared", "shares": "{stored}"}}')
        dependents.register(store, "k", env)
        assert dependents.live(store, "k") == [env]
        assert dependents.prune(store, "k") == 0
        marker.write_text('{"layout": "hardlink"}')
        assert dependents.live(store, "k") == []
        assert dependents.prune(store, "k") == 1
        assert dependents.keys(store) == []

    def test_an_unreadable_marker_keeps_the_record(self, tmp_path):
        """A doubt keeps what may be used: a marker that is not JSON counts as live."""
        store = tmp_path / "store"
        (store / "envs" / "k").mkdir(parents=True)
        env = tmp_path / "env"
        env.mkdir()
        (env / ".wheelbarrow-env.json").write_text("{not json")
        dependents.register(store, "k", env)
        assert dependents.live(store, "k") == [env]
        assert dependents.prune(store, "k") == 0
