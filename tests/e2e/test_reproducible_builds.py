"""Reproducible source builds against the real package index: two empty stores, one sha256."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from support.apps import cli

pytestmark = pytest.mark.network

# A C extension compiled by setuptools with the interpreter's -g (so the build directory
# would be in its debug information), and a pure-Python package built by its own backend.
PACKAGES = {"markupsafe": "3.0.2", "six": "1.17.0"}


def build_from_source(app: Path, store: Path) -> dict[str, str]:
    """Build every package of ``app`` from its sdist into ``store``; each one's wheel sha256."""
    no_binary = [arg for name in PACKAGES for arg in ("--no-binary", name)]
    result = cli("build", app, "--store", store, "--json", *no_binary)
    assert result.code == 0, result.err
    report = result.json()
    digests = {}
    for built in report["built"]:
        assert built["reused"] is False, "a reused wheel proves nothing"
        record = json.loads((Path(built["log"]).parent / "result.json").read_text())
        wheel = Path(report["wheelhouse"]) / record["wheel"]
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() == record["sha256"]
        digests[built["name"]] = record["sha256"]
    return digests


class TestReproducibleBuilds:
    def test_two_empty_stores_at_different_paths_build_identical_wheels(self, tmp_path):
        """The same sdists built from scratch in two stores at different paths (different build
        directories, no cache to share) give wheels with the same sha256, the C one compiled."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text(
            "".join(f"{name}=={version}\n" for name, version in PACKAGES.items())
        )
        first = build_from_source(app, tmp_path / "a" / "store")
        second_store = tmp_path / "another" / "place" / "store"
        second = build_from_source(app, second_store)

        assert sorted(first) == sorted(PACKAGES)
        assert first == second
        # A compiler ran, given the prefix maps.
        logs = "".join(p.read_text() for p in (second_store / "built").glob("*/build.log"))
        assert re.search(r"\bgcc\b.* -ffile-prefix-map=", logs), logs[-3000:]
