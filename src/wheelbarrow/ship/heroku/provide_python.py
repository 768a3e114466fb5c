"""Providing the app's CPython: a configured standalone tarball, else the stack's, else uv's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.errors import PythonRuntimeError, UnsupportedPythonError
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.ship.heroku.runtime import (
    SET_ONE_HINT,
    SUPPORTED_MINORS,
    Runtime,
    dotted,
    matches,
    probe,
)
from wheelbarrow.ship.heroku.standalone import configured_standalone
from wheelbarrow.ship.heroku.uv_python import managed_runtime

if TYPE_CHECKING:
    import httpx

__all__ = ["provide_runtime"]


def provide_runtime(
    version: PythonVersion,
    *,
    build_dir: Path,
    cache_dir: Path,
    config: Mapping[str, str],
    which: Callable[[str], str | None],
    runner: Runner,
    arch: str = "x86_64",
    client_factory: Callable[[], httpx.Client] | None = None,
    uv: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Runtime:
    """Provide a CPython of ``version`` for building the app in ``build_dir``.

    A standalone tarball configured in ``config`` (:data:`URL_VAR` or
    :data:`TARBALL_VAR`) wins: it is fetched (downloads are cached in
    ``cache_dir`` by URL), checked against :data:`SHA256_VAR` if set, unpacked
    to ``build_dir/.heroku/python`` and run to check its version. Otherwise the
    stack's ``python3.X`` or ``python3`` (found with ``which``) is used if its
    version matches (the micro too when ``version`` has one). Otherwise, given
    ``uv``, uv installs one of its managed CPython builds (the newest it knows
    for ``3.X``, checked against uv's hashes) into ``cache_dir``, from where it
    is copied to ``build_dir/.heroku/python``; :data:`DOWNLOADS_JSON_VAR` in
    ``config`` points uv at a private list of downloads. ``environ`` is the
    environment uv runs in. Raises :class:`UnsupportedPythonError` for versions
    outside 3.9 to 3.14 and :class:`PythonRuntimeError` when nothing fits,
    naming what the stack has. A failure leaves ``build_dir`` as it was.
    """
    _check_supported(version)
    standalone = configured_standalone(
        version,
        build_dir=build_dir,
        cache_dir=cache_dir,
        config=config,
        runner=runner,
        arch=arch,
        client_factory=client_factory,
    )
    if standalone is not None:
        return standalone
    try:
        return _stack_runtime(version, which=which, runner=runner)
    except PythonRuntimeError as missing:
        if uv is None:
            raise
        return managed_runtime(
            version,
            build_dir=build_dir,
            cache_dir=cache_dir,
            config=config,
            runner=runner,
            uv=uv,
            arch=arch,
            environ=environ or {},
            stack=missing.message,
        )


def _check_supported(version: PythonVersion) -> None:
    if version.major != 3 or version.minor not in SUPPORTED_MINORS:
        raise UnsupportedPythonError(
            f"Python {version} is not supported: wheelbarrow provides CPython "
            f"3.{SUPPORTED_MINORS[0]} to 3.{SUPPORTED_MINORS[-1]}",
            hint="pin a supported version: 3.12 in .python-version, or python-3.12.4 in "
            "runtime.txt",
        )


def _stack_runtime(
    version: PythonVersion, *, which: Callable[[str], str | None], runner: Runner
) -> Runtime:
    seen: list[str] = []
    findings: list[str] = []
    for name in (f"python{version.short}", "python3"):
        path = which(name)
        if path is None or path in seen:
            continue
        seen.append(path)
        found = probe(Path(path), runner)
        if isinstance(found, str):
            findings.append(f"{path} does not run ({found})")
            continue
        if matches(version, found):
            return Runtime(
                python=Path(path),
                version=dotted(found),
                kind="stack",
                home=None,
                source=path,
            )
        findings.append(f"Python {dotted(found)} ({path})")
    has = "the stack has " + " and ".join(findings) if findings else "the stack has no python3"
    raise PythonRuntimeError(
        f"Python {version} is not available: {has}, and no standalone Python is configured",
        hint=SET_ONE_HINT,
    )
