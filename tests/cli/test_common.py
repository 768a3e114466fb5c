"""The remote store and pushing, as the CLI chooses them: command line, environment, settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from wheelbarrow._core.errors import InputError
from wheelbarrow.cli import build_parser, common


@pytest.fixture(autouse=True)
def _no_remote_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WHEELBARROW_REMOTE", "WHEELBARROW_PUSH"):
        monkeypatch.delenv(name, raising=False)


def _app(root: Path, settings: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "requirements.txt").write_text("alpha\n", encoding="utf-8")
    (root / "pyproject.toml").write_text(f"[tool.wheelbarrow]\n{settings}", encoding="utf-8")
    return root


def _args(command: str, *argv: str | Path) -> argparse.Namespace:
    return build_parser(command).parse_args([command, *map(str, argv)])


def _url(args: argparse.Namespace) -> str | None:
    found = common.remote(args)
    return None if found is None else found.url


class TestRemote:
    def test_the_setting_names_it_when_nothing_else_does(self, tmp_path):
        """`remote` in pyproject.toml is the remote of build, push and pull."""
        app = _app(tmp_path / "app", 'remote = "s3://team/wheels"\n')
        for command in ("build", "push", "pull"):
            assert _url(_args(command, app)) == "s3://team/wheels"

    def test_the_environment_wins_over_the_setting(self, tmp_path, monkeypatch):
        """$WHEELBARROW_REMOTE wins over the setting."""
        app = _app(tmp_path / "app", 'remote = "s3://team/wheels"\n')
        monkeypatch.setenv("WHEELBARROW_REMOTE", "s3://machine/wheels")
        assert _url(_args("build", app)) == "s3://machine/wheels"

    def test_the_command_line_wins_over_both(self, tmp_path, monkeypatch):
        """--remote wins over $WHEELBARROW_REMOTE and the setting."""
        app = _app(tmp_path / "app", 'remote = "s3://team/wheels"\n')
        monkeypatch.setenv("WHEELBARROW_REMOTE", "s3://machine/wheels")
        assert _url(_args("build", app, "--remote", "s3://given/wheels")) == "s3://given/wheels"

    def test_none_without_any(self, tmp_path):
        """No option, variable or setting: no remote."""
        assert _url(_args("build", _app(tmp_path / "app"))) is None


class TestPush:
    def test_the_setting_pushes(self, tmp_path):
        """`push = true` pushes to the remote the setting names."""
        app = _app(tmp_path / "app", 'remote = "s3://team/wheels"\npush = true\n')
        remote, push = common.remote_and_push(_args("build", app))
        assert (remote is not None and remote.url, push) == ("s3://team/wheels", True)

    def test_the_environment_wins_over_the_setting_both_ways(self, tmp_path, monkeypatch):
        """WHEELBARROW_PUSH=0 turns the setting's push off, and =1 turns it on without one."""
        pushing = _app(tmp_path / "pushing", 'remote = "s3://team/wheels"\npush = true\n')
        quiet = _app(tmp_path / "quiet", 'remote = "s3://team/wheels"\n')
        monkeypatch.setenv("WHEELBARROW_PUSH", "0")
        assert common.remote_and_push(_args("build", pushing))[1] is False
        monkeypatch.setenv("WHEELBARROW_PUSH", "1")
        assert common.remote_and_push(_args("build", quiet))[1] is True

    def test_the_command_line_wins(self, tmp_path, monkeypatch):
        """--push pushes whatever the variable and the setting say."""
        app = _app(tmp_path / "app", 'remote = "s3://team/wheels"\npush = false\n')
        monkeypatch.setenv("WHEELBARROW_PUSH", "0")
        assert common.remote_and_push(_args("build", app, "--push"))[1] is True

    def test_pushing_without_a_remote_names_who_asked(self, tmp_path, monkeypatch):
        """The setting, the variable or the option that asks to push without a remote is named."""
        app = _app(tmp_path / "app", "push = true\n")
        with pytest.raises(InputError, match=r"push = true in .*pyproject\.toml needs a remote"):
            common.remote_and_push(_args("build", app))
        monkeypatch.setenv("WHEELBARROW_PUSH", "1")
        with pytest.raises(InputError, match="WHEELBARROW_PUSH=1 needs a remote"):
            common.remote_and_push(_args("build", app))
        with pytest.raises(InputError, match="--push needs a remote"):
            common.remote_and_push(_args("build", app, "--push"))


class TestLazyReporter:
    def test_made_at_the_first_report_and_counting_them(self, tmp_path):
        """Nothing reported: no reporter made (no terminal display imported); then one is made
        once, gets every call, and the calls are counted."""
        from wheelbarrow._core.report import RecordingReporter

        made: list[RecordingReporter] = []

        def make() -> RecordingReporter:
            made.append(RecordingReporter())
            return made[-1]

        lazy = common.LazyReporter(make)
        assert (made, lazy.calls) == ([], 0)
        lazy.message("info", "one")
        lazy.download_started(1, None)
        lazy.message("warning", "two")
        assert len(made) == 1 and lazy.calls == 3
        assert [text for _, text in made[0].messages] == ["one", "two"]
