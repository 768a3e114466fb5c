"""pip and uv install straight from the static index that pushes publish in a real S3 bucket."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_wheel, serve_local_index
from support.apps import PLATFORM, make_app
from support.s3server import S3Server

pytestmark = pytest.mark.slow
_buckets = itertools.count()
WHEELBARROW = (sys.executable, "-m", "wheelbarrow")
_FORWARDED = ("Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified")


@contextlib.contextmanager
def counting_proxy(endpoint: str) -> Iterator[tuple[str, list[str]]]:
    """A forwarding HTTP proxy on 127.0.0.1 in front of ``endpoint``: its URL and the paths
    asked through it (``RANGE path`` for a range request), to count what a client fetched."""
    target = urllib.parse.urlsplit(endpoint)
    asked: list[str] = []

    class Forward(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() in {"range", "accept"}}
            asked.append(("RANGE " if "Range" in headers else "") + self.path)
            upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
            upstream.request(self.command, self.path, headers=headers)
            answer = upstream.getresponse()
            body = answer.read()
            self.send_response(answer.status)
            for name in _FORWARDED:
                if (value := answer.getheader(name)) is not None:
                    self.send_header(name, value)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
            upstream.close()

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def _env(s3: S3Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WHEELBARROW_"))}
    env.update(s3.env())
    return env


def _ok(env: dict[str, str], *args: str | Path) -> None:
    done = subprocess.run([*map(str, args)], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"


def _publish_two_apps(s3: S3Server, tmp_path: Path) -> str:
    bucket = f"install-{next(_buckets)}"
    s3.make_bucket(bucket)
    _allow_anonymous_reads(s3, bucket)
    remote = f"s3://{bucket}/team/wheels"
    dists = tmp_path / "dists"
    make_wheel(dists, "alpha", "1.0", files={"alpha/__init__.py": "VALUE = 'alpha 1'\n"})
    make_wheel(dists, "alpha", "6.0")
    make_wheel(dists, "beta", "1.0", requires=["alpha"])
    make_wheel(dists, "gamma", "1.0", requires=["beta"])
    make_wheel(dists, "gamma", "2.0", requires=["alpha>5"])
    env = _env(s3)
    apps = [
        make_app(tmp_path / "old", "gamma<2\nalpha<2\n"),
        make_app(tmp_path / "new", "gamma==2.0\n"),
    ]
    stores = [tmp_path / "store-old", tmp_path / "store-new"]
    with serve_local_index(dists) as index:
        for app, store in zip(apps, stores, strict=True):
            _ok(env, *WHEELBARROW, "build", app, "--store", store, "-i", index.url,
                "--platform", PLATFORM)  # fmt: skip
    pushers = [
        subprocess.Popen(
            [*WHEELBARROW, "push", str(app), "--store", str(store), "--remote", remote],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for app, store in zip(apps, stores, strict=True)
    ]
    results = [p.communicate(timeout=120) for p in pushers]
    assert [p.returncode for p in pushers] == [0, 0], results
    shutil.rmtree(dists)  # nothing but the bucket has the wheels now
    return f"/{bucket}/team/wheels"


def _allow_anonymous_reads(s3: S3Server, bucket: str) -> None:
    """The bucket policy that lets pip and uv read without signing (GetObject for everyone)."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=s3.endpoint, region_name="us-east-1",
        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
    )  # fmt: skip
    statement = {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
                 "Resource": [f"arn:aws:s3:::{bucket}/*"]}  # fmt: skip
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _imports(target: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import alpha, beta, gamma; print(alpha.VALUE)"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(target)},
    )  # fmt: skip
    return done.stdout.strip()


def _fetched(asked: list[str], name: str) -> list[str]:
    return [p for p in asked if p.rsplit("/", 1)[-1].split("#")[0] == name]


class TestInstallFromTheBucket:
    def test_pip_and_uv_from_the_find_links_page(self, s3: S3Server, tmp_path: Path) -> None:
        """After two apps are pushed at once, pip and uv install from the bucket's find-links
        page over HTTP and the package imports; resolving reads gamma 2.0's metadata file and
        never downloads its wheel, nor alpha 6.0's."""
        prefix = _publish_two_apps(s3, tmp_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
        wanted = ("gamma", "alpha<2")
        with counting_proxy(s3.endpoint) as (proxy, asked):
            page = f"{proxy}{prefix}/find-links.html"
            pip_target = tmp_path / "pip"
            pip = (sys.executable, "-m", "pip", "install", "--disable-pip-version-check")
            _ok(env, *pip, "--no-index", "--no-cache-dir", "-f", page, "--target", pip_target,
                *wanted)  # fmt: skip
            pip_asked = list(asked)
            asked.clear()
            uv_target = tmp_path / "uv"
            uv = str(Path(sys.executable).with_name("uv"))
            _ok({**env, "UV_CACHE_DIR": str(tmp_path / "uv-cache")}, uv, "pip", "install",
                "--no-index", "--find-links", page, "--target", uv_target,
                "--python", sys.executable, *wanted)  # fmt: skip
            uv_asked = list(asked)
        assert _imports(pip_target) == "alpha 1" and _imports(uv_target) == "alpha 1"
        for client, seen in (("pip", pip_asked), ("uv", uv_asked)):
            assert _fetched(seen, "gamma-2.0-py3-none-any.whl.metadata"), (client, seen)
            assert not _fetched(seen, "gamma-2.0-py3-none-any.whl"), (client, seen)
            assert not _fetched(seen, "alpha-6.0-py3-none-any.whl"), (client, seen)
            wheels = {p.rsplit("/", 1)[-1] for p in seen if p.endswith(".whl")}
            assert wheels == {f"{n}-1.0-py3-none-any.whl" for n in ("alpha", "beta", "gamma")}
