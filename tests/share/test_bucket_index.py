"""The bucket's static index, published against a real S3-compatible server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from support import make_wheel
from support.s3server import S3Server, session_s3_server

from wheelbarrow.share.bucket_index import (
    FIND_LINKS,
    Bucket,
    find_links_html,
    publish_index,
    publish_manifest,
)
from wheelbarrow.share.s3 import S3Remote
from wheelbarrow.wheelhouse.index import IndexFile

_buckets = itertools.count()
SHA = "ab" * 32


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
def remote(s3: S3Server) -> S3Remote:
    """A remote store in a new bucket that anyone may read (a bucket policy, as on AWS)."""
    name = f"index-{next(_buckets)}"
    s3.make_bucket(name)
    allow_anonymous_reads(s3, name)
    return S3Remote(f"s3://{name}/team", environ=s3.env())


def allow_anonymous_reads(s3: S3Server, bucket: str) -> None:
    """The bucket policy that lets pip and uv read without signing (GetObject for everyone)."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name="us-east-1",
    )
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/*"],
    }
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _get(url: str) -> tuple[int, str, bytes]:
    """An anonymous GET: status, content type, body."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _push(remote: S3Remote, directory: Path, key: str, *wheels: Path) -> dict[str, Any]:
    """Put the wheels' blobs and the manifest of wheelhouse ``key`` (which publishes)."""
    rows = []
    for wheel in wheels:
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        remote.put_blob(sha, wheel)
        rows.append({"filename": wheel.name, "sha256": sha})
    manifest = {"key": key, "wheels": rows}
    remote.put_manifest(key, json.dumps(manifest).encode())
    return manifest


def _http(s3: S3Server, remote: S3Remote) -> str:
    return f"{s3.endpoint}/{remote.bucket}/{remote.prefix}"


def _linked(page: bytes) -> list[str]:
    return sorted(re.findall(r">([^<]+\.whl)</a>", page.decode()))


class TestFindLinksHtml:
    def test_link_attributes(self) -> None:
        """A link carries its sha256 fragment, its Requires-Python escaped and its metadata's
        hash under both PEP 714's and PEP 658's names."""
        f = IndexFile(filename="a-1.0-py3-none-any.whl", sha256=SHA, href="files/x/a.whl",
                      requires_python=">=3.9", metadata_sha256="cd" * 32)  # fmt: skip
        page = find_links_html([f])
        assert f'href="files/x/a.whl#sha256={SHA}"' in page
        assert 'data-requires-python="&gt;=3.9"' in page
        assert f'data-core-metadata="sha256={"cd" * 32}"' in page
        assert f'data-dist-info-metadata="sha256={"cd" * 32}"' in page


class TestPublish:
    def test_layout_and_pages(self, s3: S3Server, remote: S3Remote, tmp_path: Path) -> None:
        """A push publishes each wheel under its name with its metadata file beside it, and
        pages served as text/html whose links and hashes resolve, relative to each page."""
        wheel = make_wheel(tmp_path, "alpha", "1.0", requires_python=">=3.8")
        _push(remote, tmp_path, "k1", wheel)
        base = _http(s3, remote)
        status, kind, page = _get(f"{base}/{FIND_LINKS}")
        assert (status, kind) == (200, "text/html")
        href = re.search(r'href="([^"#]+)#sha256=([0-9a-f]+)"', page.decode())
        assert href is not None
        status, _, body = _get(f"{base}/{href[1]}")
        assert status == 200 and body == wheel.read_bytes()
        assert hashlib.sha256(body).hexdigest() == href[2]
        _, _, metadata = _get(f"{base}/{href[1]}.metadata")
        with zipfile.ZipFile(wheel) as archive:
            assert metadata == archive.read("alpha-1.0.dist-info/METADATA")
        assert f"sha256={hashlib.sha256(metadata).hexdigest()}" in page.decode()
        status, kind, project = _get(f"{base}/simple/alpha/index.html")
        assert (status, kind) == (200, "text/html")
        assert f'href="../../{href[1]}#sha256={href[2]}"' in project.decode()
        _, _, root = _get(f"{base}/simple/index.html")
        assert b'href="alpha/"' in root

    def test_no_page_under_a_key_ending_in_slash(
        self, s3: S3Server, remote: S3Remote, tmp_path: Path
    ) -> None:
        """SeaweedFS keeps no body under a key ending in ``/`` and answers ``simple/alpha/``
        with an empty directory: the publish finds that out and writes index.html pages only."""
        wheel = make_wheel(tmp_path, "alpha", "1.0")
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        remote.put_blob(sha, wheel)
        manifest = {"key": "k1", "wheels": [{"filename": wheel.name, "sha256": sha}]}
        done = publish_manifest(remote.fs, remote._path(), json.dumps(manifest).encode())
        assert done.slash_keys is False and done.files == (wheel.name,)
        assert "simple/alpha/" not in done.pages and "simple/alpha/index.html" in done.pages
        status, kind, body = _get(f"{_http(s3, remote)}/simple/alpha/")
        assert body == b"" and kind != "text/html", (status, kind)
        again = publish_manifest(remote.fs, remote._path(), json.dumps(manifest).encode())
        assert again.files == ()  # already published: nothing copied again

    def test_other_pushers_wheels_are_kept(
        self, s3: S3Server, remote: S3Remote, tmp_path: Path
    ) -> None:
        """Two apps pushed to one remote both stay on the pages, also when the second pusher
        lists the entries before the first has written its own (and so writes a stale page)."""
        first = make_wheel(tmp_path / "a", "alpha", "1.0")
        second = make_wheel(tmp_path / "b", "beta", "1.0")
        shas = {w: hashlib.sha256(w.read_bytes()).hexdigest() for w in (first, second)}
        for wheel, sha in shas.items():
            remote.put_blob(sha, wheel)
        root = remote._path()
        listings = itertools.count()

        class Late(Bucket):
            """Runs the other push in full right after this one's first listing of entries."""

            def keys(self, under: str) -> list[str]:
                seen = Bucket.keys(self, under)
                if next(listings) == 0:
                    _push(remote, tmp_path, "other", first)
                return seen

        late = Late(remote.fs, root, {"ContentType": "text/html"})
        mine = {"key": "mine", "wheels": [{"filename": second.name, "sha256": shas[second]}]}
        publish_index(late, mine, blob_key=lambda s: f"blobs/sha256/{s[:2]}/{s}")
        _, _, page = _get(f"{_http(s3, remote)}/{FIND_LINKS}")
        assert _linked(page) == sorted([first.name, second.name])
        _, _, names = _get(f"{_http(s3, remote)}/simple/index.html")
        assert b'href="alpha/"' in names and b'href="beta/"' in names
