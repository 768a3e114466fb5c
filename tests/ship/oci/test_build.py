"""Tests for wheelbarrow.ship.oci.build: the environment layer, made once per key and compressor."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from wheelbarrow.ship.oci.basepython import BasePython
from wheelbarrow.ship.oci.build import environment_layer
from wheelbarrow.ship.oci.compression import Compression, layer_compression
from wheelbarrow.store.store import Store

PYTHON = BasePython(executable="/usr/bin/python3.11", version="3.11", found_by="config")


@pytest.fixture
def env(tmp_path: Path) -> Path:
    """A small stored environment: a script naming its own path, pyvenv.cfg, a package."""
    root = tmp_path / "envs" / "e1"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").symlink_to("/usr/local/bin/python3.11")
    (root / "bin" / "app").write_text(f"#!{root}/bin/python\nimport app\n")
    (root / "pyvenv.cfg").write_text("home = /usr/local/bin\n")
    package = root / "lib" / "python3.11" / "site-packages" / "app"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n" * 5000)
    return root


def layer(env: Path, store: Store, compression: Compression | None = None) -> tuple[str, bool]:
    blob, reused = environment_layer(
        env, env_key="k" * 32, python=PYTHON, store=store, mtime=0, compression=compression
    )
    return blob.digest, reused


def records(store: Store) -> list[dict[str, object]]:
    return [
        json.loads(p.read_text()) for p in sorted((store.root / "oci" / "env-layers").iterdir())
    ]


class TestEnvironmentLayer:
    def test_two_cold_builds_give_the_same_layer(self, env: Path, tmp_path: Path) -> None:
        """Two empty stores make the environment layer with the same digest, gzip and zstd."""
        for compression in (layer_compression("gzip"), layer_compression("zstd")):
            one = layer(env, Store(tmp_path / f"one-{compression.algorithm}"), compression)
            two = layer(env, Store(tmp_path / f"two-{compression.algorithm}"), compression)
            assert one == two
            assert one[1] is False

    def test_the_stores_records_stay_out_of_the_layer(self, env: Path, tmp_path: Path) -> None:
        """The seal (inodes, mtimes) and marker differ between stores and are not in the layer."""
        digests = []
        for run in ("a", "b"):
            (env / ".wheelbarrow-seal").write_text(f"inode {run}\n")
            (env / ".wheelbarrow-env.json").write_text(f'{{"made": "{run}"}}')
            digests.append(layer(env, Store(tmp_path / run))[0])
        assert digests[0] == digests[1]
        (env / "lib" / ".wheelbarrow-seal").write_text("a file of a package, kept\n")
        assert layer(env, Store(tmp_path / "c"))[0] != digests[0]

    def test_another_compressor_is_another_cache_entry(self, env: Path, tmp_path: Path) -> None:
        """zlib after ISA-L makes a layer of its own (no stale reuse); each is reused after."""
        store = Store(tmp_path / "store")
        isal = layer_compression("gzip", library="isal")
        plain = layer_compression("gzip", library="zlib")
        first, reused_first = layer(env, store, isal)
        second, reused_second = layer(env, store, plain)
        assert (reused_first, reused_second) == (False, False)
        assert first != second
        assert layer(env, store, isal) == (first, True)
        assert layer(env, store, plain) == (second, True)
        assert {r["compression"] for r in records(store)} == {isal.key, plain.key}

    def test_another_chunk_size_is_another_cache_entry(self, env: Path, tmp_path: Path) -> None:
        """The chunk size is in the key too: changing it never reuses the other layer."""
        store = Store(tmp_path / "store")
        default = layer_compression("gzip")
        layer(env, store, default)
        _, reused = layer(env, store, dataclasses.replace(default, chunk=4096))
        assert reused is False
        assert len(records(store)) == 2

    def test_zstd_layer_keeps_its_media_type_when_reused(self, env: Path, tmp_path: Path) -> None:
        """A reused zstd layer is still described as zstd."""
        store = Store(tmp_path / "store")
        compression = layer_compression("zstd")
        environment_layer(
            env, env_key="k" * 32, python=PYTHON, store=store, mtime=0, compression=compression
        )
        blob, reused = environment_layer(
            env, env_key="k" * 32, python=PYTHON, store=store, mtime=0, compression=compression
        )
        assert reused is True
        assert blob.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"

    def test_environment_is_asked_for_only_to_make_the_layer(
        self, env: Path, tmp_path: Path
    ) -> None:
        """Given as a function, the environment is asked for once: not when the layer is made."""
        store = Store(tmp_path / "store")
        calls: list[int] = []

        def environment() -> Path:
            calls.append(1)
            return env

        first = environment_layer(
            environment, env_key="k" * 32, python=PYTHON, store=store, mtime=0
        )
        again = environment_layer(
            environment, env_key="k" * 32, python=PYTHON, store=store, mtime=0
        )
        assert (first[1], again[1]) == (False, True)
        assert first[0].digest == again[0].digest
        assert calls == [1]
