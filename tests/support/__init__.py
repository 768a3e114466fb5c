"""Shared helpers for the test suite: real artefacts and a local index on 127.0.0.1."""

from .artefacts import (
    LocalIndex,
    build_local_index,
    make_sdist,
    make_wheel,
    serve_local_index,
    sha256_of,
)
from .sdists import (
    make_build_helper_sdist,
    make_c_extension_sdist,
    make_dependent_sdist,
    make_failing_sdist,
    make_fortran_sdist,
    make_malicious_sdist,
    unpack_into,
)

__all__ = [
    "LocalIndex",
    "build_local_index",
    "make_build_helper_sdist",
    "make_c_extension_sdist",
    "make_dependent_sdist",
    "make_failing_sdist",
    "make_fortran_sdist",
    "make_malicious_sdist",
    "make_sdist",
    "make_wheel",
    "serve_local_index",
    "sha256_of",
    "unpack_into",
]
