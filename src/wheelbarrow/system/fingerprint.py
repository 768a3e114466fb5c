"""The toolchain fingerprint: the versions of the compilers, OpenBLAS and libc here."""

from __future__ import annotations

import os
from collections.abc import Sequence

from wheelbarrow._core.errors import ToolError
from wheelbarrow._core.runner import Runner
from wheelbarrow.system.toolchain import Which

__all__ = ["toolchain_fingerprint"]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def toolchain_fingerprint(
    *, which: Which, runner: Runner, libc: str | None = None
) -> dict[str, str]:
    """The versions of the compilers, OpenBLAS and libc here: a part of build cache keys.

    Keys ``cc``, ``c++``, ``gfortran`` (first line of ``--version``),
    ``openblas`` (``pkg-config --modversion``) and ``libc``; a missing tool is
    ``absent``. ``libc`` defaults to this machine's glibc (``glibc 2.36``).
    """
    fingerprint: dict[str, str] = {}
    for tool in ("cc", "c++", "gfortran"):
        fingerprint[tool] = _tool_version(tool, ["--version"], which=which, runner=runner)
    fingerprint["openblas"] = _tool_version(
        "pkg-config", ["--modversion", "openblas"], which=which, runner=runner
    )
    fingerprint["libc"] = libc if libc is not None else _libc_version()
    return fingerprint


def _tool_version(tool: str, args: Sequence[str], *, which: Which, runner: Runner) -> str:
    if which(tool) is None:
        return "absent"
    try:
        result = runner([tool, *args])
    except ToolError:
        return "absent"
    if result.returncode != 0:
        return "absent"
    return _first_line(result.stdout) or _first_line(result.stderr) or "unknown"


def _libc_version() -> str:
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        # Not glibc (musl, macOS): the name is unknown to confstr.
        version = None
    return version or "unknown"
