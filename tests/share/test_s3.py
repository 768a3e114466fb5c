"""The S3 remote store against a real S3-compatible server (SeaweedFS) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest
from support.net import free_port
from support.s3server import S3Server, session_s3_server

from wheelbarrow._core.errors import HashMismatchError
from wheelbarrow.share.remotes import remote_for, remote_from
from wheelbarrow.share.s3 import S3Remote
from wheelbarrow.store.remote import RemoteError
from wheelbarrow.store.store import Store

_buckets = itertools.count()


@pytest.fixture
def s3(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> S3Server:
    """The session's server, with its credentials in the environment."""
    server = session_s3_server(request.config, tmp_path_factory.mktemp("s3"))
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return server


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A new, empty bucket."""
    name = f"share-{next(_buckets)}"
    s3.make_bucket(name)
    return name


def _blob(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    path = tmp_path / "blob"
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


class TestS3Remote:
    def test_blob_round_trip(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        """A blob put is found and comes back into another store under its sha256."""
        remote = S3Remote(f"s3://{bucket}/team", environ=s3.env())
        path, sha = _blob(tmp_path, b"wheel bytes" * 1000)
        assert not remote.has_blob(sha)
        remote.put_blob(sha, path)
        remote.put_blob(sha, path)  # idempotent
        assert remote.has_blob(sha)
        store = Store(tmp_path / "store")
        assert remote.get_blob(sha, store, filename="x.bin") == 11000
        assert store.blob(sha).read_bytes() == path.read_bytes()

    def test_blob_with_other_content_is_refused(
        self, s3: S3Server, bucket: str, tmp_path: Path
    ) -> None:
        """A blob whose bytes do not hash to its name never enters the local store."""
        remote = S3Remote(f"s3://{bucket}/p", environ=s3.env())
        path, _ = _blob(tmp_path, b"tampered")
        wrong = "0" * 64
        remote.put_blob(wrong, path)
        store = Store(tmp_path / "store")
        with pytest.raises(HashMismatchError, match=rf"x\.bin from s3://{bucket}/p"):
            remote.get_blob(wrong, store, filename="x.bin")
        assert not store.has(wrong)

    def test_manifest_round_trip_and_miss(self, s3: S3Server, bucket: str) -> None:
        """A manifest written under a key is read back; an absent key is a miss (None)."""
        remote = S3Remote(f"s3://{bucket}/p", environ=s3.env())
        assert remote.get_manifest("k1") is None
        remote.put_manifest("k1", b'{"key": "k1"}')
        assert remote.get_manifest("k1") == b'{"key": "k1"}'

    @pytest.mark.parametrize("name", ["my-bucket", "wheels-bucket-2"])
    def test_a_bucket_named_bucket_misses_like_any_other(self, s3: S3Server, name: str) -> None:
        """A bucket whose name holds the word "bucket" (as the README's example) answers a missing
        manifest with a miss, not with "the bucket does not exist"."""
        bucket = f"{name}-{next(_buckets)}"
        s3.make_bucket(bucket)
        remote = S3Remote(f"s3://{bucket}/team", environ=s3.env())
        assert remote.get_manifest("k1") is None
        assert remote.get_builds("ab" * 16) == []
        assert not remote.has_blob("0" * 64)


class TestErrors:
    def test_wrong_credentials(
        self, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A refused secret is an error naming the remote and the credentials, not the secret."""
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-9d2e")
        wrong = s3.env(secret="not-the-secret-9d2e")  # noqa: S106 (a test secret)
        remote = S3Remote(f"s3://{bucket}/p", environ=wrong)
        with pytest.raises(RemoteError) as caught:
            remote.get_manifest("k")
        text = f"{caught.value} {caught.value.hint}"
        assert f"s3://{bucket}/p" in text and "access denied" in text
        assert "AWS_SECRET_ACCESS_KEY" in text
        assert "not-the-secret-9d2e" not in text and s3.secret_key not in text

    def test_unreachable_endpoint(self, s3: S3Server, bucket: str) -> None:
        """A closed endpoint is said as such, with the endpoint to check."""
        closed = f"http://127.0.0.1:{free_port()}"
        remote = S3Remote(f"s3://{bucket}/p", environ=s3.env(endpoint=closed))
        with pytest.raises(RemoteError, match="cannot reach the S3 endpoint") as caught:
            remote.has_blob("0" * 64)
        assert closed in str(caught.value) and "AWS_ENDPOINT_URL" in str(caught.value.hint)

    def test_missing_bucket(self, s3: S3Server) -> None:
        """A bucket that does not exist is named, with how to create it."""
        remote = S3Remote("s3://no-such-bucket/p", environ=s3.env())
        with pytest.raises(RemoteError, match="the bucket no-such-bucket does not exist"):
            remote.get_manifest("k")

    def test_unknown_scheme(self) -> None:
        """A remote URL of another scheme is refused, without the password it holds."""
        with pytest.raises(RemoteError, match="unknown scheme ftp://") as caught:
            remote_for("ftp://user:hunter22@host/x", {})
        assert "hunter22" not in str(caught.value)

    def test_environment_names_the_remote(self) -> None:
        """WHEELBARROW_REMOTE is the default; --remote wins; neither means no remote."""
        environ = {"WHEELBARROW_REMOTE": "s3://b1/p"}
        assert remote_from(None, environ).url == "s3://b1/p"  # type: ignore[union-attr]
        assert remote_from("s3://b2", environ).url == "s3://b2"  # type: ignore[union-attr]
        assert remote_from(None, {}) is None
