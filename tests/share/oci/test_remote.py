"""The remote store on an OCI registry, against a real docker-registry on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import make_wheel
from support.net import free_port
from support.registry import LocalRegistry, serve_registry, write_htpasswd

from wheelbarrow.share.oci.remote import (
    BUILD_ARTIFACT,
    EMPTY_CONFIG,
    WHEEL_LAYER,
    WHEELHOUSE_ARTIFACT,
    WHEELHOUSE_LAYER,
    OciRemote,
    build_tag,
    wheelhouse_tag,
)
from wheelbarrow.share.remotes import remote_for
from wheelbarrow.store.remote import RemoteError, pull_blobs, push_wheelhouse, remote_manifest
from wheelbarrow.store.store import Store

USER, PASSWORD = "pusher", "hunter2-oci-7f3a"
_repos = itertools.count()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """One open registry for the module; each test uses a repository of its own."""
    with serve_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry that asks for Basic credentials (htpasswd)."""
    root = tmp_path_factory.mktemp("auth-registry")
    with serve_registry(root, htpasswd=write_htpasswd(root / "htpasswd", USER, PASSWORD)) as up:
        yield up


def _auth_file(path: Path, host: str, user: str, password: str) -> dict[str, str]:
    """An environment whose only auth file has one entry, as ``podman login`` writes it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return {"REGISTRY_AUTH_FILE": str(path)}


def _remote(registry: LocalRegistry, tmp_path: Path, environ: dict[str, str] | None = None) -> Any:
    """A remote on a new repository, reading no auth file of the machine's."""
    environ = environ or {"REGISTRY_AUTH_FILE": str(tmp_path / "no-auth.json")}
    url = f"oci://{registry.host}/team/wheels{next(_repos)}"
    return OciRemote(url, environ=environ, home=tmp_path)


def _blob(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    path = tmp_path / f"blob-{hashlib.sha256(content).hexdigest()[:8]}"
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def _wheelhouse(
    tmp_path: Path, key: str = "0123456789abcdef0123456789abcdef"
) -> tuple[Store, Path]:
    """A store holding two real wheels and the manifest of a wheelhouse of them."""
    store = Store(tmp_path / "store")
    wheels = []
    for name in ("alpha", "beta"):
        path = make_wheel(tmp_path / "dists", name, "1.0")
        wheels.append({"name": name, "version": "1.0", "filename": path.name,
                       "sha256": store.add_file(path)})  # fmt: skip
    manifest = store.wheelhouse(key) / "wheelhouse.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"version": 1, "key": key, "wheels": wheels}))
    return store, manifest


def _artifact(remote: OciRemote, tag: str) -> dict[str, Any]:
    """The image manifest under ``tag``, read with plain HTTP as any OCI client would."""
    url = f"http://{remote.ref.registry}/v2/{remote.ref.repository}/manifests/{tag}"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    answer = httpx.get(url, headers=accept)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


class TestBlobs:
    def test_round_trip(self, registry: LocalRegistry, tmp_path: Path) -> None:
        """A blob put is found and streams back into another store under its sha256."""
        remote = _remote(registry, tmp_path)
        path, sha = _blob(tmp_path, b"wheel bytes" * 200_000)
        assert not remote.has_blob(sha)
        remote.put_blob(sha, path)
        remote.put_blob(sha, path)  # idempotent
        assert remote.has_blob(sha)
        store = Store(tmp_path / "store")
        assert remote.get_blob(sha, store, filename="x.bin") == 2_200_000
        assert store.blob(sha).read_bytes() == path.read_bytes()

    def test_missing_blob(self, registry: LocalRegistry, tmp_path: Path) -> None:
        """A blob the repository lacks is absent, and fetching it is an error naming the remote."""
        remote = _remote(registry, tmp_path)
        store = Store(tmp_path / "store")
        assert not remote.has_blob("0" * 64)
        with pytest.raises(RemoteError, match=rf"{remote.url}: downloading x\.bin failed"):
            remote.get_blob("0" * 64, store, filename="x.bin")
        assert not store.has("0" * 64)

    def test_blob_altered_in_the_registry_is_refused(
        self, registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """A blob whose bytes changed in the registry's storage never enters the local store."""
        remote = _remote(registry, tmp_path)
        path, sha = _blob(tmp_path, b"the real bytes")
        remote.put_blob(sha, path)
        (data,) = registry.root.glob(f"storage/**/blobs/sha256/{sha[:2]}/{sha}/data")
        data.write_bytes(b"the fake bytes")
        store = Store(tmp_path / "store")
        with pytest.raises(RemoteError, match="arrived with digest"):
            remote.get_blob(sha, store, filename="x.bin")
        assert not store.has(sha)


class TestWheelhouses:
    def test_manifest_miss(self, registry: LocalRegistry, tmp_path: Path) -> None:
        """A key never pushed is a miss, in a repository the registry does not know as well."""
        remote = _remote(registry, tmp_path)
        assert remote.get_manifest("k1") is None
        path, sha = _blob(tmp_path, b"x")
        remote.put_blob(sha, path)  # the repository exists now
        assert remote.get_manifest("k1") is None

    def test_wheelhouse_is_an_artifact_of_the_wheels(
        self, registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """A pushed wheelhouse is an OCI artifact: the empty config, one layer per wheel (the
        wheel's own sha256, titled with its file name), and its manifest read back whole."""
        remote = _remote(registry, tmp_path)
        store, manifest = _wheelhouse(tmp_path)
        key = json.loads(manifest.read_text())["key"]
        done = push_wheelhouse(remote, store, key, manifest, workers=2)
        assert len(done.moved) == 2
        assert remote.get_manifest(key) == manifest.read_bytes()
        artifact = _artifact(remote, wheelhouse_tag(key))
        assert artifact["artifactType"] == WHEELHOUSE_ARTIFACT
        assert artifact["config"]["mediaType"] == EMPTY_CONFIG
        assert artifact["config"]["size"] == 2
        wheels = json.loads(manifest.read_text())["wheels"]
        *layers, last = artifact["layers"]
        assert [
            (x["digest"], x["annotations"]["org.opencontainers.image.title"]) for x in layers
        ] == [(f"sha256:{w['sha256']}", w["filename"]) for w in wheels]
        assert {x["mediaType"] for x in layers} == {WHEEL_LAYER}
        assert last["mediaType"] == WHEELHOUSE_LAYER
        assert last["digest"] == f"sha256:{hashlib.sha256(manifest.read_bytes()).hexdigest()}"

    def test_manifest_before_its_blobs_is_refused(
        self, registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """A manifest naming a wheel the repository lacks is refused, and nothing is tagged."""
        remote = _remote(registry, tmp_path)
        _, manifest = _wheelhouse(tmp_path)
        key = json.loads(manifest.read_text())["key"]
        with pytest.raises(RemoteError, match=r"alpha-1\.0-py3-none-any\.whl .* is not in the"):
            remote.put_manifest(key, manifest.read_bytes())
        assert remote.get_manifest(key) is None

    def test_two_concurrent_pushers(self, registry: LocalRegistry, tmp_path: Path) -> None:
        """Two machines pushing one wheelhouse at once both succeed, and a third pulls it whole."""
        first = _remote(registry, tmp_path)
        second = OciRemote(first.url, environ={}, home=tmp_path)
        stores = [_wheelhouse(tmp_path / name) for name in ("m1", "m2")]
        key = json.loads(stores[0][1].read_text())["key"]
        failures: list[BaseException] = []

        def push(remote: OciRemote, store: Store, manifest: Path) -> None:
            try:
                push_wheelhouse(remote, store, key, manifest, workers=2)
            except BaseException as exc:  # noqa: BLE001 (reported by the assert below)
                failures.append(exc)

        threads = [
            threading.Thread(target=push, args=(remote, store, manifest))
            for remote, (store, manifest) in zip((first, second), stores, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        third = Store(tmp_path / "m3")
        found = remote_manifest(first, key)
        assert found is not None
        pulled = pull_blobs(first, third, found, workers=2)
        assert len(pulled.moved) == 2
        assert all(third.has(w["sha256"]) for w in found["wheels"])

    def test_tag_that_is_not_a_wheelhouse(self, registry: LocalRegistry, tmp_path: Path) -> None:
        """A tag holding something else than a wheelhouse is an error, not a miss."""
        remote = _remote(registry, tmp_path)
        path, sha = _blob(tmp_path, b"{}")
        remote.put_blob(sha, path)
        image = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": EMPTY_CONFIG, "digest": f"sha256:{sha}", "size": 2},
            "layers": [],
        }
        url = f"http://{registry.host}/v2/{remote.ref.repository}/manifests/{wheelhouse_tag('k')}"
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        assert httpx.put(url, content=json.dumps(image), headers=headers).status_code == 201
        with pytest.raises(RemoteError, match="is not a wheelbarrow artifact"):
            remote.get_manifest("k")


class TestBuilds:
    def test_records_listed_by_their_first_part(
        self, registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """Build records are found by the first part of their key, each part 1 its own, and the
        wheel a record names is a layer of its artifact."""
        remote = _remote(registry, tmp_path)
        path, sha = _blob(tmp_path, b"a built wheel")
        remote.put_blob(sha, path)
        part1, other = "a" * 32, "b" * 32
        records = {}
        for key, entry in ((part1, "1" * 16), (part1, "2" * 16), (other, "1" * 16)):
            data = json.dumps({"key": key, "entry": entry, "wheel": "w.whl", "sha256": sha})
            records[key, entry] = data.encode()
            remote.put_build(key, entry, data.encode())
        assert remote.get_builds(part1) == [records[part1, "1" * 16], records[part1, "2" * 16]]
        assert remote.get_builds(other) == [records[other, "1" * 16]]
        assert remote.get_builds("c" * 32) == []
        artifact = _artifact(remote, build_tag(part1, "1" * 16))
        assert artifact["artifactType"] == BUILD_ARTIFACT
        assert artifact["layers"][0]["digest"] == f"sha256:{sha}"

    def test_keys_that_do_not_fit_a_tag(self, registry: LocalRegistry, tmp_path: Path) -> None:
        """Keys too long or with characters a tag lacks still name their own records only."""
        remote = _remote(registry, tmp_path)
        for key in ("x" * 200, "a-b", "a"):
            remote.put_build(key, "c", json.dumps({"key": key}).encode())
        for key in ("x" * 200, "a-b", "a"):
            assert [json.loads(d)["key"] for d in remote.get_builds(key)] == [key]
        assert len(build_tag("x" * 200, "y" * 200)) <= 128


class TestErrors:
    def test_wrong_credentials(self, auth_registry: LocalRegistry, tmp_path: Path) -> None:
        """A refused password is an error naming the remote and how to log in, not the password."""
        environ = _auth_file(tmp_path / "auth.json", auth_registry.host, USER, "wrong-pw-51c9")
        remote = _remote(auth_registry, tmp_path, environ)
        with pytest.raises(RemoteError) as caught:
            remote.get_manifest("k")
        text = f"{caught.value} {caught.value.hint}"
        assert f"{remote.url}: access denied" in text and repr(USER) in text
        assert f"podman login {auth_registry.host}" in text and "REGISTRY_AUTH_FILE" in text
        assert "wrong-pw-51c9" not in text and PASSWORD not in text

    def test_no_credentials(self, auth_registry: LocalRegistry, tmp_path: Path) -> None:
        """A registry asking for credentials nobody gave says how to log in."""
        remote = _remote(auth_registry, tmp_path)
        with pytest.raises(RemoteError, match="access denied") as caught:
            remote.has_blob("0" * 64)
        assert "docker login" in str(caught.value.hint)

    def test_right_credentials(self, auth_registry: LocalRegistry, tmp_path: Path) -> None:
        """With the auth file's credentials a wheelhouse goes up and comes back."""
        environ = _auth_file(tmp_path / "auth.json", auth_registry.host, USER, PASSWORD)
        remote = _remote(auth_registry, tmp_path, environ)
        store, manifest = _wheelhouse(tmp_path)
        key = json.loads(manifest.read_text())["key"]
        push_wheelhouse(remote, store, key, manifest, workers=2)
        assert remote.get_manifest(key) == manifest.read_bytes()

    def test_unreachable_registry(self, tmp_path: Path) -> None:
        """A registry nothing listens on is said as such, with what to check."""
        url = f"oci://127.0.0.1:{free_port()}/team/wheels"
        remote = OciRemote(url, environ={}, home=tmp_path)
        with pytest.raises(RemoteError, match="cannot reach the registry") as caught:
            remote.get_manifest("k")
        assert str(caught.value).startswith(url) and "registry runs at" in str(caught.value.hint)

    @pytest.mark.parametrize(
        ("url", "says"),
        [
            ("oci://user:hunter22@ghcr.io/team/wheels", "the registry and repository alone"),
            ("oci://ghcr.io", "is not an OCI repository URL"),
            ("oci://ghcr.io/Team/wheels", "uppercase"),
            ("oci://ghcr.io/team/wheels:v1", "not a valid repository path component"),
        ],
    )
    def test_bad_urls(self, url: str, says: str, tmp_path: Path) -> None:
        """A URL that is not a registry and a repository is refused, without any password."""
        with pytest.raises(RemoteError, match=says) as caught:
            OciRemote(url, environ={}, home=tmp_path)
        assert "hunter22" not in str(caught.value) and "oci://REGISTRY/REPOSITORY" in str(
            caught.value.hint
        )

    def test_scheme_chooses_the_registry(self) -> None:
        """An oci:// remote is a repository of a registry, named without a secret."""
        remote = remote_for("oci://127.0.0.1:5000/team/wheels", {"HOME": "/nonexistent"})
        assert isinstance(remote, OciRemote) and remote.url == "oci://127.0.0.1:5000/team/wheels"
