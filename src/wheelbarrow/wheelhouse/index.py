"""Write a static PEP 503 (HTML) and PEP 691 (JSON) package index, with PEP 658 metadata files."""

from __future__ import annotations

import email.parser
import hashlib
import html
import json
import re
import shutil
import tarfile
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from wheelbarrow._core.digests import file_sha256
from wheelbarrow._core.errors import InputError
from wheelbarrow._core.files import atomic_write_bytes

__all__ = [
    "API_VERSION",
    "DISTRIBUTION_SUFFIXES",
    "METADATA_SUFFIX",
    "IndexFile",
    "index_files_in",
    "write_index",
    "write_metadata_file",
]

API_VERSION = "1.1"
"""The simple repository API version written into every page (PEP 691 / PEP 700)."""

DISTRIBUTION_SUFFIXES = (".whl", ".tar.gz", ".zip")
"""File name endings that ``index_files_in`` treats as distributions."""

METADATA_SUFFIX = ".metadata"
"""What PEP 658 appends to a file's URL to name its core metadata file."""

_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
# Files that mark a directory as an index this module wrote, so ``write_index``
# never deletes a user's directory that merely happens to sit at ``root``.
_OWN_MARKERS = ("index.html", "index.json")


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexFile:
    """One distribution file to list in the index.

    ``href`` is written as given (relative to the project page, or absolute);
    ``sha256`` is hex and stored lower-case. The project and version come from
    the filename, which must be a valid wheel or sdist name. ``metadata_sha256``
    (PEP 658/714), when set, says a file ``href + ".metadata"`` holds the
    distribution's core metadata with that hash (see :func:`write_metadata_file`).
    """

    filename: str
    sha256: str
    href: str
    requires_python: str | None = None
    size: int | None = None
    metadata_sha256: str | None = None

    def __post_init__(self) -> None:
        if not _SHA256_RE.fullmatch(self.sha256):
            raise InputError(
                f"{self.filename}: sha256 must be 64 hex digits, got {self.sha256!r}",
            )
        if self.metadata_sha256 is not None and not _SHA256_RE.fullmatch(self.metadata_sha256):
            raise InputError(
                f"{self.filename}: metadata sha256 must be 64 hex digits, "
                f"got {self.metadata_sha256!r}",
            )
        if self.size is not None and self.size < 0:
            raise InputError(f"{self.filename}: size must not be negative, got {self.size}")
        _parse_filename(self.filename)  # raises InputError for a non-distribution name
        # Frozen: the only way to normalise a field is through object.__setattr__.
        object.__setattr__(self, "sha256", self.sha256.lower())
        if self.metadata_sha256 is not None:
            object.__setattr__(self, "metadata_sha256", self.metadata_sha256.lower())

    @property
    def project(self) -> NormalizedName:
        """The canonical (PEP 503 normalised) project name."""
        return _parse_filename(self.filename)[0]

    @property
    def version(self) -> Version:
        """The version encoded in the filename."""
        return _parse_filename(self.filename)[1]


def write_index(files: Iterable[IndexFile], root: Path) -> None:
    """Write the whole index for ``files`` under ``root``, replacing any previous one.

    The tree is built in a temporary sibling of ``root`` and moved into place
    with renames, so a reader sees the old index or the new one, never a
    partially written page. Between the two renames ``root`` is briefly absent.
    Two processes must not write the same ``root`` at once: callers serialise
    them (for example with a file lock).
    """
    projects = _group_by_project(files)
    root = Path(root)
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.new-", dir=root.parent))
    try:
        # mkdtemp creates 0o700; the index is meant to be read by web servers too.
        staging.chmod(0o755)
        _write_tree(projects, staging)
        _swap_in(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_metadata_file(path: Path) -> str | None:
    """Write a wheel's ``*.dist-info/METADATA`` beside it as ``<wheel>.metadata``; its sha256.

    The bytes are the archive's, unchanged (PEP 658), written under a temporary
    name and renamed into place. A file that is not a wheel gets none: None.
    """
    path = Path(path)
    if not path.name.endswith(".whl"):
        return None
    try:
        metadata = _read_metadata_bytes(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"{path}: cannot read the wheel's metadata: {exc}",
            hint="the file is damaged or not a wheel: rebuild or re-download it",
        ) from exc
    if metadata is None:
        raise InputError(
            f"{path}: the wheel has no .dist-info/METADATA",
            hint="the file is not a valid wheel: rebuild or re-download it",
        )
    atomic_write_bytes(path.with_name(path.name + METADATA_SUFFIX), metadata)
    return hashlib.sha256(metadata).hexdigest()


def index_files_in(
    directory: Path, *, href_prefix: str = "../../", metadata: bool = False
) -> list[IndexFile]:
    """Describe every distribution file directly inside ``directory``, sorted by name.

    Each file is hashed in chunks; its ``Requires-Python`` is read from the
    archive's metadata when present. ``href`` is ``href_prefix`` plus the
    URL-quoted filename: the default suits ``DIR/*.whl`` with the index written
    to ``DIR/simple/`` (project pages live at ``DIR/simple/<project>/``). With
    ``metadata``, each wheel's ``.metadata`` file is written beside it and listed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(
            f"{directory}: not a directory",
            hint="pass the directory that holds the wheels and sdists",
        )
    found: list[IndexFile] = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or not path.name.endswith(DISTRIBUTION_SUFFIXES):
            continue
        if not path.is_file():
            continue
        found.append(
            IndexFile(
                filename=path.name,
                sha256=file_sha256(path),
                href=href_prefix + urllib.parse.quote(path.name),
                requires_python=_read_requires_python(path),
                size=path.stat().st_size,
                metadata_sha256=write_metadata_file(path) if metadata else None,
            )
        )
    return found


def _parse_filename(filename: str) -> tuple[NormalizedName, Version]:
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise InputError(
            f"{filename!r} is not a valid wheel or sdist filename: {exc}",
            hint="wheels are NAME-VERSION-TAGS.whl, sdists NAME-VERSION.tar.gz or .zip",
        ) from exc
    return canonicalize_name(name), version


def _group_by_project(files: Iterable[IndexFile]) -> dict[NormalizedName, list[IndexFile]]:
    projects: dict[NormalizedName, list[IndexFile]] = {}
    seen: set[str] = set()
    duplicates: list[str] = []
    for file in files:
        if file.filename in seen:
            duplicates.append(file.filename)
            continue
        seen.add(file.filename)
        projects.setdefault(file.project, []).append(file)
    if duplicates:
        listing = ", ".join(sorted(set(duplicates)))
        raise InputError(
            f"files listed more than once: {listing}",
            hint="each filename may appear only once in an index",
        )
    # Sorted here once so every page, HTML or JSON, comes out in the same order.
    return {
        name: sorted(projects[name], key=lambda f: (f.version, f.filename))
        for name in sorted(projects)
    }


def _check_replaceable(root: Path) -> None:
    if not root.exists() and not root.is_symlink():
        return
    if root.is_dir() and not root.is_symlink():
        if any(root.iterdir()) and not any((root / m).is_file() for m in _OWN_MARKERS):
            raise InputError(
                f"{root}: refusing to replace a non-empty directory that is not an index",
                hint="choose an empty directory or one a previous write_index created",
            )
        return
    raise InputError(
        f"{root}: exists and is not a directory",
        hint="choose a path for the index that is a directory or does not exist yet",
    )


def _write_tree(projects: Mapping[NormalizedName, list[IndexFile]], root: Path) -> None:
    _write_text(root / "index.html", _root_html(projects))
    _write_text(root / "index.json", _dump_json(_root_json(projects)))
    for name, files in projects.items():
        page_dir = root / name
        page_dir.mkdir()
        _write_text(page_dir / "index.html", _project_html(name, files))
        _write_text(page_dir / "index.json", _dump_json(_project_json(name, files)))


def _swap_in(staging: Path, root: Path) -> None:
    if not root.exists():
        staging.rename(root)
        return
    # The old tree is moved into a private holder first: renaming onto a
    # non-empty directory is not allowed, and the holder makes its removal safe.
    holder = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
    old = holder / root.name
    root.rename(old)
    try:
        staging.rename(root)
    except BaseException:
        old.rename(root)
        shutil.rmtree(holder, ignore_errors=True)
        raise
    shutil.rmtree(holder, ignore_errors=True)


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        stream.write(text)


def _dump_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _html_page(title: str, links: Iterable[str]) -> str:
    escaped = html.escape(title)
    body = "".join(f"    {link}<br>\n" for link in links)
    return (
        "<!DOCTYPE html>\n"
        "<html>\n"
        "  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>{escaped}</title>\n"
        "  </head>\n"
        "  <body>\n"
        f"    <h1>{escaped}</h1>\n"
        f"{body}"
        "  </body>\n"
        "</html>\n"
    )


def _root_html(projects: Mapping[NormalizedName, list[IndexFile]]) -> str:
    links = (
        f'<a href="{html.escape(urllib.parse.quote(name) + "/")}">{html.escape(name)}</a>'
        for name in projects
    )
    return _html_page("Simple index", links)


def _project_html(name: NormalizedName, files: Iterable[IndexFile]) -> str:
    links = []
    for file in files:
        href = html.escape(f"{file.href}#sha256={file.sha256}")
        attributes = f'href="{href}"'
        if file.requires_python is not None:
            attributes += f' data-requires-python="{html.escape(file.requires_python)}"'
        if file.metadata_sha256 is not None:
            # PEP 714's name, and PEP 658's for clients that predate it (older pip).
            value = f"sha256={file.metadata_sha256}"
            attributes += f' data-core-metadata="{value}" data-dist-info-metadata="{value}"'
        links.append(f"<a {attributes}>{html.escape(file.filename)}</a>")
    return _html_page(f"Links for {name}", links)


def _root_json(projects: Mapping[NormalizedName, list[IndexFile]]) -> dict[str, Any]:
    return {
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": name} for name in projects],
    }


def _project_json(name: NormalizedName, files: list[IndexFile]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for file in files:
        entry: dict[str, Any] = {
            "filename": file.filename,
            "url": file.href,
            "hashes": {"sha256": file.sha256},
        }
        if file.requires_python is not None:
            entry["requires-python"] = file.requires_python
        if file.size is not None:
            entry["size"] = file.size
        if file.metadata_sha256 is not None:
            entry["core-metadata"] = {"sha256": file.metadata_sha256}
            entry["dist-info-metadata"] = {"sha256": file.metadata_sha256}
        entries.append(entry)
    versions = sorted({file.version for file in files})
    return {
        "meta": {"api-version": API_VERSION},
        "name": name,
        "versions": [str(v) for v in versions],
        "files": entries,
    }


def _read_requires_python(path: Path) -> str | None:
    """Return the archive's ``Requires-Python``, or None when it declares none."""
    try:
        metadata = _read_metadata_bytes(path)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise InputError(
            f"{path}: cannot read the distribution's metadata: {exc}",
            hint="the file is damaged or not an archive: rebuild or re-download it",
        ) from exc
    if metadata is None:
        return None
    headers = email.parser.BytesHeaderParser().parsebytes(metadata)
    value = headers.get("Requires-Python")
    return None if value is None else str(value).strip()


def _read_metadata_bytes(path: Path) -> bytes | None:
    name = path.name
    if name.endswith(".whl"):
        with zipfile.ZipFile(path) as archive:
            return _first_member(archive.namelist(), ".dist-info/METADATA", archive.read)
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            return _first_member(archive.namelist(), "/PKG-INFO", archive.read)
    with tarfile.open(path, "r:gz") as tar:

        def read_member(member: str) -> bytes:
            stream = tar.extractfile(member)
            return b"" if stream is None else stream.read()

        return _first_member(tar.getnames(), "/PKG-INFO", read_member)


def _first_member(names: Iterable[str], suffix: str, read: Callable[[str], bytes]) -> bytes | None:
    # Only the top-level metadata counts: a vendored copy deeper down is not ours.
    for member in sorted(names):
        if member.endswith(suffix) and member.count("/") == 1:
            return read(member)
    return None
