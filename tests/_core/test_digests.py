"""Digests: the small sha256 is sha256, and loads no OpenSSL where CPython has its own."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from wheelbarrow._core.digests import file_sha256, json_sha256, small_sha256


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 1000])
def test_the_small_sha256_is_sha256(data: bytes) -> None:
    assert small_sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    grown = small_sha256()
    grown.update(data[:7])
    grown.update(data[7:])
    assert grown.digest() == hashlib.sha256(data).digest()


def test_json_and_file_digests_agree_with_hashlib(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"wheelbarrow\n" * 1000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert json_sha256({"b": 1, "a": [2]}) == hashlib.sha256(b'{"a":[2],"b":1}').hexdigest()


def test_hashing_a_few_bytes_loads_no_openssl() -> None:
    """A warm install hashes a few small files; OpenSSL's load would cost it more than that."""
    probe = (
        "import sys\n"
        "from wheelbarrow._core.digests import small_sha256\n"
        "small_sha256(b'x').hexdigest()\n"
        "print(sorted(m for m in ('hashlib', '_hashlib') if m in sys.modules))\n"
    )
    builtin = "_sha2" if sys.version_info >= (3, 12) else "_sha256"
    try:
        __import__(builtin)
    except ImportError:  # pragma: no cover - a CPython built with OpenSSL's hashes only
        pytest.skip(f"this CPython has no {builtin}: hashlib's sha256 is the only one")
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    assert done.stdout == "[]\n"
