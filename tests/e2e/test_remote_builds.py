"""Source builds shared through a real S3-compatible server: built once, found by build key."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import s3fs  # type: ignore[import-untyped]
from support import make_c_extension_sdist, serve_local_index
from support.apps import PLATFORM, make_app, run_ok
from support.s3server import S3Server, client_env

from wheelbarrow.build.buildcache import links_digest
from wheelbarrow.share.s3 import S3Remote
from wheelbarrow.store.store import Store

pytestmark = pytest.mark.slow
COMPILED = "[fixture-backend] + "  # the fixture backend's log line of each command it runs


def _only_build(report: dict[str, Any]) -> dict[str, Any]:
    (built,) = report["built"]
    assert built["name"] == "cext"
    return dict(built)


def _wheel_sha256(store: Path, key: str) -> str:
    manifest = json.loads((Store(store).wheelhouse(key) / "wheelhouse.json").read_text())
    (wheel,) = (w for w in manifest["wheels"] if w["name"] == "cext")
    return str(wheel["sha256"])


def _client(s3: S3Server) -> Any:
    """An S3 client of the test's own, to read and edit what was pushed."""
    return s3fs.S3FileSystem(
        key=s3.access_key, secret=s3.secret_key, endpoint_url=s3.endpoint, skip_instance_cache=True
    )


def _pushed_record(fs: Any, remote: str) -> tuple[str, dict[str, Any]]:
    """The one build record in ``remote``: its path (named by both parts of its key), its data."""
    (path,) = fs.find(remote.removeprefix("s3://") + "/builds")
    record: dict[str, Any] = json.loads(fs.cat_file(path))
    assert path.endswith(f"/builds/{record['key']}/{links_digest(record['links'])}/result.json")
    return str(path), record


def _add_untrusted_records(fs: Any, path: str, record: dict[str, Any]) -> None:
    """Beside the record, two no reader trusts: not JSON, and one whose inputs are not its key's
    (its wheel is not in the remote: trusted, it would fail the build)."""
    builds = path.rsplit("/", 2)[0]
    fs.pipe_file(f"{builds}/0000000000000000/result.json", b"{half a rec")
    forged = {**record, "inputs": {**record["inputs"], "version": "9.9"}, "sha256": "0" * 64}
    fs.pipe_file(f"{builds}/1111111111111111/result.json", json.dumps(forged).encode())


class TestBuildRecords:
    def test_round_trip_and_miss(
        self, s3: S3Server, remote: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Records put under a build key come back from it, and a key with none gives none."""
        for name, value in s3.env().items():  # the client reads its credentials from there
            monkeypatch.setenv(name, value)
        s3remote = S3Remote(remote, environ=s3.env())
        key = "ab" * 16
        assert s3remote.get_builds(key) == []
        s3remote.put_build(key, "0123456789abcdef", b'{"one": 1}')
        s3remote.put_build(key, "fedcba9876543210", b'{"two": 2}')
        s3remote.put_build("cd" * 16, "0123456789abcdef", b'{"other": 3}')
        assert sorted(s3remote.get_builds(key)) == [b'{"one": 1}', b'{"two": 2}']


class TestSharedSourceBuilds:
    def test_built_once_reused_by_key_and_rebuilt_when_its_links_differ(
        self, s3: S3Server, remote: str, tmp_path: Path
    ) -> None:
        """A C extension built and pushed on one machine is reused by its build key on another
        with no index reachable (no backend runs), installs and imports; a pushed record whose
        linked library differs from this machine's is not reused, and the package is built."""
        dists = tmp_path / "dists"
        make_c_extension_sdist(dists)
        first = make_app(tmp_path / "app", "cext==1.0\n")
        env = client_env(s3)
        with serve_local_index(dists) as index:
            built = run_ok(env, "build", first, "--store", tmp_path / "storeA", "-i", index.url,
                        "--platform", PLATFORM, "--remote", remote, "--push")  # fmt: skip
        made = _only_build(built)
        assert made["reason"] == "first build for this target" and made["remote"] is None
        log = Path(made["log"]).read_text()
        assert COMPILED in log and "-shared" in log and "speedups.c" in log

        fs = _client(s3)
        path, record = _pushed_record(fs, remote)
        _add_untrusted_records(fs, path, record)

        # Another app with the same package (so another wheelhouse key), on an empty store,
        # the index's port closed: only the build record can give it the wheel.
        other = tmp_path / "machine2" / "app"
        shutil.copytree(first, other)
        (other / "wheelbarrow.toml").write_text('[packages.unrelated]\nenv = { X = "1" }\n')
        second = tmp_path / "storeB"
        env2 = client_env(s3, WHEELBARROW_REMOTE=remote)
        fetched = run_ok(env2, "build", other, "--store", second, "-i", index.url,
                      "--platform", PLATFORM)  # fmt: skip
        assert fetched["key"] != built["key"]
        reused = _only_build(fetched)
        assert (reused["reason"], reused["remote"]) == ("reused from the remote store", remote)
        assert reused["wheel"] == made["wheel"]
        assert _wheel_sha256(second, fetched["key"]) == _wheel_sha256(
            tmp_path / "storeA", built["key"]
        )
        log = Path(reused["log"]).read_text()
        assert COMPILED not in log and f"came from the remote store {remote}" in log
        env_dir = tmp_path / "env"
        run_ok(env2, "install", other, "--store", second, "--into", env_dir)
        done = subprocess.run(
            [env_dir / "bin" / "python", "-c", "import cext; print(cext.add(2, 3))"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.strip() == "5"

        # The pushed record now says the wheel linked a library this machine has other bytes of.
        library = tmp_path / "libfixture.so.1"
        library.write_bytes(b"not what the wheel was built against\n")
        record["links"]["libraries"]["libfixture.so.1"] = {
            "path": str(library), "file": str(library), "sha256": "0" * 64,
        }  # fmt: skip
        fs.pipe_file(path, json.dumps(record).encode())
        third = tmp_path / "machine3" / "app"
        shutil.copytree(other, third)
        with serve_local_index(dists) as index:
            rebuilt = run_ok(env2, "build", third, "--store", tmp_path / "storeC", "-i", index.url,
                          "--platform", PLATFORM)  # fmt: skip
        again = _only_build(rebuilt)
        assert again["remote"] is None and not again["reused"]
        assert "libfixture.so.1" in again["reason"] and remote in again["reason"]
        assert COMPILED in Path(again["log"]).read_text()

    def test_a_build_made_before_without_push_is_shared_by_a_later_push(
        self, s3: S3Server, remote: str, tmp_path: Path
    ) -> None:
        """`wheelbarrow push` of a wheelhouse built earlier with no remote uploads its source
        builds' records too, so another app with the same package reuses the build by key."""
        dists = tmp_path / "dists"
        make_c_extension_sdist(dists)
        first = make_app(tmp_path / "app", "cext==1.0\n")
        env = client_env(s3)
        with serve_local_index(dists) as index:
            built = run_ok(env, "build", first, "--store", tmp_path / "storeA", "-i", index.url,
                        "--platform", PLATFORM)  # fmt: skip
        made = _only_build(built)
        pushed = run_ok(env, "push", first, "--store", tmp_path / "storeA", "--remote", remote)
        assert pushed["builds"] == 1
        _, record = _pushed_record(_client(s3), remote)
        assert record["wheel"] == made["wheel"]
        again = run_ok(env, "push", first, "--store", tmp_path / "storeA", "--remote", remote)
        assert again["moved"] == [] and again["builds"] == 1  # the same record, put again

        other = tmp_path / "machine2" / "app"
        shutil.copytree(first, other)
        (other / "wheelbarrow.toml").write_text('[packages.unrelated]\nenv = { X = "1" }\n')
        fetched = run_ok(env, "build", other, "--store", tmp_path / "storeB", "-i", index.url,
                      "--platform", PLATFORM, "--remote", remote)  # fmt: skip
        reused = _only_build(fetched)
        assert reused["reason"] == "reused from the remote store"
        assert _wheel_sha256(tmp_path / "storeB", fetched["key"]) == _wheel_sha256(
            tmp_path / "storeA", built["key"]
        )
