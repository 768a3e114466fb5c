"""Image layers as compressed tars that are byte-for-byte the same for the same input."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from wheelbarrow._core.errors import ImageError, ImageFormatError
from wheelbarrow._core.files import temporary_sibling
from wheelbarrow.ship.oci.compression import (
    Compression,
    Compressor,
    compressing,
    layer_compression,
)

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DIRECTORY_MODE = 0o755
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class RegularFile:
    """A file at ``path`` in the image, its content from ``source`` or ``data`` (one of them).

    ``rewrite``, when given, is called at write time with the source path and
    its bytes and returns the content to store (scripts whose paths change).
    """

    path: str
    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    rewrite: Callable[[Path, bytes], bytes] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", image_path(self.path))
        if (self.source is None) == (self.data is None):
            raise ImageFormatError(
                f"layer entry {self.path!r}: give exactly one of source and data",
                hint="pass source=Path(...) for a file on disk or data=b'...' for bytes",
            )
        if self.rewrite is not None and self.source is None:
            raise ImageFormatError(f"layer entry {self.path!r}: rewrite needs a source file")


@dataclass(frozen=True, slots=True, kw_only=True)
class Directory:
    """A directory at ``path`` in the image."""

    path: str
    mode: int = DIRECTORY_MODE
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", image_path(self.path))


@dataclass(frozen=True, slots=True, kw_only=True)
class Symlink:
    """A symbolic link at ``path`` pointing to ``target``, kept as written."""

    path: str
    target: str
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", image_path(self.path))
        if not self.target or "\0" in self.target:
            raise ImageFormatError(f"layer entry {self.path!r}: bad symlink target {self.target!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HardLink:
    """A second name at ``path`` for the regular file at ``target``, in the same layer.

    The content is stored once. Whichever name of the file sorts first holds the
    content in the tar; the others are hard-link members pointing at it.
    """

    path: str
    target: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", image_path(self.path))
        object.__setattr__(self, "target", image_path(self.target))


LayerEntry = RegularFile | Directory | Symlink | HardLink


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerBlob:
    """A written layer: the compressed tar at ``path``, named by its digest.

    ``digest`` is the sha256 of the compressed bytes (the manifest's layer
    digest), ``diff_id`` the sha256 of the uncompressed tar (the config's rootfs
    entry), ``size`` the compressed size in bytes, ``media_type`` says how it is
    compressed (gzip or zstd).
    """

    path: Path
    digest: str
    diff_id: str
    size: int
    media_type: str = LAYER_MEDIA_TYPE


def image_path(path: str) -> str:
    """``path`` as a tar member name: relative, ``/``-separated, no ``.`` or ``..`` parts.

    >>> image_path("/app/./bin/run")
    'app/bin/run'
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\0" in path:
        raise ImageFormatError(
            f"layer entry path {path!r} is not a path inside the image",
            hint="use an absolute image path without '..', such as /app/main.py",
        )
    return "/".join(parts)


def _sort_key(path: str) -> tuple[str, ...]:
    # By components, so a directory's whole subtree follows it before any sibling.
    return tuple(path.split("/"))


class _HashingWriter:
    """A write-only file that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: BinaryIO | Compressor) -> None:
        self._sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._sink.flush()


def write_layer(
    entries: Iterable[LayerEntry],
    out_dir: Path,
    *,
    mtime: int = 0,
    compression: Compression | None = None,
    threads: int | None = None,
) -> LayerBlob:
    """Write ``entries`` as a compressed tar at ``out_dir/sha256/<hex of its digest>``.

    Members are sorted by path with every parent directory before its children
    (missing parents are added, root-owned with mode 0755); every member gets
    ``mtime`` (the caller's SOURCE_DATE_EPOCH), empty user and group names, and
    a gzip header has no name and mtime 0. So the same entries, ``mtime`` and
    ``compression`` (default: gzip by the best library installed) always give
    the same bytes, with any number of ``threads`` (default: one per CPU). Both
    digests are computed while writing. The tar is written to a temporary name
    in ``out_dir`` and renamed into place.
    """
    members = _plan(entries)
    compression = compression or layer_compression()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(out_dir / "layer")
    try:
        with tmp.open("xb") as raw:
            compressed = _HashingWriter(raw)
            with compressing(compression, compressed, threads=threads) as stream:
                uncompressed = _HashingWriter(stream)
                with tarfile.TarFile(
                    fileobj=uncompressed,  # type: ignore[arg-type]
                    mode="w",
                    format=tarfile.PAX_FORMAT,
                    encoding="utf-8",
                ) as tar:
                    for info, content in _tar_members(members, mtime=mtime):
                        if content is None:
                            tar.addfile(info)
                            continue
                        with content:
                            tar.addfile(info, content)
        digest = compressed.hash.hexdigest()
        final = out_dir / "sha256" / digest
        final.parent.mkdir(exist_ok=True)
        tmp.replace(final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return LayerBlob(
        path=final,
        digest=f"sha256:{digest}",
        diff_id=f"sha256:{uncompressed.hash.hexdigest()}",
        size=compressed.size,
        media_type=compression.media_type,
    )


def _plan(entries: Iterable[LayerEntry]) -> list[LayerEntry]:
    """The members in tar order: sorted, parents added, each file's content under its first name."""
    by_path: dict[str, LayerEntry] = {}
    for entry in entries:
        if entry.path in by_path:
            raise ImageFormatError(
                f"layer has two entries for {entry.path!r}",
                hint="give each image path once",
            )
        by_path[entry.path] = entry
    for path in list(by_path):
        parent = PurePosixPath(path).parent
        while str(parent) != ".":
            existing = by_path.get(str(parent))
            if existing is None:
                by_path[str(parent)] = Directory(path=str(parent))
            elif not isinstance(existing, Directory):
                raise ImageFormatError(
                    f"layer entry {path!r} is inside {str(parent)!r}, which is not a directory"
                )
            parent = parent.parent
    _relink(by_path)
    return [by_path[p] for p in sorted(by_path, key=_sort_key)]


def _relink(by_path: dict[str, LayerEntry]) -> None:
    """Point every hard link at a regular file, and store each file under its first name."""
    groups: dict[str, tuple[RegularFile, list[str]]] = {}
    for entry in by_path.values():
        if isinstance(entry, HardLink):
            target = by_path.get(entry.target)
            if not isinstance(target, RegularFile):
                raise ImageFormatError(
                    f"hard link {entry.path!r} points to {entry.target!r}, "
                    "which is not a regular file of the same layer",
                    hint="hard links must name a file written in the same layer",
                )
            groups.setdefault(entry.target, (target, [entry.target]))[1].append(entry.path)
    for file, names in groups.values():
        first = min(names, key=_sort_key)
        if first != file.path:
            by_path[first] = _replace_path(file, first)
        for name in names:
            if name != first:
                by_path[name] = HardLink(path=name, target=first)


def _replace_path(file: RegularFile, path: str) -> RegularFile:
    return RegularFile(
        path=path,
        source=file.source,
        data=file.data,
        mode=file.mode,
        uid=file.uid,
        gid=file.gid,
        rewrite=file.rewrite,
    )


def _tar_members(
    members: Iterable[LayerEntry], *, mtime: int
) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    files: dict[str, RegularFile] = {}
    for entry in members:
        info = tarfile.TarInfo(entry.path)
        info.mtime = mtime
        info.uname = info.gname = ""
        content: BinaryIO | None = None
        if isinstance(entry, HardLink):
            # A link shares its file's inode: give its header the same owner and mode.
            file = files[entry.target]
            info.type = tarfile.LNKTYPE
            info.linkname = entry.target
            info.uid, info.gid, info.mode = file.uid, file.gid, file.mode & 0o7777
        else:
            info.uid, info.gid = entry.uid, entry.gid
            if isinstance(entry, Directory):
                info.type = tarfile.DIRTYPE
                info.mode = entry.mode & 0o7777
            elif isinstance(entry, Symlink):
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                info.mode = 0o777
            else:
                info.mode = entry.mode & 0o7777
                content, info.size = _open_content(entry)
                files[entry.path] = entry
        yield info, content


def _open_content(entry: RegularFile) -> tuple[BinaryIO, int]:
    if entry.source is None:
        data = entry.data or b""
        return io.BytesIO(data), len(data)
    if entry.rewrite is not None:
        data = entry.rewrite(entry.source, entry.source.read_bytes())
        return io.BytesIO(data), len(data)
    stream = entry.source.open("rb")
    return stream, os.fstat(stream.fileno()).st_size


def entries_from_tree(
    root: Path,
    *,
    prefix: str,
    uid: int = 0,
    gid: int = 0,
    rewrite: Callable[[Path, bytes], bytes] | None = None,
    exclude: Callable[[str], bool] | None = None,
    keep_modes: bool = False,
) -> list[LayerEntry]:
    """The entries that put the tree at ``root`` at ``prefix`` in the image.

    Symlinks stay symlinks; files that are hard links of each other inside the
    tree become one file and hard links. ``exclude`` gets each path relative to
    ``root`` (``pkg/__pycache__``) and skips it, a directory with its subtree.
    Modes are normalised (0755 for directories and executables, 0644 for other
    files) so that a checkout's umask does not change the layer, unless
    ``keep_modes``. Sockets, FIFOs and devices are refused.
    """
    top = image_path(prefix)
    walk = _TreeWalk(
        top=top, uid=uid, gid=gid, rewrite=rewrite, exclude=exclude, keep_modes=keep_modes
    )
    walk.entries.append(
        Directory(path=top, mode=_mode(root.stat().st_mode, keep_modes), uid=uid, gid=gid)
    )
    walk.directory(root, "")
    return walk.entries


@dataclass(slots=True, kw_only=True)
class _TreeWalk:
    """One :func:`entries_from_tree` walk: its settings, the entries so far, the inodes seen."""

    top: str
    uid: int
    gid: int
    rewrite: Callable[[Path, bytes], bytes] | None
    exclude: Callable[[str], bool] | None
    keep_modes: bool
    entries: list[LayerEntry] = field(default_factory=list)
    first_name: dict[tuple[int, int], str] = field(default_factory=dict)

    def directory(self, directory: Path, relative: str) -> None:
        """Add what ``directory`` (``relative`` to the root, with a trailing /) holds, sorted."""
        with os.scandir(directory) as scan:
            children = sorted(scan, key=lambda e: e.name)
        for child in children:
            rel = f"{relative}{child.name}"
            if self.exclude is not None and self.exclude(rel):
                continue
            self._child(child, rel)

    def _child(self, child: os.DirEntry[str], rel: str) -> None:
        inside = f"{self.top}/{rel}"
        uid, gid = self.uid, self.gid
        st = child.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            self.entries.append(
                Symlink(path=inside, target=str(Path(child.path).readlink()), uid=uid, gid=gid)
            )
        elif stat.S_ISDIR(st.st_mode):
            mode = _mode(st.st_mode, self.keep_modes)
            self.entries.append(Directory(path=inside, mode=mode, uid=uid, gid=gid))
            self.directory(Path(child.path), f"{rel}/")
        elif stat.S_ISREG(st.st_mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in self.first_name:
                self.entries.append(HardLink(path=inside, target=self.first_name[inode]))
                return
            if st.st_nlink > 1:
                self.first_name[inode] = inside
            self.entries.append(
                RegularFile(
                    path=inside,
                    source=Path(child.path),
                    mode=_mode(st.st_mode, self.keep_modes),
                    uid=uid,
                    gid=gid,
                    rewrite=self.rewrite,
                )
            )
        else:
            raise ImageError(
                f"{child.path}: cannot put a socket, FIFO or device file in an image layer",
                hint="exclude it, or remove it from the tree",
            )


def _mode(st_mode: int, keep: bool) -> int:
    if keep:
        return stat.S_IMODE(st_mode)
    if stat.S_ISDIR(st_mode) or st_mode & stat.S_IXUSR:
        return 0o755
    return 0o644
