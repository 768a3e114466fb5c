"""Factories for real wheels, sdists and local package indexes used across the test suite."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import shutil
import tarfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.tags import parse_tag
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.share.serve import make_server
from wheelbarrow.wheelhouse.index import DISTRIBUTION_SUFFIXES, index_files_in, write_index

__all__ = [
    "LocalIndex",
    "build_local_index",
    "make_sdist",
    "make_wheel",
    "serve_local_index",
    "sha256_of",
]

# Fixed timestamps make the bytes of every artefact reproducible. 2020-01-01:
# after 1980 so zip (and wheel builds from an extracted sdist) accept it.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)
_TAR_MTIME = 1_577_836_800


def _distribution_stem(name: str) -> str:
    """The name as it appears in wheel/sdist filenames and .dist-info: ``my_pkg``."""
    return canonicalize_name(name).replace("-", "_")


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _metadata(
    name: str,
    version: str,
    requires: Sequence[str],
    requires_python: str | None,
    extra: Sequence[str] = (),
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines += extra
    return "\n".join(lines) + "\n\n"


def _as_bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    tag: str = "py3-none-any",
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    files: Mapping[str, str | bytes] | None = None,
    entry_points: Mapping[str, str] | None = None,
    metadata: Sequence[str] = (),
) -> Path:
    """Write a valid wheel into ``directory`` and return its path.

    By default it holds ``<import name>/__init__.py`` with ``__version__``;
    ``files`` (archive path to content) replaces that. ``tag`` may be a
    compressed tag set (``cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64``),
    written as one ``Tag:`` line per tag. ``entry_points`` maps console script
    names to ``module:function``; ``metadata`` lines (``License: MIT``) are added to its
    METADATA. The same arguments always give the same bytes.
    """
    stem = _distribution_stem(name)
    version = str(Version(version))
    dist_info = f"{stem}-{version}.dist-info"
    tags = sorted(str(t) for t in parse_tag(tag))
    purelib = all(t.endswith("-any") for t in tags)

    contents: dict[str, bytes] = {}
    if files is None:
        contents[f"{stem}/__init__.py"] = f'__version__ = "{version}"\n'.encode()
    else:
        contents.update((path, _as_bytes(data)) for path, data in files.items())
    contents[f"{dist_info}/METADATA"] = _metadata(
        name, version, requires, requires_python, metadata
    ).encode()
    wheel_lines = [
        "Wheel-Version: 1.0",
        "Generator: wheelbarrow-tests",
        f"Root-Is-Purelib: {'true' if purelib else 'false'}",
        *(f"Tag: {t}" for t in tags),
    ]
    contents[f"{dist_info}/WHEEL"] = ("\n".join(wheel_lines) + "\n").encode()
    if entry_points:
        scripts = "".join(
            f"{script} = {target}\n" for script, target in sorted(entry_points.items())
        )
        contents[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()

    record_path = f"{dist_info}/RECORD"
    record = "".join(
        f"{path},{_record_hash(data)},{len(data)}\n" for path, data in contents.items()
    )
    contents[record_path] = (record + f"{record_path},,\n").encode()

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in contents.items():
            info = zipfile.ZipInfo(member, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return path


def make_sdist(
    directory: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    requires_python: str | None = None,
) -> Path:
    """Write a buildable sdist ``<name>-<version>.tar.gz`` (setuptools backend) and return its path.

    It holds PKG-INFO, a ``pyproject.toml`` using ``setuptools.build_meta`` and
    a one-file package ``<import name>/__init__.py`` with ``__version__``.
    """
    stem = _distribution_stem(name)
    version = str(Version(version))
    base = f"{stem}-{version}"
    dependencies = "".join(f"    {_toml_string(r)},\n" for r in requires)
    python_line = f"requires-python = {_toml_string(requires_python)}\n" if requires_python else ""
    pyproject = (
        "[build-system]\n"
        'requires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n'
        "\n"
        "[project]\n"
        f"name = {_toml_string(name)}\n"
        f"version = {_toml_string(version)}\n"
        f"{python_line}"
        f"dependencies = [\n{dependencies}]\n"
        "\n"
        "[tool.setuptools]\n"
        f"packages = [{_toml_string(stem)}]\n"
    )
    contents = {
        f"{base}/PKG-INFO": _metadata(name, version, requires, requires_python),
        f"{base}/pyproject.toml": pyproject,
        f"{base}/{stem}/__init__.py": f'__version__ = "{version}"\n',
    }

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{base}.tar.gz"
    with (
        path.open("wb") as raw,
        # gzip stores a timestamp and the file name in its header: fix both.
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for member, text in contents.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = _TAR_MTIME
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_local_index(files_dir: Path, artefacts: Iterable[Path] = ()) -> Path:
    """Copy ``artefacts`` into ``files_dir``, index every distribution there, return ``simple/``.

    The hrefs point from ``files_dir/simple/<project>/`` back up to the files.
    """
    files_dir.mkdir(parents=True, exist_ok=True)
    for artefact in artefacts:
        target = files_dir / artefact.name
        if artefact.resolve() != target.resolve():
            shutil.copyfile(artefact, target)
    simple = files_dir / "simple"
    write_index(index_files_in(files_dir), simple)
    return simple


@dataclass(slots=True, kw_only=True)
class LocalIndex:
    """A served local index: ``url`` is the ``.../simple/`` URL to hand to pip or uv."""

    url: str
    base_url: str
    files_dir: Path
    requests: list[tuple[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # paths answered 401 (with ``auth``)

    @property
    def downloads(self) -> list[str]:
        """Names of the distribution files fetched with GET, in request order."""
        return [
            path.rsplit("/", 1)[-1]
            for method, path in self.requests
            if method == "GET" and path.endswith(DISTRIBUTION_SUFFIXES)
        ]


@contextlib.contextmanager
def serve_local_index(
    files_dir: Path, artefacts: Iterable[Path] = (), *, auth: tuple[str, str] | None = None
) -> Iterator[LocalIndex]:
    """Index ``files_dir`` (after copying ``artefacts`` in) and serve it on 127.0.0.1 meanwhile.

    With ``auth`` (user, password) every request without those basic-auth
    credentials is answered 401, pages and files alike, as private indexes do.
    """
    from .servers import basic_auth_handler

    build_local_index(files_dir, artefacts)
    requests: list[tuple[str, str]] = []
    refused: list[str] = []

    def record(method: str, path: str) -> None:
        requests.append((method, path))

    handle = make_server(files_dir, "127.0.0.1", 0, request_log=record)
    if auth is not None:
        handle.server.RequestHandlerClass = basic_auth_handler(*auth, on_refused=refused.append)
    with handle:
        yield LocalIndex(
            url=handle.simple_url,
            base_url=handle.url,
            files_dir=files_dir,
            requests=requests,
            refused=refused,
        )


def served_artefact(file: Path, base_url: str) -> Artefact:
    """The lock's artefact for ``file`` (a wheel or an sdist) on the local index at
    ``base_url``."""
    if file.name.endswith(".whl"):
        name, version, *_ = parse_wheel_filename(file.name)
    else:
        name, version = parse_sdist_filename(file.name)
    return Artefact(
        name=canonicalize_name(name),
        version=str(version),
        filename=file.name,
        url=f"{base_url.rstrip('/')}/{file.name}",
        path=None,
        sha256=sha256_of(file),
        size=file.stat().st_size,
        kind="wheel" if file.name.endswith(".whl") else "sdist",
    )
