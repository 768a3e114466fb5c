"""`wheelbarrow key`: the wheelhouse key, offline, from local files only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import PLATFORM, build_ok, cli, make_app


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """A directory of wheels: alpha, and beta that needs it."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "beta", "1.0", requires=["alpha>=1"])
    return d


class TestKey:
    def test_prints_the_key_build_made_without_a_request(self, tmp_path, wheels, local_index):
        """After a build, `key` prints the same key on one line and asks the index nothing."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        report = build_ok(app, tmp_path / "store", index.url)
        index.requests.clear()
        result = cli("key", app, "--platform", PLATFORM)
        assert result.code == 0, result.err
        assert result.out == report["key"] + "\n"
        assert index.requests == []

    def test_the_lock_supplies_the_platform_when_none_is_given(self, tmp_path, wheels, local_index):
        """Without --platform the lock's target is used, so the key is still the build's."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        report = build_ok(app, tmp_path / "store", index.url)
        assert cli("key", app).out == report["key"] + "\n"

    def test_json_gives_the_version_the_key_and_the_target(self, tmp_path, wheels, local_index):
        """--json prints {"version": 1, "key": ..., "target": ...}, the target as the build's."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        report = build_ok(app, tmp_path / "store", index.url)
        result = cli("key", app, "--platform", PLATFORM, "--json")
        assert result.code == 0, result.err
        assert result.json() == {
            "version": 1,
            "key": report["key"],
            "target": {"python": report["target"]["python"], "platform": PLATFORM},
        }

    def test_a_missing_lock_is_a_clear_error(self, tmp_path):
        """An app never locked has no key: the error says so and names the command to run."""
        app = make_app(tmp_path / "app", "beta==1.0\n")
        result = cli("key", app, "--platform", PLATFORM)
        assert result.code != 0
        assert result.out == ""
        assert "pylock.toml" in result.err
        assert f"wheelbarrow build {app}" in result.err
        assert not (app / "pylock.toml").exists()

    def test_a_stale_lock_is_a_clear_error_and_stays_as_it_was(self, tmp_path, wheels, local_index):
        """Requirements changed since the lock: an out-of-date error, and the lock is untouched."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        build_ok(app, tmp_path / "store", index.url)
        before = (app / "pylock.toml").read_bytes()
        (app / "requirements.txt").write_text("alpha==1.0\n", encoding="utf-8")
        index.requests.clear()
        result = cli("key", app, "--platform", PLATFORM)
        assert result.code != 0
        assert "out of date" in result.err
        assert (app / "pylock.toml").read_bytes() == before
        assert index.requests == []

    def test_runs_as_a_command_in_a_fresh_process(self, tmp_path, wheels, local_index):
        """`python -m wheelbarrow key` in a subprocess prints the key and nothing on stderr."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        report = build_ok(app, tmp_path / "store", index.url)
        done = subprocess.run(
            [sys.executable, "-m", "wheelbarrow", "key", str(app), "--platform", PLATFORM],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, report["key"] + "\n", "")

    def test_imports_only_what_reading_the_lock_needs(self, tmp_path, wheels, local_index):
        """A fresh `key` process loads no other command, no store, network, TOML writer or rich."""
        index = local_index(wheels)
        app = make_app(tmp_path / "app", "beta==1.0\n")
        report = build_ok(app, tmp_path / "store", index.url)
        probe = (
            "import sys\n"
            "from wheelbarrow.cli import main\n"
            f"code = main(['key', {str(app)!r}, '--platform', {PLATFORM!r}])\n"
            "print(sorted(m for m in sys.modules if m in set(sys.argv[1:])))\n"
        )
        unwanted = [
            *(f"wheelbarrow.cli.{c}" for c in ("build", "dockerfile", "store", "verify")),
            *(f"wheelbarrow.{m}" for m in ("store.store", "environment.interpreters")),
            *(f"wheelbarrow.{m}" for m in ("lock.managed", "_core.scratch")),
            "wheelbarrow.wheelhouse.buildhost",
            *("httpx", "filelock", "rich", "tomli_w", "platformdirs", "s3fs"),
        ]
        done = subprocess.run(
            [sys.executable, "-c", probe, *unwanted], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{report['key']}\n[]\n"
