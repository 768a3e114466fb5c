"""Fixtures shared by every test; the helpers behind them live in tests/support."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from support import LocalIndex, serve_local_index
from support.containers import Podman, base_image, require
from support.s3server import S3Server, new_remote, session_s3_server

StartIndex = Callable[[Path | Iterable[Path]], LocalIndex]


@pytest.fixture
def local_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartIndex]:
    """Start a served index: call with artefact paths (copied to a fresh dir) or a directory.

    The directory form indexes the directory in place (it gains ``simple/``).
    Every server started is stopped at teardown.
    """
    with contextlib.ExitStack() as stack:

        def start(source: Path | Iterable[Path]) -> LocalIndex:
            if isinstance(source, Path):
                return stack.enter_context(serve_local_index(source))
            files_dir = tmp_path_factory.mktemp("index")
            return stack.enter_context(serve_local_index(files_dir, source))

        yield start


@pytest.fixture
def s3(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> S3Server:
    """The session's real S3-compatible server on 127.0.0.1 (started on first use)."""
    return session_s3_server(request.config, tmp_path_factory.mktemp("s3"))


@pytest.fixture
def remote(s3: S3Server) -> str:
    """The URL of an empty remote store in a new bucket of the session's S3 server."""
    return new_remote(s3)


@pytest.fixture(scope="session")
def debian_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Podman, str]]:
    """Podman with its own storage, and a debootstrapped bookworm with python3 in it (once).

    ``WHEELBARROW_TEST_PODMAN=DIR`` keeps the storage (and the image) between runs.
    """
    require("podman", "debootstrap", "runc")
    keep = os.environ.get("WHEELBARROW_TEST_PODMAN")
    # A short path: with storage deep in pytest's temp tree, every podman run
    # waited 20 s for conmon (seen here); under /tmp/wb-podman-* it takes 0.2 s.
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="wb-podman-", dir="/tmp"))
    podman = Podman(root).setup()
    try:
        yield podman, base_image(podman, tmp_path_factory.mktemp("base"))
    finally:
        if not keep:
            subprocess.run(
                ["podman", "system", "reset", "--force"],
                env=podman.env,
                capture_output=True,
                check=False,
                timeout=300,
            )
            shutil.rmtree(root, ignore_errors=True)
