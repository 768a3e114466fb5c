"""The lock of an app whose requirements wheelbarrow resolves: what to run when it is stale."""

from __future__ import annotations

from pathlib import Path

from support.apps import make_app

from wheelbarrow.app.directory import read_app
from wheelbarrow.app.target import Target
from wheelbarrow.lock.requirements_lock import build_command


class TestBuildCommand:
    def test_the_default_lock_is_made_by_a_plain_build(self, tmp_path: Path) -> None:
        """pylock.toml is what `wheelbarrow build APP` locks."""
        app = read_app(make_app(tmp_path / "app", "alpha\n"), environ={})
        target = Target.parse(python="3.12", platform="manylinux_2_28_x86_64")
        assert build_command(app, target, app.lock_path) == f"wheelbarrow build {app.root}"

    def test_a_side_by_side_lock_names_its_target(self, tmp_path: Path) -> None:
        """Another target's own lock is made by a build that names that target."""
        app = read_app(make_app(tmp_path / "app", "alpha\n"), environ={})
        target = Target.parse(python="3.12", platform="manylinux_2_28_aarch64")
        side = app.root / "pylock.py3_12-manylinux_2_28_aarch64.toml"
        assert build_command(app, target, side) == (
            f"wheelbarrow build {app.root} --python 3.12 --platform manylinux_2_28_aarch64"
        )
