"""Wheelhouses are laid out only from blobs that still hash to their names."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name
from support import make_wheel
from support.apps import PLATFORM, build_cli, make_app
from support.artefacts import served_artefact
from support.damage import flip_a_byte

from wheelbarrow._core.report import RecordingReporter, Reporter
from wheelbarrow.app.target import Target
from wheelbarrow.lock.key import wheelhouse_key
from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.store.fetch import Fetched, Fetcher
from wheelbarrow.store.store import Store
from wheelbarrow.wheelhouse.assemble import BuildReport, build_wheelhouse


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


TARGET = Target.parse(python="3.11", platform=PLATFORM)
SETTINGS = {"layout": 1}


class CountingFetcher:
    """The real Fetcher, keeping what it was asked for on each call."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self._real = Fetcher(backoff=0)

    def fetch(
        self, artefacts: Sequence[Artefact], store: Store, reporter: Reporter
    ) -> Sequence[Fetched]:
        self.asked.append([a.filename for a in artefacts])
        return self._real.fetch(artefacts, store, reporter)


class RefusingFetcher:
    """A fetcher for wheelhouses that must not reach the network at all."""

    def fetch(
        self, artefacts: Sequence[Artefact], store: Store, reporter: Reporter
    ) -> Sequence[Fetched]:
        raise AssertionError(f"nothing should be fetched, but {list(artefacts)} was asked for")


def assemble(
    artefacts: Sequence[Artefact], store: Store, fetcher: object, **more: object
) -> BuildReport:
    return build_wheelhouse(
        artefacts,
        TARGET,
        store=store,
        fetcher=fetcher,  # type: ignore[arg-type]
        reporter=RecordingReporter(),
        settings=SETTINGS,
        **more,  # type: ignore[arg-type]
    )


class TestBuildWheelhouse:
    def test_an_up_to_date_key_does_nothing(self, tmp_path, local_index):
        """A wheelhouse whose key is complete is reported up to date without any fetch."""
        wheel = make_wheel(tmp_path / "d", "alpha", "1.0")
        index = local_index([wheel])
        alpha = served_artefact(wheel, index.base_url)
        store = Store(tmp_path / "store")
        first = assemble([alpha], store, CountingFetcher())
        index.requests.clear()

        again = assemble([alpha], store, RefusingFetcher())

        assert (first.status, again.status) == ("built", "up-to-date")
        assert again.key == first.key == wheelhouse_key([alpha], TARGET, SETTINGS)
        assert (again.fetched, again.reused, again.changes) == ((), (), ())
        assert index.requests == []

    def test_a_blob_the_store_lacks_is_fetched_once(self, tmp_path, local_index):
        """Only wheels missing from the store are fetched; a second wheelhouse reuses them."""
        d = tmp_path / "d"
        wheels = [make_wheel(d, "alpha", "1.0"), make_wheel(d, "beta", "1.0")]
        index = local_index(wheels)
        alpha, beta = (served_artefact(w, index.base_url) for w in wheels)
        store = Store(tmp_path / "store")
        store.add_file(wheels[0])  # alpha is in the store already
        fetcher = CountingFetcher()

        first = assemble([alpha, beta], store, fetcher)
        other = assemble([alpha, beta], store, fetcher, lock_sha256="another lock")
        third = build_wheelhouse(
            [alpha, beta],
            TARGET,
            store=store,
            fetcher=fetcher,
            reporter=RecordingReporter(),
            settings={"layout": 1, "build": {"repair": "never"}},
        )

        assert fetcher.asked == [["beta-1.0-py3-none-any.whl"], []]
        assert index.downloads == ["beta-1.0-py3-none-any.whl"]
        assert first.fetched == ("beta-1.0-py3-none-any.whl",)
        assert first.reused == ("alpha-1.0-py3-none-any.whl",)
        assert first.fetched_bytes == wheels[1].stat().st_size
        assert other.status == "up-to-date"  # the lock's sha256 is not part of the key
        assert third.key != first.key
        assert third.reused == ("alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")

    def test_the_manifest_lists_exactly_the_wheels_asked_for(self, tmp_path, local_index):
        """wheelhouse.json and the directory hold the artefacts' wheels, in order, and no more."""
        d = tmp_path / "d"
        wheels = [make_wheel(d, "beta", "1.0"), make_wheel(d, "alpha", "2.0")]
        make_wheel(d, "unasked", "1.0")
        index = local_index(d)
        artefacts = [served_artefact(w, index.base_url) for w in wheels]

        report = assemble(artefacts, Store(tmp_path / "store"), CountingFetcher(), lock_sha256="ab")

        manifest = json.loads((report.path / "wheelhouse.json").read_text())
        assert manifest["key"] == report.key
        assert manifest["target"] == TARGET.as_dict()
        assert manifest["lock-sha256"] == "ab"
        assert manifest["wheels"] == [
            {"name": a.name, "version": a.version, "filename": a.filename, "sha256": a.sha256}
            for a in artefacts
        ]
        assert sorted(p.name for p in report.path.iterdir()) == [
            "alpha-2.0-py3-none-any.whl",
            "alpha-2.0-py3-none-any.whl.metadata",
            "beta-1.0-py3-none-any.whl",
            "beta-1.0-py3-none-any.whl.metadata",
            "simple",
            "wheelhouse.json",
        ]
        assert report.packages == 2

    def test_the_changes_from_the_previous_wheelhouse_are_named(self, tmp_path, local_index):
        """Against the previous key: upgraded, added and removed packages, and a new file of the
        same version, each said once; an unchanged wheel is not."""
        d1, d2 = tmp_path / "d1", tmp_path / "d2"
        old = [
            make_wheel(d1, "alpha", "1.0"),
            make_wheel(d1, "kept", "1.0"),
            make_wheel(d1, "gone", "1.0"),
            make_wheel(d1, "rebuilt", "1.0"),
        ]
        new = [
            make_wheel(d2, "alpha", "2.0"),
            old[1],
            make_wheel(d2, "added", "1.0"),
            make_wheel(d2, "rebuilt", "1.0", files={"rebuilt/__init__.py": "X = 2\n"}),
        ]
        one, two = local_index(d1), local_index(d2)
        store = Store(tmp_path / "store")
        before = assemble([served_artefact(w, one.base_url) for w in old], store, CountingFetcher())

        after = assemble(
            [served_artefact(w, (one if w in old else two).base_url) for w in new],
            store,
            CountingFetcher(),
            previous_key=before.key,
        )

        assert [str(c) for c in after.changes] == [
            "added 1.0 (added)",
            "alpha 1.0 -> 2.0",
            "gone 1.0 (removed)",
            "rebuilt 1.0 (same version, new file)",
        ]
        assert after.fetched == (
            "alpha-2.0-py3-none-any.whl",
            "added-1.0-py3-none-any.whl",
            "rebuilt-1.0-py3-none-any.whl",
        )
