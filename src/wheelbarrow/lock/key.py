"""The wheelhouse key: one hash of the normalised lock, the target and the settings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

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
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
