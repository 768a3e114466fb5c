"""One wheelhouse for many machines: pushed to a real S3-compatible server, built elsewhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import serve_local_index
from support.apps import PLATFORM, run, run_ok
from support.net import free_port
from support.s3server import S3Server, client_env

from wheelbarrow.store.store import Store

pytestmark = pytest.mark.slow
WHEELBARROW = (sys.executable, "-m", "wheelbarrow")


@pytest.fixture
def index_url(app: tuple[Path, Path], local_index: Any) -> str:
    """The app's wheels served as an index on 127.0.0.1."""
    return str(local_index(app[1]).url)


class TestSharedWheelhouse:
    def test_push_then_build_elsewhere_without_an_index(
        self, s3: S3Server, remote: str, app: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """A wheelhouse pushed from one store builds a second, empty one with no index reachable,
        and that machine installs and imports it."""
        root, dists = app
        env = client_env(s3)
        first = tmp_path / "store1"
        with serve_local_index(dists) as index:
            built = run_ok(env, "build", root, "--store", first, "-i", index.url,
                        "--platform", PLATFORM, "--remote", remote, "--push")  # fmt: skip
        assert built["status"] == "built"
        # Another machine: the same app (its lock) and an empty store.
        other = tmp_path / "machine2" / "app"
        shutil.copytree(root, other)
        second = tmp_path / "store2"
        env2 = client_env(s3, WHEELBARROW_REMOTE=remote)
        # The same index URL, its port closed now: any request to it would fail the build.
        pulled = run_ok(env2, "build", other, "--store", second, "-i", index.url,
                     "--platform", PLATFORM)  # fmt: skip
        assert pulled["key"] == built["key"]
        assert sorted(pulled["fetched"]) == sorted(
            f"{n}-1.0-py3-none-any.whl" for n in ("alpha", "beta", "gamma")
        )
        env_dir = tmp_path / "env"
        run_ok(env2, "install", other, "--store", second, "--into", env_dir)
        done = subprocess.run(
            [env_dir / "bin" / "python", "-c", "import alpha, beta, gamma; print(alpha.VALUE)"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.strip() == "alpha"
        # Pulled again, nothing moves.
        again = run_ok(env2, "pull", other, "--store", second)
        assert again["moved"] == [] and again["key"] == built["key"]

    def test_two_concurrent_pushers(
        self, s3: S3Server, remote: str, app: tuple[Path, Path], index_url: str, tmp_path: Path
    ) -> None:
        """Two machines pushing one wheelhouse at once both succeed, and a third pulls it whole."""
        root, index = app[0], index_url
        env = client_env(s3)
        stores = [tmp_path / "s1", tmp_path / "s2"]
        for store in stores:
            run_ok(env, "build", root, "--store", store, "-i", index, "--platform", PLATFORM)
        pushers = [
            subprocess.Popen(
                [*WHEELBARROW, "push", str(root), "--store", str(s), "--remote", remote, "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for s in stores
        ]
        results = [p.communicate(timeout=120) for p in pushers]
        assert [p.returncode for p in pushers] == [0, 0], results
        keys = {json.loads(out)["key"] for out, _ in results}
        assert len(keys) == 1
        third = tmp_path / "s3"
        pulled = run_ok(env, "pull", root, "--store", third, "--remote", remote)
        assert pulled["key"] in keys and len(pulled["moved"]) == 3
        manifest = json.loads(
            (Store(third).wheelhouse(pulled["key"]) / "wheelhouse.json").read_text()
        )
        for wheel in manifest["wheels"]:
            assert Store(third).blob(wheel["sha256"]).is_file()

    def test_upload_killed_midway_is_not_trusted(
        self, s3: S3Server, remote: str, app: tuple[Path, Path], index_url: str, tmp_path: Path
    ) -> None:
        """A push killed after its first blob leaves no wheelhouse a reader trusts: another
        machine's build misses and builds from the index, and pulling says it is not there."""
        root, index = app[0], index_url
        env = client_env(s3)
        first = tmp_path / "store1"
        built = run_ok(env, "build", root, "--store", first, "-i", index, "--platform", PLATFORM)
        killer = textwrap.dedent(
            """
            import os, signal, sys
            from pathlib import Path
            from wheelbarrow.share.s3 import S3Remote
            from wheelbarrow.store.remote import push_wheelhouse
            from wheelbarrow.store.store import Store

            remote = S3Remote(sys.argv[1], environ=os.environ)
            put = remote.put_blob
            def put_then_die(sha256, path):
                put(sha256, path)
                os.kill(os.getpid(), signal.SIGKILL)  # after one blob, before the rest
            remote.put_blob = put_then_die
            store, key = Store(Path(sys.argv[2])), sys.argv[3]
            manifest = store.wheelhouse(key) / "wheelhouse.json"
            push_wheelhouse(remote, store, key, manifest, workers=1)
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", killer, remote, str(first), built["key"]],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == -9, done.stderr
        missing = run(env, "pull", root, "--store", tmp_path / "empty", "--remote", remote)
        assert missing.returncode != 0 and "has no wheelhouse" in missing.stderr
        second = tmp_path / "store2"
        clean = run_ok(env, "build", root, "--store", second, "-i", index, "--platform", PLATFORM,
                    "--remote", remote, "--push")  # fmt: skip
        assert clean["key"] == built["key"] and len(clean["fetched"]) == 3
        third = run_ok(env, "pull", root, "--store", tmp_path / "store3", "--remote", remote)
        assert len(third["moved"]) == 3


class TestRemoteErrors:
    def test_wrong_credentials(
        self, s3: S3Server, remote: str, app: tuple[Path, Path], index_url: str, tmp_path: Path
    ) -> None:
        """A refused secret fails the build with the remote's URL and what to check, no secret."""
        root, index = app[0], index_url
        env = client_env(s3, AWS_SECRET_ACCESS_KEY="wrong-secret-7b1f")  # noqa: S106 (a test secret)
        done = run(env, "build", root, "--store", tmp_path / "s", "-i", index,
                    "--platform", PLATFORM, "--remote", remote)  # fmt: skip
        assert done.returncode == 1
        assert f"error: {remote}" in done.stderr and "access denied" in done.stderr
        assert "hint: check the credentials" in done.stderr
        assert "wrong-secret-7b1f" not in done.stderr + done.stdout

    def test_unreachable_endpoint(
        self, s3: S3Server, remote: str, app: tuple[Path, Path], index_url: str, tmp_path: Path
    ) -> None:
        """An endpoint nothing listens on fails the build, naming it and what to check."""
        root, index = app[0], index_url
        closed = f"http://127.0.0.1:{free_port()}"
        env = client_env(s3, AWS_ENDPOINT_URL=closed)
        done = run(env, "build", root, "--store", tmp_path / "s", "-i", index,
                    "--platform", PLATFORM, "--remote", remote)  # fmt: skip
        assert done.returncode == 1
        assert "cannot reach the S3 endpoint" in done.stderr and closed in done.stderr
        assert "hint: check AWS_ENDPOINT_URL" in done.stderr
