"""Wheelhouses are laid out only from blobs that still hash to their names."""

from __future__ import annotations

from pathlib import Path

from support import make_wheel
from support.apps import build_cli, make_app
from support.damage import flip_a_byte


class TestMaterialise:
    def test_a_flipped_byte_in_a_blob_is_caught_before_it_is_linked(self, tmp_path, local_index):
        """A damaged blob stops the new wheelhouse, naming it; the next build fetches it again."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        make_wheel(d, "alpha", "2.0")
        kept = make_wheel(d, "kept", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "alpha==1.0\nkept==1.0\n")
        store = tmp_path / "store"
        assert build_cli(app, store, index.url).code == 0
        [blob] = [
            p
            for p in (store / "blobs").rglob("*")
            if p.is_file()
            and p.stat().st_size == kept.stat().st_size
            and p.read_bytes() == kept.read_bytes()
        ]
        flip_a_byte(blob)
        (app / "requirements.txt").write_text("alpha==2.0\nkept==1.0\n")
        houses = sorted(p.name for p in (store / "wheelhouses").iterdir())
        result = build_cli(app, store, index.url)
        assert result.code == 1
        assert "kept-1.0-py3-none-any.whl" in result.err
        assert "no longer matches its sha256" in result.err
        assert sorted(p.name for p in (store / "wheelhouses").iterdir()) == houses
        index.requests.clear()
        again = build_cli(app, store, index.url, "--json")
        assert again.code == 0, again.err
        assert index.downloads == ["kept-1.0-py3-none-any.whl"]
        house = Path(again.json()["wheelhouse"])
        assert (house / "kept-1.0-py3-none-any.whl").read_bytes() == kept.read_bytes()


class TestWithoutSourceBuilder:
    def test_the_error_names_every_package_that_needs_a_source_build(self, tmp_path):
        """A caller that sets up no source builder is told which packages need one."""
        import pytest
        from packaging.utils import canonicalize_name

        from wheelbarrow._core.errors import StoreError
        from wheelbarrow._core.report import NullReporter
        from wheelbarrow.app.target import Target
        from wheelbarrow.lock.lockfile import Artefact
        from wheelbarrow.store.store import Store
        from wheelbarrow.wheelhouse.assemble import build_wheelhouse

        class NoFetches:
            def fetch(self, artefacts, store, reporter):
                return []

        tree = tmp_path / "localpkg"
        tree.mkdir()
        sources = [
            Artefact(
                name=canonicalize_name("localpkg"),
                version="?",
                filename="localpkg",
                url=None,
                path=tree,
                sha256="0" * 64,
                size=None,
                kind="directory",
            ),
            Artefact(
                name=canonicalize_name("vcspkg"),
                version="?",
                filename="vcspkg",
                url="git+file:///nowhere",
                path=None,
                sha256="1" * 40,
                size=None,
                kind="vcs",
            ),
        ]
        with pytest.raises(StoreError) as caught:
            build_wheelhouse(
                sources,
                Target.parse(python="3.11", platform="manylinux_2_28_x86_64"),
                store=Store(tmp_path / "store"),
                fetcher=NoFetches(),
                reporter=NullReporter(),
                settings={},
            )
        assert caught.value.message == (
            "2 packages need a source build, and none is set up: "
            f"localpkg ({tree}), vcspkg (git+file:///nowhere)"
        )
        assert caught.value.hint
