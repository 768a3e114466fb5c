"""Fixtures shared by every test; the helpers behind them live in tests/support."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from support import LocalIndex, serve_local_index

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
