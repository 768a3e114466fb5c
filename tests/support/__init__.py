"""Shared helpers for the test suite: real artefacts and a local index on 127.0.0.1."""

from .artefacts import (
    LocalIndex,
    build_local_index,
    make_sdist,
    make_wheel,
    serve_local_index,
    sha256_of,
)

__all__ = [
    "LocalIndex",
    "build_local_index",
    "make_sdist",
    "make_wheel",
    "serve_local_index",
    "sha256_of",
]
