"""A static package index in the remote store's bucket: a flat find-links page, PEP 503 pages.

Beside the remote's blobs and manifests (see :mod:`wheelbarrow.store.remote`), under its prefix::

    files/<sha256>/<filename>           each wheel under its real name (a copy of its blob)
    files/<sha256>/<filename>.metadata  its core metadata (PEP 658/714)
    index/<key>.json                    the files of wheelhouse <key>, written after them
    find-links.html                     one page linking every wheel: pip -f, uv --find-links
    simple/index.html, simple/<project>/index.html      PEP 503 pages (``../../files/...``)

The pages are derived from the union of ``index/*.json``, never read back and merged, so two
machines pushing different apps cannot drop each other's wheels: each, after writing its pages,
lists ``index/`` again and rewrites them when an entry appeared meanwhile (S3 lists what was
written, strongly). The last page written is then one whose writer saw every entry. A page names
only files an entry names, and an entry is written after its files: a reader never follows a link
to a file not there yet.

A bucket serves no ``index.html`` for a key ending in ``/`` (SeaweedFS answers an empty
``application/x-directory``, and keeps no body under such a key); AWS S3 keeps one. So each push
probes it: where a body stored under ``simple/`` comes back whole, every page is also written
under its ``simple/<project>/`` key, and ``--index-url PREFIX/simple/`` works on the bucket's own
endpoint. Elsewhere the pages need a server that maps ``/`` to ``index.html`` (S3 static website
hosting, a CDN, nginx).
"""

from __future__ import annotations

import email.parser
import hashlib
import html
import json
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from packaging.utils import NormalizedName

from wheelbarrow._core.errors import InputError
from wheelbarrow.store.remote import RemoteError
from wheelbarrow.wheelhouse.index import METADATA_SUFFIX, IndexFile, write_index

__all__ = [
    "FIND_LINKS",
    "Bucket",
    "Published",
    "find_links_html",
    "publish_index",
    "publish_manifest",
]

FIND_LINKS = "find-links.html"
ENTRIES = "index"
FILES = "files"
SIMPLE = "simple"
HTML = "text/html"
# A round of "write the pages, list the entries again" per pusher that came in meanwhile.
_ROUNDS = 8
# Reading a wheel's METADATA over HTTP: its central directory and one member, in small ranges.
_RANGE_BLOCK = 64 * 1024
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Bucket:
    """Objects under the remote's root (``BUCKET/PREFIX``) of an fsspec filesystem, by key.

    ``page_options`` are the put's extra arguments for a page (S3's ``ContentType``: a bucket
    answers with the type it was given, and pip skips a page that is not ``text/html``).
    """

    fs: Any
    root: str
    page_options: Mapping[str, str]

    def path(self, key: str) -> str:
        """The filesystem path of ``key``."""
        return f"{self.root}/{key}"

    def keys(self, under: str) -> list[str]:
        """The keys below ``under`` (fresh: never a cached listing)."""
        self.fs.invalidate_cache(self.path(under))
        try:
            found = self.fs.find(self.path(under))
        except FileNotFoundError:
            return []
        start = len(self.root) + 1
        return sorted(str(p)[start:] for p in found)

    def read(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The content of each key, fetched concurrently."""
        if not keys:
            return {}
        got = self.fs.cat([self.path(k) for k in keys])
        start = len(self.root) + 1
        return {str(p)[start:]: data for p, data in got.items()}

    def write(self, key: str, data: bytes, *, page: bool = False) -> None:
        """Put ``data`` under ``key`` in one PUT (a page with its content type)."""
        self.fs.pipe_file(self.path(key), data, **(self.page_options if page else {}))

    def size(self, key: str) -> int | None:
        """The stored size of ``key``, or None when it is not there."""
        try:
            return int(self.fs.info(self.path(key))["size"])
        except FileNotFoundError:
            return None

    def copy(self, source: str, key: str) -> None:
        """Copy one object to another key (server-side on S3)."""
        self.fs.copy(self.path(source), self.path(key))

    def wheel_metadata(self, key: str) -> bytes:
        """The ``*.dist-info/METADATA`` of the wheel at ``key``, read by ranges."""
        with (
            self.fs.open(self.path(key), "rb", block_size=_RANGE_BLOCK) as stream,
            zipfile.ZipFile(stream) as archive,
        ):
            for member in sorted(archive.namelist()):
                if member.endswith(".dist-info/METADATA") and member.count("/") == 1:
                    return archive.read(member)
        raise InputError(
            f"{self.path(key)}: the wheel has no .dist-info/METADATA",
            hint="the file is not a valid wheel: rebuild it, then push again",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """What a publish wrote: files copied, pages written, and whether ``simple/<p>/`` works."""

    files: tuple[str, ...]
    pages: tuple[str, ...]
    slash_keys: bool


def publish_index(
    bucket: Bucket,
    manifest: Mapping[str, Any],
    *,
    blob_key: Callable[[str], str],
    workers: int = 8,
) -> Published:
    """Publish the wheels of ``manifest`` (a wheelhouse whose blobs are all in the bucket, at
    ``blob_key(sha256)``) into the bucket's index: files and metadata, its entry, pages last."""
    key = str(manifest["key"])
    named = {(str(w["filename"]), str(w["sha256"])) for w in manifest.get("wheels", [])}
    wheels = sorted(w for w in named if w[0].endswith(".whl"))
    entries = _read_entries(bucket, bucket.keys(ENTRIES))
    known = {(f.filename, f.sha256): f for files in entries.values() for f in files}
    missing = [w for w in wheels if w not in known]
    added = _parallel(lambda w: _publish_file(bucket, *w, blob_key(w[1])), missing, workers)
    mine = [known.get(w) or added[missing.index(w)] for w in wheels]
    entry = f"{ENTRIES}/{key}.json"
    bucket.write(entry, _entry_json(mine))
    entries[entry] = mine
    projects = {f.project for f in mine}
    slash = _keeps_slash_keys(bucket)
    written: list[str] = []
    for _ in range(_ROUNDS):
        written = _write_pages(bucket, entries, projects, slash_keys=slash, workers=workers)
        listed = set(bucket.keys(ENTRIES))
        if listed <= set(entries):
            break
        entries.update(_read_entries(bucket, sorted(listed - set(entries))))
    return Published(files=tuple(f.filename for f in added), pages=tuple(written), slash_keys=slash)


def _publish_file(bucket: Bucket, filename: str, sha256: str, blob: str) -> IndexFile:
    """Its metadata file first, then the wheel under its name: a link to either works once the
    wheel is there."""
    where = f"{FILES}/{sha256}/{filename}"
    metadata = bucket.wheel_metadata(blob)
    bucket.write(where + METADATA_SUFFIX, metadata)
    size = bucket.size(where)
    if size is None:
        bucket.copy(blob, where)
        size = bucket.size(where)
    headers = email.parser.BytesHeaderParser().parsebytes(metadata)
    requires = headers.get("Requires-Python")
    return IndexFile(
        filename=filename,
        sha256=sha256,
        href=_href(filename, sha256),
        requires_python=None if requires is None else str(requires).strip(),
        size=size,
        metadata_sha256=hashlib.sha256(metadata).hexdigest(),
    )


def _href(filename: str, sha256: str, *, up: str = "") -> str:
    return f"{up}{FILES}/{sha256}/{urllib.parse.quote(filename)}"


def _entry_json(files: Iterable[IndexFile]) -> bytes:
    rows = [
        {
            "filename": f.filename,
            "sha256": f.sha256,
            "size": f.size,
            "requires-python": f.requires_python,
            "metadata-sha256": f.metadata_sha256,
        }
        for f in files
    ]
    return json.dumps({"version": 1, "files": rows}, indent=1).encode() + b"\n"


def _read_entries(bucket: Bucket, keys: Sequence[str]) -> dict[str, list[IndexFile]]:
    """Each entry's files; an entry that is not one (a stray object) is skipped, not trusted."""
    entries: dict[str, list[IndexFile]] = {}
    for key, data in bucket.read([k for k in keys if k.endswith(".json")]).items():
        try:
            rows = json.loads(data)["files"]
            entries[key] = [
                IndexFile(
                    filename=r["filename"],
                    sha256=r["sha256"],
                    href=_href(r["filename"], r["sha256"]),
                    requires_python=r.get("requires-python"),
                    size=r.get("size"),
                    metadata_sha256=r.get("metadata-sha256"),
                )
                for r in rows
            ]
        except (ValueError, KeyError, TypeError, InputError):
            continue
    return entries


def _chosen(entries: Mapping[str, list[IndexFile]]) -> list[IndexFile]:
    """One file per file name (two builds of one sdist may differ): the lowest sha256."""
    best: dict[str, IndexFile] = {}
    for files in entries.values():
        for f in files:
            if f.filename not in best or f.sha256 < best[f.filename].sha256:
                best[f.filename] = f
    return [best[name] for name in sorted(best)]


def find_links_html(files: Iterable[IndexFile]) -> str:
    """The flat page: one link per file (its href as given), with its hashes and metadata."""
    links = []
    for f in sorted(files, key=lambda f: f.filename):
        attributes = f'href="{html.escape(f"{f.href}#sha256={f.sha256}")}"'
        if f.requires_python is not None:
            attributes += f' data-requires-python="{html.escape(f.requires_python)}"'
        if f.metadata_sha256 is not None:
            value = f"sha256={f.metadata_sha256}"
            attributes += f' data-core-metadata="{value}" data-dist-info-metadata="{value}"'
        links.append(f"    <a {attributes}>{html.escape(f.filename)}</a><br>\n")
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n    <title>Wheels</title>\n  </head>\n  <body>\n"
        f"{''.join(links)}  </body>\n</html>\n"
    )


def _write_pages(
    bucket: Bucket,
    entries: Mapping[str, list[IndexFile]],
    projects: set[NormalizedName],
    *,
    slash_keys: bool,
    workers: int,
) -> list[str]:
    """The pages of ``projects`` (the others' are their pushers' to write), the root page and the
    find-links page, from every entry: rendered here, then uploaded."""
    files = _chosen(entries)
    pages: dict[str, bytes] = {FIND_LINKS: find_links_html(files).encode()}
    with tempfile.TemporaryDirectory(prefix="wheelbarrow-pages-") as tmp:
        simple = Path(tmp) / SIMPLE
        up = [IndexFile(**{**_fields(f), "href": _href(f.filename, f.sha256, up="../../")})
              for f in files]  # fmt: skip
        write_index(up, simple)
        pages[f"{SIMPLE}/index.html"] = (simple / "index.html").read_bytes()
        for name in sorted(projects):
            pages[f"{SIMPLE}/{name}/index.html"] = (simple / name / "index.html").read_bytes()
    if slash_keys:
        pages.update({k.removesuffix("index.html"): v for k, v in list(pages.items())
                      if k.startswith(SIMPLE)})  # fmt: skip
    # Project pages before the root pages and the find-links page, which name them all.
    roots = [k for k in sorted(pages) if k.count("/") < 2 and k != FIND_LINKS] + [FIND_LINKS]
    projects_pages = [k for k in sorted(pages) if k not in roots]
    _parallel(lambda k: bucket.write(k, pages[k], page=True), projects_pages, workers)
    for last in roots:
        bucket.write(last, pages[last], page=True)
    return projects_pages + roots


def _fields(f: IndexFile) -> dict[str, Any]:
    return {
        "filename": f.filename,
        "sha256": f.sha256,
        "href": f.href,
        "requires_python": f.requires_python,
        "size": f.size,
        "metadata_sha256": f.metadata_sha256,
    }


def _keeps_slash_keys(bucket: Bucket) -> bool:
    """Whether the bucket keeps a body under a key ending in ``/`` (AWS S3 does; SeaweedFS
    keeps a directory and drops the body): probed on ``simple/`` with a page."""
    probe = b'<!DOCTYPE html>\n<html><body><a href="index.html">index</a></body></html>\n'
    bucket.write(f"{SIMPLE}/", probe, page=True)
    return bucket.size(f"{SIMPLE}/") == len(probe)


def _parallel(work: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    if len(items) <= 1 or workers <= 1:
        return [work(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(work, items))


def publish_manifest(fs: Any, root: str, manifest: bytes) -> Published:
    """:func:`publish_index` for the remote store at ``root`` (``BUCKET/PREFIX``) of the S3
    filesystem ``fs``, once the wheelhouse's ``manifest`` is written."""
    try:
        parsed = json.loads(manifest)
    except ValueError as exc:
        raise RemoteError(
            f"{root}: the manifest to publish is not JSON ({exc})",
            hint="push the wheelhouse again from a machine that has it (`wheelbarrow push`)",
        ) from exc
    bucket = Bucket(fs, root, {"ContentType": HTML})
    return publish_index(bucket, parsed, blob_key=_blob_key)


def _blob_key(sha256: str) -> str:
    # The remote store's layout (wheelbarrow.store.remote): blobs/sha256/ab/<sha256>.
    return f"blobs/sha256/{sha256[:2]}/{sha256}"
