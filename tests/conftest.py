"""Fixtures shared by every test; the helpers behind them live in tests/support."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from support import LocalIndex, serve_local_index
from support.containers import Podman, base_image, require

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


@pytest.fixture(scope="session")
def debian_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Podman, str]:
    """Podman with its own storage, and a debootstrapped bookworm with python3 in it (once).

    ``WHEELBARROW_TEST_PODMAN=DIR`` keeps the storage (and the image) between runs.
    """
    require("podman", "debootstrap", "runc")
    root = tmp_path_factory.mktemp("podman")
    keep = os.environ.get("WHEELBARROW_TEST_PODMAN")
    podman = Podman(Path(keep) if keep else root / "storage").setup()
    return podman, base_image(podman, root)
