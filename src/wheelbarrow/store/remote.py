"""The remote store's port: blobs by sha256 and wheelhouse manifests by key, shared by machines.

The remote's layout (under its URL's prefix) mirrors the local store's::

    blobs/sha256/ab/<sha256>           wheels, named by content
    wheelhouses/<key>/wheelhouse.json  a wheelhouse's manifest, written after all its blobs
    builds/<part1>/<part2>/result.json a source build's record, written after its wheel's blob

Readers trust nothing but a manifest and blobs that hash to what it names: an
upload killed midway leaves blobs without a manifest (a miss for every reader),
and a blob is checked against its sha256 as it enters the local store. A build
record is found by the first part of its build key (``<part1>``, known before
building); the reader checks what it links (the second part, ``<part2>`` its
digest) against its own machine (see :mod:`wheelbarrow.build.buildcache`).
Every put is of content named by its own hash (or of the same manifest for the
same key), so two machines pushing the same wheelhouse at once both succeed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from wheelbarrow._core.errors import StoreError
from wheelbarrow.store.store import Store

__all__ = [
    "REMOTE_ENV_VAR",
    "RemoteError",
    "RemoteStore",
    "Transfer",
    "pull_blobs",
    "push_wheelhouse",
    "remote_manifest",
]

REMOTE_ENV_VAR = "WHEELBARROW_REMOTE"
MANIFEST = "wheelhouse.json"
BUILD_RECORD = "result.json"
T = TypeVar("T")


class RemoteError(StoreError):
    """The remote store refused or could not be reached (the message names its URL)."""


class RemoteStore(Protocol):
    """A store other machines share: what :func:`pull_blobs` and :func:`push_wheelhouse` use.

    ``url`` names it in messages and never holds a secret. Each put is atomic
    per object (it appears whole or not at all) and idempotent.

    >>> remote.has_blob("ab12...")          # doctest: +SKIP
    False
    """

    url: str

    def has_blob(self, sha256: str) -> bool:
        """Whether the blob is there."""
        ...

    def get_blob(self, sha256: str, store: Store, *, filename: str) -> int:
        """Copy the blob into ``store`` (hash-checked by :meth:`Store.writer`); returns its size."""
        ...

    def put_blob(self, sha256: str, path: Path) -> None:
        """Upload the file at ``path``, whose content hashes to ``sha256``."""
        ...

    def get_manifest(self, key: str) -> bytes | None:
        """The wheelhouse manifest under ``key``, or None when there is none."""
        ...

    def put_manifest(self, key: str, data: bytes) -> None:
        """Write the manifest under ``key``: call only once every blob it names is there."""
        ...

    def get_builds(self, key: str) -> list[bytes]:
        """The records (``result.json``) of the source builds whose key's first part is ``key``."""
        ...

    def put_build(self, key: str, entry: str, data: bytes) -> None:
        """Write one build record under ``key``/``entry``: call only once its wheel's blob is
        there."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """What a pull or push moved: the files sent or received, their bytes, those already there."""

    url: str
    key: str
    moved: tuple[str, ...] = ()
    nbytes: int = 0
    present: int = 0
    builds: int = 0  # source builds' records pushed with it (see build/buildcache.py)

    def as_json(self) -> dict[str, object]:
        """For ``--json``."""
        return {
            "version": 1,
            "remote": self.url,
            "key": self.key,
            "moved": list(self.moved),
            "bytes": self.nbytes,
            "present": self.present,
            "builds": self.builds,
        }


def remote_manifest(remote: RemoteStore, key: str) -> dict[str, Any] | None:
    """The remote's manifest of ``key`` when it is one for that key, else None (a miss)."""
    data = remote.get_manifest(key)
    if data is None:
        return None
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RemoteError(
            f"{remote.url}: the manifest of wheelhouse {key} is not JSON ({exc})",
            hint="push the wheelhouse again from a machine that has it (`wheelbarrow push`)",
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        raise RemoteError(
            f"{remote.url}: the manifest under {key} is not the manifest of that wheelhouse",
            hint="push the wheelhouse again from a machine that has it (`wheelbarrow push`)",
        )
    return manifest


def _wheels(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (filename, sha256) of each wheel the manifest names."""
    return [(str(w["filename"]), str(w["sha256"])) for w in manifest.get("wheels", [])]


def pull_blobs(
    remote: RemoteStore, store: Store, manifest: Mapping[str, Any], *, workers: int
) -> Transfer:
    """Download, in parallel, the manifest's blobs that ``store`` lacks (each hash-checked)."""
    wheels = _wheels(manifest)
    missing = [(f, s) for f, s in dict.fromkeys(wheels) if not store.has(s)]
    sizes = _parallel(lambda w: remote.get_blob(w[1], store, filename=w[0]), missing, workers)
    return Transfer(
        url=remote.url,
        key=str(manifest["key"]),
        moved=tuple(f for f, _ in missing),
        nbytes=sum(sizes),
        present=len(wheels) - len(missing),
    )


def push_wheelhouse(
    remote: RemoteStore, store: Store, key: str, manifest_path: Path, *, workers: int
) -> Transfer:
    """Upload the wheelhouse's blobs the remote lacks (in parallel), then its manifest, last."""
    data = manifest_path.read_bytes()
    manifest = json.loads(data)
    wheels = list(dict.fromkeys(_wheels(manifest)))
    for filename, sha256 in wheels:
        if not store.has(sha256):
            raise StoreError(
                f"{filename}: named by wheelhouse {key} but not in the store {store.root}",
                hint="run `wheelbarrow verify --repair`, or build the app again",
            )

    def send(wheel: tuple[str, str]) -> int:
        blob = store.blob(wheel[1])
        if remote.has_blob(wheel[1]):
            return -1
        remote.put_blob(wheel[1], blob)
        return blob.stat().st_size

    sizes = _parallel(send, wheels, workers)
    remote.put_manifest(key, data)
    sent = [w[0] for w, n in zip(wheels, sizes, strict=True) if n >= 0]
    return Transfer(
        url=remote.url,
        key=key,
        moved=tuple(sent),
        nbytes=sum(n for n in sizes if n >= 0),
        present=len(wheels) - len(sent),
    )


def _parallel(
    work: Callable[[T], int], items: Sequence[T] | Iterable[T], workers: int
) -> list[int]:
    """``work`` over ``items`` on ``workers`` threads, in order; the first failure is raised."""
    items = list(items)
    if len(items) <= 1 or workers <= 1:
        return [work(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(work, items))
