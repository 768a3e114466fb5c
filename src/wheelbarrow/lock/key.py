"""The wheelhouse key: one hash of the normalised lock, the target and the settings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wheelbarrow._core.digests import json_sha256
from wheelbarrow.app.target import Target
from wheelbarrow.lock.lockfile import Artefact

# Bump when the wheelhouse layout or anything else the key stands for changes.
KEY_FORMAT = 1


def wheelhouse_key(
    artefacts: Iterable[Artefact], target: Target, settings: Mapping[str, object]
) -> str:
    """A 32-hex-digit key; equal keys mean byte-identical wheelhouses.

    Only what ends up in the wheelhouse counts: the chosen wheel of each
    package (name, version, file name, hash), never the URLs it came from,
    so moving an index or re-locking to the same files keeps the key.
    """
    data = {
        "format": KEY_FORMAT,
        "target": target.as_dict(),
        "settings": dict(settings),
        "wheels": sorted([a.name, a.version, a.filename, a.sha256] for a in artefacts),
    }
    return json_sha256(data)[:32]
