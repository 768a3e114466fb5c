"""A standalone CPython tarball configured for the app: located, fetched, hash-checked, unpacked."""

from __future__ import annotations

import contextlib
import hashlib
import re
import string
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlparse

from wheelbarrow._core.digests import file_sha256
from wheelbarrow._core.errors import FetchError, HashMismatchError, PythonRuntimeError
from wheelbarrow._core.files import temporary_sibling
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.build.sdist import unpack_sdist
from wheelbarrow.ship.heroku.runtime import (
    SET_ONE_HINT,
    SHA256_VAR,
    TARBALL_VAR,
    URL_VAR,
    Runtime,
    install_tree,
)

if TYPE_CHECKING:
    import httpx

_PLACEHOLDERS: Final = ("version", "minor", "arch")
_CACHE_SUBDIR: Final = "python-runtimes"
_CHUNK: Final = 1 << 20
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")


def configured_standalone(
    version: PythonVersion,
    *,
    build_dir: Path,
    cache_dir: Path,
    config: Mapping[str, str],
    runner: Runner,
    arch: str,
    client_factory: Callable[[], httpx.Client] | None,
) -> Runtime | None:
    """The standalone runtime ``config`` names, installed into ``build_dir``; None without one."""
    expected = _expected_sha256(config)
    location = _configured_location(version, config=config, arch=arch)
    if location is None:
        if expected is not None:
            raise PythonRuntimeError(
                f"the config var {SHA256_VAR} is set but no standalone Python is configured",
                hint=f"set {URL_VAR} or {TARBALL_VAR} too, or unset {SHA256_VAR}",
            )
        return None
    archive, source = _obtain(
        location,
        build_dir=build_dir,
        cache_dir=cache_dir,
        expected=expected,
        client_factory=client_factory,
    )
    return _install_standalone(
        archive, source=source, version=version, build_dir=build_dir, runner=runner
    )


def _expected_sha256(config: Mapping[str, str]) -> str | None:
    text = config.get(SHA256_VAR, "").strip().lower().removeprefix("sha256:")
    if not text:
        return None
    if not _SHA256.match(text):
        raise PythonRuntimeError(
            f"the config var {SHA256_VAR} is not a sha256: {config[SHA256_VAR]!r}",
            hint="set it to the 64 hex digits of the tarball's sha256",
        )
    return text


def _configured_location(
    version: PythonVersion, *, config: Mapping[str, str], arch: str
) -> tuple[str, str] | None:
    """The configured tarball as ``(config var, filled-in location)``, or None."""
    given = [(var, config.get(var, "").strip()) for var in (URL_VAR, TARBALL_VAR)]
    given = [(var, value) for var, value in given if value]
    if not given:
        return None
    if len(given) > 1:
        raise PythonRuntimeError(
            f"both {URL_VAR} and {TARBALL_VAR} are set: which Python to use is ambiguous",
            hint="unset one of the two config vars",
        )
    ((var, template),) = given
    fields = {
        "version": str(version),
        "minor": version.short,
        "arch": arch,
    }
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        unknown = [name for name in names if name not in _PLACEHOLDERS]
        if unknown:
            raise KeyError(unknown[0])
        return var, template.format_map(fields)
    except (KeyError, ValueError, IndexError) as exc:
        raise PythonRuntimeError(
            f"the config var {var} cannot be filled in: {template!r} ({type(exc).__name__}: {exc})",
            hint="use only the placeholders {version}, {minor} and {arch}; write {{ for a brace",
        ) from exc


def _obtain(
    location: tuple[str, str],
    *,
    build_dir: Path,
    cache_dir: Path,
    expected: str | None,
    client_factory: Callable[[], httpx.Client] | None,
) -> tuple[Path, str]:
    """The local tarball for a configured location, hash-checked, and how to name its source."""
    var, value = location
    scheme = _SCHEME.match(value)
    if scheme is None:
        path = Path(value)
        path = path if path.is_absolute() else build_dir / path
    elif scheme[1].lower() in ("http", "https"):
        return _download(
            value, cache_dir=cache_dir, expected=expected, client_factory=client_factory
        ), value
    elif scheme[1].lower() == "file":
        parsed = urlparse(value)
        if parsed.netloc not in ("", "localhost"):
            raise PythonRuntimeError(
                f"the config var {var}: {value!r} names another host",
                hint="write file:///absolute/path, or the path alone",
            )
        path = Path(unquote(parsed.path))
    else:
        raise PythonRuntimeError(
            f"the config var {var}: {value!r} is neither an http(s) URL nor a file",
            hint=SET_ONE_HINT,
        )
    if not path.is_file():
        raise PythonRuntimeError(
            f"the config var {var} names {path}, which is not a file",
            hint="check the path; relative paths are taken inside the app",
        )
    if expected is not None:
        actual = file_sha256(path)
        if actual != expected:
            raise HashMismatchError(
                f"{path}: sha256 {actual} differs from {SHA256_VAR} {expected}",
                hint=f"check that the tarball is the right one, or update {SHA256_VAR}",
            )
    return path, str(path)


def _download(
    url: str,
    *,
    cache_dir: Path,
    expected: str | None,
    client_factory: Callable[[], httpx.Client] | None,
) -> Path:
    """The tarball at ``url``, from the cache or streamed into it; hash-checked if ``expected``."""
    folder = cache_dir / _CACHE_SUBDIR / hashlib.sha256(url.encode()).hexdigest()
    name = PurePosixPath(unquote(urlparse(url).path)).name
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".") or "python.tar.gz"
    cached = folder / name
    if cached.is_file():
        if expected is None or file_sha256(cached) == expected:
            return cached
        # The URL now serves something else (or the hash was updated): fetch it again.
        cached.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(folder / name)
    import httpx

    from wheelbarrow.store.fetch import default_client

    digest = hashlib.sha256()
    try:
        with (client_factory or default_client)() as client, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise FetchError(
                    f"GET {url} answered HTTP {response.status_code}",
                    hint=f"check the config var {URL_VAR}: no tarball for this version there?",
                )
            with tmp.open("wb") as f:
                for chunk in response.iter_bytes(_CHUNK):
                    digest.update(chunk)
                    f.write(chunk)
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise HashMismatchError(
                f"{url}: sha256 {actual} differs from {SHA256_VAR} {expected}",
                hint=f"check that the URL serves the right tarball, or update {SHA256_VAR}",
            )
        tmp.replace(cached)
    except httpx.HTTPError as exc:
        raise FetchError(
            f"cannot download {url}: {type(exc).__name__}: {exc}",
            hint="check the network and the config var " + URL_VAR,
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return cached


def _install_standalone(
    archive: Path, *, source: str, version: PythonVersion, build_dir: Path, runner: Runner
) -> Runtime:
    """Unpack ``archive`` to ``build_dir/.heroku/python`` once its Python runs and matches."""
    return install_tree(
        lambda scratch: unpack_sdist(archive, scratch, label=f"the Python runtime {source}"),
        source=source,
        version=version,
        build_dir=build_dir,
        runner=runner,
    )
