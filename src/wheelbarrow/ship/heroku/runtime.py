"""The app's CPython on the platform: a standalone build shipped in the slug, or the stack's own."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote, urlparse

from wheelbarrow._core.errors import (
    FetchError,
    HashMismatchError,
    PythonRuntimeError,
    ToolError,
    UnsupportedPythonError,
)
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.build.sdist import unpack_sdist

if TYPE_CHECKING:
    import httpx

__all__ = [
    "APP_DIR",
    "DOWNLOADS_JSON_VAR",
    "RUNTIME_HOME",
    "SHA256_VAR",
    "SUPPORTED_MINORS",
    "TARBALL_VAR",
    "URL_VAR",
    "Runtime",
    "provide_runtime",
    "read_env_dir",
]

URL_VAR: Final = "WHEELBARROW_PYTHON_URL"
"""Config var: URL template (or file path / ``file://`` URL) of an install_only CPython tarball."""
TARBALL_VAR: Final = "WHEELBARROW_PYTHON_TARBALL"
"""Config var: path of a local install_only tarball (relative paths are inside BUILD_DIR)."""
SHA256_VAR: Final = "WHEELBARROW_PYTHON_SHA256"
"""Config var: the tarball's expected sha256, checked before anything is unpacked."""
DOWNLOADS_JSON_VAR: Final = "UV_PYTHON_DOWNLOADS_JSON_URL"
"""Config var read by uv: a JSON list of Python downloads (a file or URL) for a private source."""
SUPPORTED_MINORS: Final = tuple(range(9, 15))
"""Python 3.X minors the buildpack provides: 3.9 to 3.14."""
RUNTIME_HOME: Final = Path(".heroku") / "python"
"""Where a standalone runtime lands, relative to BUILD_DIR (and to /app at run time)."""
APP_DIR: Final = Path("/app")
"""Where the slug runs."""

_PLACEHOLDERS: Final = ("version", "minor", "arch")
_CACHE_SUBDIR: Final = "python-runtimes"
_MANAGED_SUBDIR: Final = "managed-pythons"
# What reaches uv besides its own UV_* settings: proxies and certificates for the download.
_PASSED_TO_UV: Final = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "NETRC")
_CHUNK: Final = 1 << 20
_PROBE: Final = "import sys; print(sys.version_info[:3])"
_PROBE_OUTPUT: Final = re.compile(r"^\((\d+), (\d+), (\d+)\)$")
_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
_SET_ONE_HINT: Final = (
    f"set the config var {URL_VAR} to an install_only tarball URL such as "
    "https://…/cpython-{version}-{arch}-unknown-linux-gnu-install_only.tar.gz "
    f"(or {TARBALL_VAR} to a file)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """The CPython an app is built with, and where it comes from.

    A ``standalone`` runtime lives in ``home`` (``BUILD_DIR/.heroku/python``),
    ships in the slug and runs from ``/app/.heroku/python`` since the build is
    relocatable. A ``stack`` runtime is the stack's own interpreter (``home``
    is None); the run image has the same one at the same path.
    """

    python: Path
    version: str
    kind: Literal["standalone", "stack"]
    home: Path | None
    source: str

    def slug_python(self, build_dir: Path, app_dir: Path = APP_DIR) -> str:
        """The interpreter's path at run time: under ``app_dir`` for standalone, else unchanged.

        >>> runtime.slug_python(Path("/tmp/build_1234"))
        '/app/.heroku/python/bin/python3'
        """
        if self.home is None:
            return str(self.python)
        try:
            relative = self.python.relative_to(build_dir)
        except ValueError as exc:
            raise ValueError(
                f"{self.python} is not inside the build directory {build_dir}"
            ) from exc
        return str(app_dir / relative)


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
    if version.major != 3 or version.minor not in SUPPORTED_MINORS:
        raise UnsupportedPythonError(
            f"Python {version} is not supported: wheelbarrow provides CPython "
            f"3.{SUPPORTED_MINORS[0]} to 3.{SUPPORTED_MINORS[-1]}",
            hint="pin a supported version: 3.12 in .python-version, or python-3.12.4 in "
            "runtime.txt",
        )
    expected = _expected_sha256(config)
    location = _configured_location(version, config=config, arch=arch)
    if location is not None:
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
    if expected is not None:
        raise PythonRuntimeError(
            f"the config var {SHA256_VAR} is set but no standalone Python is configured",
            hint=f"set {URL_VAR} or {TARBALL_VAR} too, or unset {SHA256_VAR}",
        )
    try:
        return _stack_runtime(version, which=which, runner=runner)
    except PythonRuntimeError as missing:
        if uv is None:
            raise
        return _managed_runtime(
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


def read_env_dir(env_dir: Path) -> dict[str, str]:
    """The config vars in a buildpack's ENV_DIR: one file per variable, named after it.

    One final newline is dropped from each value, nothing else. Directories,
    special files and names that are not variable names (``.gitkeep``,
    ``my-var``) are skipped. A missing ENV_DIR has no variables.
    """
    if not env_dir.is_dir():
        return {}
    values: dict[str, str] = {}
    for path in sorted(env_dir.iterdir()):
        if not _ENV_NAME.match(path.name) or not path.is_file():
            continue
        # surrogateescape: the value round-trips to os.environ whatever its bytes.
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        values[path.name] = text.removesuffix("\n")
    return values


# -- standalone --------------------------------------------------------------


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
            hint=_SET_ONE_HINT,
        )
    if not path.is_file():
        raise PythonRuntimeError(
            f"the config var {var} names {path}, which is not a file",
            hint="check the path; relative paths are taken inside the app",
        )
    if expected is not None:
        actual = _sha256_of(path)
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
        if expected is None or _sha256_of(cached) == expected:
            return cached
        # The URL now serves something else (or the hash was updated): fetch it again.
        cached.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
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
    return _install_tree(
        lambda scratch: unpack_sdist(archive, scratch, label=f"the Python runtime {source}"),
        source=source,
        version=version,
        build_dir=build_dir,
        runner=runner,
    )


def _install_tree(
    fill: Callable[[Path], Path],
    *,
    source: str,
    version: PythonVersion,
    build_dir: Path,
    runner: Runner,
) -> Runtime:
    """Put the tree ``fill(scratch)`` returns at ``build_dir/.heroku/python`` once it runs."""
    heroku = build_dir / RUNTIME_HOME.parent
    home = build_dir / RUNTIME_HOME
    created = not heroku.exists()
    heroku.mkdir(parents=True, exist_ok=True)
    scratch = heroku / f".python.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        root = fill(scratch)
        relative = _interpreter_in(root, version, source=source)
        found = _probe(root / relative, runner)
        if isinstance(found, str):
            raise PythonRuntimeError(
                f"the Python from {source} does not run here: {found}",
                hint="use a python-build-standalone install_only build for "
                "x86_64-unknown-linux-gnu (or the stack's architecture)",
            )
        if not _matches(version, found):
            raise PythonRuntimeError(
                f"the tarball {source} holds Python {_dotted(found)}, "
                f"but the app asks for Python {version}",
                hint=f"point {URL_VAR} at a build of Python {version}",
            )
        if home.is_symlink() or home.is_file():
            home.unlink()
        elif home.exists():
            shutil.rmtree(home)
        root.rename(home)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if created:
            shutil.rmtree(heroku, ignore_errors=True)
        raise
    # The archive's top directory moved out; what is left is its empty parent.
    shutil.rmtree(scratch, ignore_errors=True)
    return Runtime(
        python=home / relative,
        version=_dotted(found),
        kind="standalone",
        home=home,
        source=source,
    )


def _interpreter_in(root: Path, version: PythonVersion, *, source: str) -> Path:
    for name in ("python3", f"python{version.short}"):
        if (root / "bin" / name).exists():
            return Path("bin", name)
    raise PythonRuntimeError(
        f"the tarball {source} has no bin/python3: not an install_only CPython build",
        hint="use a python-build-standalone *-install_only.tar.gz",
    )


# -- uv's managed Pythons ----------------------------------------------------


def _managed_runtime(
    version: PythonVersion,
    *,
    build_dir: Path,
    cache_dir: Path,
    config: Mapping[str, str],
    runner: Runner,
    uv: str,
    arch: str,
    environ: Mapping[str, str],
    stack: str,
) -> Runtime:
    """A CPython that uv installs (once, into the cache), copied into the build directory."""
    pythons = cache_dir / _MANAGED_SUBDIR
    env = {
        **{k: v for k, v in environ.items() if not k.startswith("UV_")},
        **{k: v for k, v in config.items() if k.startswith("UV_") or k in _PASSED_TO_UV},
        "UV_PYTHON_INSTALL_DIR": str(pythons),
        "UV_CACHE_DIR": str(cache_dir / "uv-cache"),
        "UV_NO_CONFIG": "1",
    }
    # uv's own request form: the architecture is the target's, not this machine's.
    request = f"cpython-{version}-linux-{arch}-gnu"
    source = config.get(DOWNLOADS_JSON_VAR, "").strip() or "uv's managed Python downloads"
    done = runner([uv, "python", "install", request, "--no-bin"], env=env)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise PythonRuntimeError(
            f"{stack}; and uv could not install it from {source}: "
            + (" ".join(line.strip() for line in detail[-3:]) or f"exit status {done.returncode}"),
            hint=f"check the network, or set {DOWNLOADS_JSON_VAR} to a JSON list of downloads "
            f"that has Python {version}, or {URL_VAR} to a tarball",
        )
    found = runner([uv, "python", "find", request, "--managed-python"], env=env)
    located = found.stdout.strip().splitlines()
    if found.returncode != 0 or not located:
        raise PythonRuntimeError(
            f"uv installed Python {version} into {pythons} but cannot find it there",
            hint="clear the build cache and build again",
        )
    tree = Path(located[-1]).resolve().parent.parent

    def copy(scratch: Path) -> Path:
        root = scratch / "python"
        shutil.copytree(tree, root, symlinks=True)
        return root

    return _install_tree(
        copy, source=f"{source} ({tree.name})", version=version, build_dir=build_dir, runner=runner
    )


# -- the stack ---------------------------------------------------------------


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
        found = _probe(Path(path), runner)
        if isinstance(found, str):
            findings.append(f"{path} does not run ({found})")
            continue
        if _matches(version, found):
            return Runtime(
                python=Path(path),
                version=_dotted(found),
                kind="stack",
                home=None,
                source=path,
            )
        findings.append(f"Python {_dotted(found)} ({path})")
    has = "the stack has " + " and ".join(findings) if findings else "the stack has no python3"
    raise PythonRuntimeError(
        f"Python {version} is not available: {has}, and no standalone Python is configured",
        hint=_SET_ONE_HINT,
    )


# -- helpers -----------------------------------------------------------------


def _probe(python: Path, runner: Runner) -> tuple[int, int, int] | str:
    """The interpreter's version, or why it could not be had."""
    # -I: PYTHONHOME/PYTHONPATH of the build must not decide what we see;
    # -B: the probe must not add .pyc files to a tree that ships.
    try:
        done = runner([str(python), "-I", "-B", "-c", _PROBE])
    except (OSError, ToolError) as exc:
        # A binary for another architecture or libc: "Exec format error" and the like.
        return str(exc)
    match = _PROBE_OUTPUT.match(done.stdout.strip())
    if done.returncode != 0 or match is None:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        return f"exit status {done.returncode}" + (f": {detail[-1]}" if detail else "")
    return int(match[1]), int(match[2]), int(match[3])


def _matches(wanted: PythonVersion, found: tuple[int, int, int]) -> bool:
    return found[:2] == (wanted.major, wanted.minor) and wanted.micro in (None, found[2])


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(str(part) for part in version)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
