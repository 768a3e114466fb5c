"""The content-addressed store: wheel blobs by sha256, wheelhouses and environments by key."""

from __future__ import annotations

import _thread
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from wheelbarrow._core.digests import file_sha256, small_sha256
from wheelbarrow._core.errors import HashMismatchError, StoreError
from wheelbarrow._core.scratch import clean_stale, lease, scratch

# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, TypeVar

    T = TypeVar("T")

    from filelock import FileLock

    from wheelbarrow.store.wheelcheck import StreamedMembers

STORE_ENV_VAR = "WHEELBARROW_STORE"
# Held (shared) by whatever writes blobs that no manifest names yet; gc sweeps blobs,
# build cache, build environments and layers only while it holds it exclusively.
BUILDING_LEASE = "building"
# Where bills of materials are kept, by a digest of their inputs (``<sha256>.cdx.json``):
# wheelhouse/sbom.py's documents, and ship/oci/referrers.py's of images. Nothing refers to
# them: a removed one is made again when it is next needed (store/inventory.py: gc, du).
SBOM_CACHE = "sbom"
IMAGE_SBOM_CACHE = "oci/sbom"


class BlobWriter:
    """Streams one file into the store, hashing as it goes.

    The bytes land in ``tmp/`` and are renamed into ``blobs/`` only when the
    hash (and size, if known) match, so the store never holds a partial or
    wrong file, whatever interrupts the writer.
    """

    def __init__(self, fileobj: BinaryIO, members: StreamedMembers | None = None) -> None:
        import hashlib  # here: the warm install imports this module, and writes no blob

        self._file = fileobj
        self._hash = hashlib.sha256()
        self.size = 0
        self.members = members  # a wheel's members, hashed as they stream past

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)
        if self.members is not None:
            self.members.feed(chunk)

    @property
    def sha256(self) -> str:
        """The hex digest of what was written so far."""
        return self._hash.hexdigest()


class Store:
    """A directory laid out as::

    blobs/sha256/ab/abcdef...   wheels and sdists, named by content, read-only
    named/ab/<sha256>/<name>    the same blobs under their file names (installers parse them)
    wheelhouses/<key>/          a wheelhouse: hard links to blobs, simple/, wheelhouse.json
    envs/<key>/                 ready environments (apps' and builds'), by key
    built/<key>/                source builds: result.json, build.log
    build-history/              the inputs of each package's last build, to say why it rebuilt
    buildlocks/<hash>/          locks of build requirements
    apps/<hash>.json            the last wheelhouse each app was built into
    tmp/  locks/                work in progress, and cross-process locks
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def blob(self, sha256: str) -> Path:
        """Where the blob with this digest lives (whether or not it is there)."""
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """Whether the blob is in the store."""
        return self.blob(sha256).is_file()

    @contextlib.contextmanager
    def writer(
        self, *, sha256: str, size: int | None, label: str, filename: str | None = None
    ) -> Iterator[BlobWriter]:
        """Write a blob that must hash to ``sha256``; ``label`` names it in errors.

        A ``filename`` ending in ``.whl`` is checked as a wheel (a zip, true to
        its RECORD and name) before it enters the store: a small one's members
        hashed as they are written (while the rest downloads), not read again
        after; a big one's (or one of unknown size) once it is whole, by several
        threads.
        """
        # Here, not at the top: a warm install imports this module and writes no blob.
        from wheelbarrow.store.wheelcheck import (
            PARALLEL_FROM,
            StreamedMembers,
            check_wheel,
            is_wheel,
        )

        wheel = filename is not None and is_wheel(filename)
        # A big wheel is checked once whole, by several threads at once: following its
        # members on the thread that downloads it made that thread the build's last by far
        # on a fast network (textsim's scipy: 36 MB, a tenth of the cold build's time).
        streamed = wheel and size is not None and size < PARALLEL_FROM
        with self.scratch("blob-", directory=False) as tmp, tmp.open("xb") as f:
            writer = BlobWriter(f, StreamedMembers() if streamed else None)
            yield writer
            f.flush()
            if writer.sha256 != sha256:
                raise HashMismatchError(
                    f"{label}: sha256 is {writer.sha256}, the lock says {sha256}",
                    hint="the file changed on the index, or the lock is wrong: "
                    "lock again, and check where the file comes from",
                )
            if size is not None and writer.size != size:
                raise HashMismatchError(
                    f"{label}: {writer.size} bytes, the lock says {size}",
                    hint="lock again",
                )
            if wheel:
                check_wheel(tmp, filename=filename, streamed=writer.members)
            final = self.blob(sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            # Two processes may write the same blob: both renames succeed and the
            # content is identical by construction.
            os.replace(tmp, final)

    def add_file(self, path: Path) -> str:
        """Copy a file made here (a built wheel) into the store; returns its sha256."""
        sha256 = file_sha256(path)
        if not self.has(sha256):
            with (
                self.writer(sha256=sha256, size=None, label=path.name, filename=path.name) as w,
                path.open("rb") as f,
            ):
                while chunk := f.read(1 << 20):
                    w.write(chunk)
        return sha256

    def named(self, sha256: str, filename: str) -> Path:
        """The blob under its real file name (installers parse wheel names): a hard link."""
        path = self.root / "named" / sha256[:2] / sha256 / filename
        if not path.is_file():
            blob = self.blob(sha256)
            if not blob.is_file():
                raise StoreError(f"{filename}: not in the store (sha256 {sha256})")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                # A hard link appears whole, at once; another thread or process making
                # the same one first is as good. (Linking through a temporary name
                # would leave it behind: renaming one link over another of the same
                # file does nothing.)
                os.link(blob, path)
            except FileExistsError:
                pass
            except OSError:  # no hard links here: a copy, renamed into place
                import shutil

                tmp = path.with_name(f".{filename}.{os.getpid()}.{_thread.get_ident()}.tmp")
                shutil.copyfile(blob, tmp)
                os.replace(tmp, path)
        return path

    def wheelhouse(self, key: str) -> Path:
        """The directory of the wheelhouse with this key."""
        return self.root / "wheelhouses" / key

    def env(self, key: str) -> Path:
        """The directory of the environment with this key."""
        return self.root / "envs" / key

    def app_state(self, app_root: Path) -> Path:
        """Where the last build of the app at ``app_root`` is recorded."""
        digest = small_sha256(str(app_root.resolve()).encode()).hexdigest()[:24]
        return self.root / "apps" / f"{digest}.json"

    def tmp_dir(self) -> Path:
        """A scratch directory on the store's filesystem, so results can be renamed in."""
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def scratch(
        self, prefix: str, *, directory: bool = True
    ) -> contextlib.AbstractContextManager[Path]:
        """A scratch entry in ``tmp/`` (:func:`wheelbarrow._core.scratch.scratch`): removed on exit
        unless renamed away, and provably stale if its process dies."""
        return scratch(self.tmp_dir(), prefix, directory=directory)

    def lock(self, name: str) -> FileLock:
        """A lock shared by every process using this store."""
        from filelock import FileLock

        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(path)

    def clean_stale_tmp(self) -> int:
        """Remove scratch entries whose processes are gone (killed ones included); returns how many.

        Entries are proven stale by their locks (see :mod:`wheelbarrow._core.scratch`),
        never by their age: a running build's scratch space is never touched.
        """
        return len(clean_stale(self.root / "tmp", ""))

    def leases_dir(self) -> Path:
        """Where the leases on store entries live (see :func:`wheelbarrow._core.scratch.lease`)."""
        return self.root / "locks" / "leases"

    @contextlib.contextmanager
    def use(self, kind: str, key: str) -> Iterator[None]:
        """Hold a shared lease on an entry (``wheelhouse`` or ``env`` and its key) while using it.

        ``store gc`` never removes an entry someone holds. The lease file's
        mtime records the last use, which is what ``gc --older-than`` reads.
        """
        name = f"{kind}-{key}"
        with lease(self.leases_dir(), name):
            with contextlib.suppress(OSError):
                os.utime(self.leases_dir() / f"{name}.lock")
            yield

    def building(self) -> contextlib.AbstractContextManager[None]:
        """The shared store-wide lease of a build or image that may write blobs nothing names yet.

        Held from before the first download until the wheelhouse's manifest is
        written: in between, its blobs are referenced by nothing on disk.
        """
        return lease(self.leases_dir(), BUILDING_LEASE)

    def hold(
        self, stack: contextlib.ExitStack, kind: str, find: Callable[[], tuple[str, T]]
    ) -> tuple[str, T]:
        """Find an entry and hold its lease (on ``stack``) before trusting what was found.

        ``find`` returns the entry's key and whatever the caller reads from it;
        it runs again under the lease, as gc may have removed the entry between
        the two, and until the key it finds is one already held.
        """
        found = find()
        held: set[str] = set()
        while found[0] not in held:
            stack.enter_context(self.use(kind, found[0]))
            held.add(found[0])
            found = find()
        return found
