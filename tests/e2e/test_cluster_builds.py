"""Source builds on a real Dask cluster (a scheduler and two worker processes on 127.0.0.1).

Each worker has an empty store of its own and no package index, only the
remote store on a real S3-compatible server; the machine that runs ``build
--cluster`` discovers the graph, uploads the inputs and takes the wheels back.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3fs  # type: ignore[import-untyped]
from support import (
    make_build_helper_sdist,
    make_c_extension_sdist,
    make_dependent_sdist,
    make_failing_sdist,
    serve_local_index,
)
from support.apps import PLATFORM, make_app, run, run_ok
from support.dask_cluster import LocalDaskCluster, run_dask_cluster
from support.s3server import S3Server, client_env
from support.sdists import build_helper_stamp

from wheelbarrow.store.store import Store

pytestmark = pytest.mark.slow
MANIFEST = "wheelhouse.json"


@pytest.fixture
def cluster(tmp_path: Path, s3: S3Server) -> Iterator[LocalDaskCluster]:
    """Two one-thread workers, each with its own empty store and the remote's credentials."""
    with run_dask_cluster(tmp_path / "cluster", workers=2, env=s3.env()) as running:
        yield running


def _settings(app: Path, packages: dict[str, dict[str, Any]]) -> None:
    """The app's wheelbarrow.toml: a ``[packages.NAME]`` table each (env, exclusive)."""
    import tomli_w

    text = tomli_w.dumps({"packages": packages})
    (app / "wheelbarrow.toml").write_text(text, encoding="utf-8")


def _slow(seconds: float) -> dict[str, Any]:
    return {"env": {"FIXTURE_BUILD_SECONDS": str(seconds)}}


def _remote_sha256(s3: S3Server, remote: str, sha256: str) -> str:
    """The sha256 of the blob the remote store holds under ``sha256``, recomputed here."""
    import hashlib

    fs = s3fs.S3FileSystem(
        key=s3.access_key, secret=s3.secret_key, endpoint_url=s3.endpoint, skip_instance_cache=True
    )
    data = fs.cat(f"{remote.removeprefix('s3://')}/blobs/sha256/{sha256[:2]}/{sha256}")
    return hashlib.sha256(data).hexdigest()


def _records(store: Path) -> dict[str, dict[str, Any]]:
    """The builds a worker's store recorded: wheel name to record."""
    found = {}
    for result in (store / "built").glob("*/result.json"):
        record = json.loads(result.read_text())
        found[record["wheel"]] = record
    return found


def _built(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in report["built"]}


class TestClusterBuilds:
    def test_a_graph_with_build_order_edges_is_built_across_both_workers(
        self, s3: S3Server, remote: str, cluster: LocalDaskCluster, tmp_path: Path
    ) -> None:
        """buildhelper is built first; the two packages whose builds need it and a C extension
        run on both workers; every wheel the head takes is the one a worker built and pushed,
        and the wheelhouse installs and imports."""
        d = tmp_path / "dists"
        make_build_helper_sdist(d)
        make_dependent_sdist(d, "dep-one")
        make_dependent_sdist(d, "dep-two")
        make_c_extension_sdist(d, "cext")
        app = make_app(tmp_path / "app", "dep-one\ndep-two\ncext\n")
        _settings(app, {n: _slow(1.5) for n in ("dep-one", "dep-two", "cext")})
        store = tmp_path / "head-store"
        env = client_env(s3)
        with serve_local_index(d) as index:
            report = run_ok(env, "build", app, "--store", store, "-i", index.url,
                         "--platform", PLATFORM, "--remote", remote,
                         "--cluster", cluster.address)  # fmt: skip
        built = _built(report)
        assert set(built) == {"dep-one", "dep-two", "cext"}  # buildhelper is built for them
        assert len(report["fetched"]) == 3  # the sdists, with their true sizes
        assert report["fetched_bytes"] == sum((d / f).stat().st_size for f in report["fetched"])
        helpers = [
            (w.name, r) for w in cluster.workers for n, r in _records(w.store).items()
            if n.startswith("buildhelper-")
        ]  # fmt: skip
        assert len(helpers) == 1, helpers  # built once, on one worker, taken by the other
        workers = {b["worker"] for b in built.values()}
        assert len(workers) == 2, workers  # both workers built
        manifest = json.loads((Store(store).wheelhouse(report["key"]) / MANIFEST).read_text())
        shas = {w["filename"]: w["sha256"] for w in manifest["wheels"]}
        for name, b in built.items():
            assert b["span"] is not None and not b["reused"], name
            sha256 = shas[b["wheel"]]
            # End to end: the worker's own record, the remote's blob, the head's wheelhouse.
            worker = cluster.worker_of(b["worker"])
            assert _records(worker.store)[b["wheel"]]["sha256"] == sha256, name
            assert _remote_sha256(s3, remote, sha256) == sha256, name
        env_dir = tmp_path / "env"
        run_ok(env, "install", app, "--store", store, "--into", env_dir)
        done = subprocess.run(
            [env_dir / "bin" / "python", "-c",
             "import dep_one, cext; print(dep_one._build_info.BUILD_VALUE, cext.add(2, 3))"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.split("\n")[0] == f"{build_helper_stamp('dep-one')} 5"
        # Built again from an empty head store: every build is found by its key, none runs.
        again = run_ok(env, "build", app, "--store", tmp_path / "head2", "--platform", PLATFORM,
                    "--remote", remote, "--cluster", cluster.address)  # fmt: skip
        assert again["key"] == report["key"]
        assert {b["reason"] for b in again["built"]} == {"reused from the remote store"}

    def test_a_worker_killed_mid_build_has_its_build_finished_on_the_other(
        self, s3: S3Server, remote: str, cluster: LocalDaskCluster, tmp_path: Path
    ) -> None:
        """The worker that starts the slow build is killed; Dask reruns it on the other worker,
        and the wheel the head takes is that worker's (nothing of the dead one is trusted)."""
        d = tmp_path / "dists"
        make_c_extension_sdist(d, "slowext")
        app = make_app(tmp_path / "app", "slowext\n")
        _settings(app, {"slowext": _slow(6)})
        killed: list[str] = []

        def kill_the_builder() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                for worker in cluster.workers:
                    if list((worker.store / "built").glob("*/build.log")):
                        time.sleep(1.0)  # well inside its 6 s build
                        worker.kill()
                        killed.append(worker.name)
                        return
                time.sleep(0.1)

        watcher = threading.Thread(target=kill_the_builder, daemon=True)
        watcher.start()
        with serve_local_index(d) as index:
            report = run_ok(client_env(s3), "build", app, "--store", tmp_path / "head",
                            "-i", index.url, "--platform", PLATFORM, "--remote", remote,
                            "--cluster", cluster.address)  # fmt: skip
        watcher.join(timeout=5)
        assert killed, "no worker started the build"
        (built,) = report["built"]
        survivor = cluster.worker_of(built["worker"])
        assert survivor.name != killed[0]
        dead = next(w for w in cluster.workers if w.name == killed[0])
        assert _records(dead.store) == {}  # it never finished, so it pushed nothing
        assert _records(survivor.store)[built["wheel"]]["sha256"] == _remote_sha256(
            s3, remote, _records(survivor.store)[built["wheel"]]["sha256"]
        )

    def test_a_failed_build_names_the_package_and_its_worker_and_skips_its_dependants(
        self, s3: S3Server, remote: str, cluster: LocalDaskCluster, tmp_path: Path
    ) -> None:
        """A build that fails on a worker fails the command with its log's tail; nothing is
        half-written in the head's store."""
        d = tmp_path / "dists"
        make_failing_sdist(d, "broken")
        make_dependent_sdist(d, "needsbroken", build_requires=("broken",), helper_module="broken")
        make_c_extension_sdist(d, "fine")
        app = make_app(tmp_path / "app", "needsbroken\nfine\n")
        store = tmp_path / "head"
        with serve_local_index(d) as index:
            done = run(client_env(s3), "build", app, "--store", store, "-i", index.url,
                        "--platform", PLATFORM, "--remote", remote,
                        "--cluster", cluster.address)  # fmt: skip
        assert done.returncode != 0
        assert "broken 1.0" in done.stderr and "(on tcp://127.0.0.1:" in done.stderr, done.stderr
        assert "needsbroken 1.0: not built, it needs broken 1.0, which failed" in done.stderr
        assert not list((store / "wheelhouses").glob("*/wheelhouse.json"))

    def test_a_local_package_is_built_on_a_worker_and_rebuilt_there_after_an_edit(
        self, s3: S3Server, remote: str, cluster: LocalDaskCluster, tmp_path: Path
    ) -> None:
        """A directory in requirements.txt reaches the worker as an archive of its tree; an edit
        is a new source, built again on the cluster, and the new wheel is the one installed."""
        import tarfile

        sdist = make_c_extension_sdist(tmp_path / "d", "localpkg", "1.0")
        app = make_app(tmp_path / "app", "./localpkg-1.0\n")
        with tarfile.open(sdist) as tar:
            tar.extractall(app, filter="data")
        tree = [p.relative_to(app).as_posix() for p in app.rglob("*")]
        store = tmp_path / "head"
        env = client_env(s3)
        args = ("--store", store, "--platform", PLATFORM, "--no-index", "--remote", remote,
                "--cluster", cluster.address)  # fmt: skip
        (first,) = run_ok(env, "build", app, *args)["built"]
        assert first["worker"] and first["why"] == "first build for this target"
        init = app / "localpkg-1.0" / "localpkg" / "__init__.py"
        init.write_text(init.read_text() + "\nEDITED = 'yes'\n")
        (second,) = run_ok(env, "build", app, *args)["built"]
        assert second["worker"] and not second["reused"]
        assert second["wheel"] == first["wheel"]  # the same name, other bytes
        env_dir = tmp_path / "env"
        run_ok(env, "install", app, "--store", store, "--into", env_dir)
        done = subprocess.run(
            [env_dir / "bin" / "python", "-c", "import localpkg; print(localpkg.EDITED)"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.strip() == "yes"
        # The app's directory holds only what the user put there, and the lock.
        assert sorted(p.relative_to(app).as_posix() for p in app.rglob("*")) == sorted(
            [*tree, "pylock.toml"]
        )


class TestExclusiveBuilds:
    def test_an_exclusive_build_never_overlaps_another_on_its_worker(
        self, s3: S3Server, remote: str, tmp_path: Path
    ) -> None:
        """With two-thread workers, the exclusive build asks for both of its worker's build
        units, so nothing else runs there while it builds."""
        with run_dask_cluster(tmp_path / "cluster", workers=2, threads=2, env=s3.env()) as c:
            d = tmp_path / "dists"
            names = ["big", "one", "two", "three", "four"]
            for name in names:
                make_c_extension_sdist(d, name)
            app = make_app(tmp_path / "app", "\n".join(names) + "\n")
            _settings(app, {"big": {**_slow(3), "exclusive": True},
                            **{n: _slow(1.5) for n in names[1:]}})  # fmt: skip
            with serve_local_index(d) as index:
                report = run_ok(client_env(s3), "build", app, "--store", tmp_path / "head",
                             "-i", index.url, "--platform", PLATFORM, "--remote", remote,
                             "--cluster", c.address)  # fmt: skip
        built = _built(report)
        big = built["big"]
        start, end = big["span"]
        for name in names[1:]:
            other = built[name]
            if other["worker"] == big["worker"]:
                o_start, o_end = other["span"]
                assert o_end <= start or o_start >= end, f"{name} overlapped big"
        assert len({b["worker"] for b in built.values()}) == 2


class TestClusterErrors:
    def test_cluster_without_a_remote_is_refused_before_anything_is_fetched(
        self, tmp_path: Path
    ) -> None:
        """--cluster without a remote store is an error that says to add one."""
        d = tmp_path / "dists"
        make_c_extension_sdist(d, "cext")
        app = make_app(tmp_path / "app", "cext\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELBARROW_")}
        with serve_local_index(d) as index:
            done = run(env, "build", app, "--store", tmp_path / "s", "-i", index.url,
                        "--platform", PLATFORM, "--cluster", "tcp://127.0.0.1:9")  # fmt: skip
        assert done.returncode != 0
        assert "needs a remote store" in done.stderr and "--remote" in done.stderr

    def test_the_cluster_setting_without_a_remote_names_the_settings_file(
        self, tmp_path: Path
    ) -> None:
        """`cluster = ...` in wheelbarrow.toml is used like --cluster: without a remote store the
        error names the setting and its file."""
        d = tmp_path / "dists"
        make_c_extension_sdist(d, "cext")
        app = make_app(tmp_path / "app", "cext\n")
        (app / "wheelbarrow.toml").write_text('cluster = "tcp://127.0.0.1:9"\n', encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELBARROW_")}
        with serve_local_index(d) as index:
            done = run(env, "build", app, "--store", tmp_path / "s", "-i", index.url,
                        "--platform", PLATFORM)  # fmt: skip
        assert done.returncode != 0
        assert f"cluster = 'tcp://127.0.0.1:9' in {app / 'wheelbarrow.toml'}" in done.stderr
        assert "needs a remote store" in done.stderr


@pytest.mark.network
class TestRealPackageOnTheCluster:
    def test_a_real_sdist_with_its_backend_from_the_index_builds_on_a_worker(
        self, s3: S3Server, remote: str, cluster: LocalDaskCluster, tmp_path: Path
    ) -> None:
        """mmh3 from its sdist, for an app with no Python pin: setuptools comes from the index
        to the head, through the remote store to the worker, which compiles mmh3 with gcc; the
        repaired wheel installs and hashes."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("mmh3==5.3.1\n", encoding="utf-8")
        store = tmp_path / "head"
        env = client_env(s3)
        report = run_ok(env, "build", app, "--store", store, "--no-binary", "mmh3",
                     "--remote", remote, "--cluster", cluster.address)  # fmt: skip
        (built,) = report["built"]
        assert built["worker"] and not built["reused"]
        assert built["repair"].startswith("repaired to manylinux"), built["repair"]
        worker = cluster.worker_of(built["worker"])
        assert [n for n in _records(worker.store) if n.startswith("mmh3-")] == [built["wheel"]]
        logs = [p.read_text() for p in (worker.store / "built").glob("*/build.log")]
        assert any("gcc" in text and "mmh3" in text for text in logs), logs
        env_dir = tmp_path / "env"
        run_ok(env, "install", app, "--store", store, "--into", env_dir)
        done = subprocess.run(
            [env_dir / "bin" / "python", "-c", "import mmh3; print(mmh3.hash('foo'))"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.strip() == "-156908512"
