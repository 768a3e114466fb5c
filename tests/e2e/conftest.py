"""Fixtures of the end-to-end tests that share a remote store."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_wheel
from support.apps import make_app


@pytest.fixture
def app(tmp_path: Path) -> tuple[Path, Path]:
    """An app needing gamma (which needs beta, which needs alpha): (app, its wheels' directory)."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0", files={"alpha/__init__.py": "VALUE = 'alpha'\n"})
    make_wheel(d, "beta", "1.0", requires=["alpha"])
    make_wheel(d, "gamma", "1.0", requires=["beta"])
    return make_app(tmp_path / "app", "gamma\n"), d
