"""Which CPython a base image has, found from its config and layer listings, never unpacked."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from wheelbarrow._core.errors import InputError

_BIN = re.compile(r"^(?:\./)?(?P<prefix>(?:usr/local|usr|opt/[^/]+))/bin/python(?P<minor>3\.\d+)$")
_STDLIB = re.compile(
    r"^(?:\./)?(?P<prefix>(?:usr/local|usr|opt/[^/]+))/lib/python(?P<minor>3\.\d+)/os\.py$"
)
_VERSION_ENV = re.compile(r"^PYTHON_VERSION=(?P<version>3\.\d+(?:\.\d+)?)")


@dataclass(frozen=True, slots=True, kw_only=True)
class BasePython:
    """The interpreter of a base image: what environments in it must be made for."""

    executable: str  # e.g. /usr/bin/python3.11
    version: str  # 3.11, or 3.11.9 when the image says so
    found_by: str  # "config" or "layers"

    @property
    def short(self) -> str:
        """``3.11``."""
        return ".".join(self.version.split(".")[:2])

    @property
    def home(self) -> str:
        """The directory pyvenv.cfg's ``home`` names."""
        return self.executable.rsplit("/", 1)[0]


def from_config(config: Mapping[str, Any]) -> BasePython | None:
    """An official python image says its version in ``PYTHON_VERSION``; others say nothing."""
    env = (config.get("config") or {}).get("Env") or []
    for item in env:
        match = _VERSION_ENV.match(str(item))
        if match:
            version = match["version"]
            short = ".".join(version.split(".")[:2])
            return BasePython(
                executable=f"/usr/local/bin/python{short}", version=version, found_by="config"
            )
    return None


def from_layers(layers: Iterable[IO[bytes]]) -> BasePython | None:
    """Scan the layers' tar listings (gzip streams, bottom first) for ``bin/python3.X``.

    An interpreter counts when its own stdlib (``lib/python3.X/os.py`` under the
    same prefix) is there too. Later layers win, whiteouts included, as when
    the image runs. The newest such Python is returned.
    """
    found: dict[tuple[str, str], set[str]] = {}  # (prefix, minor) -> {"bin", "lib"}
    for stream in layers:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                base = name.rsplit("/", 1)[-1]
                if base.startswith(".wh."):
                    gone = name.replace(".wh.", "", 1)
                    for key, parts in list(found.items()):
                        prefix, minor = key
                        if gone in (f"{prefix}/bin/python{minor}", f"{prefix}/lib/python{minor}"):
                            parts.clear()
                    continue
                for pattern, part in ((_BIN, "bin"), (_STDLIB, "lib")):
                    match = pattern.match(name)
                    if match and (member.isfile() or member.issym() or member.islnk()):
                        found.setdefault((match["prefix"], match["minor"]), set()).add(part)
    complete = [key for key, parts in found.items() if parts == {"bin", "lib"}]
    if not complete:
        return None
    prefix, minor = max(
        complete, key=lambda key: (tuple(int(x) for x in key[1].split(".")), key[0] == "usr/local")
    )
    return BasePython(executable=f"/{prefix}/bin/python{minor}", version=minor, found_by="layers")


def require_match(base: BasePython | None, *, target: str, image: str) -> BasePython:
    """The base's Python, which must be the target's X.Y; clear errors otherwise."""
    if base is None:
        raise InputError(
            f"{image}: the base image has no Python (no bin/python3.X with its standard library)",
            hint="use a base with python3, e.g. a Debian image with python3 installed, "
            "or an official python image",
        )
    if base.short != target:
        raise InputError(
            f"{image}: the base image has Python {base.version} ({base.executable}), "
            f"the lock targets Python {target}",
            hint=f"use a base with Python {target}, or lock for {base.short} "
            f"(wheelbarrow lock --python {base.short})",
        )
    return base
