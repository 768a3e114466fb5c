"""The wheelhouse key: what counts (the files chosen, the target, the settings) and what not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from packaging.utils import canonicalize_name

from wheelbarrow.app.target import Target
from wheelbarrow.lock.key import wheelhouse_key
from wheelbarrow.lock.lockfile import Artefact

TARGET = Target.parse(python="3.12", platform="manylinux_2_28_x86_64")


def wheel(name: str, version: str = "1.0", sha: str = "a" * 64, url: str | None = None) -> Artefact:
    """An artefact as the lock reader gives it for one wheel."""
    return Artefact(
        name=canonicalize_name(name),
        version=version,
        filename=f"{name}-{version}-py3-none-any.whl",
        url=url or f"https://files.example.test/{name}-{version}-py3-none-any.whl",
        path=None,
        sha256=sha,
        size=10,
    )


class TestWheelhouseKey:
    def test_the_key_is_32_hex_digits_and_stable(self):
        """The same inputs give the same key, in any order of the artefacts."""
        a, b = wheel("alpha"), wheel("beta")
        key = wheelhouse_key([a, b], TARGET, {"layout": 1})
        assert key == wheelhouse_key([b, a], TARGET, {"layout": 1})
        assert len(key) == 32 and int(key, 16) >= 0

    def test_where_a_file_comes_from_does_not_count(self):
        """Another index URL or a local path for the same file keeps the key."""
        a = wheel("alpha")
        moved = replace(a, url="https://mirror.example.test/alpha.whl")
        local = replace(a, url=None, path=Path("/srv/wheels/alpha.whl"))
        keys = {wheelhouse_key([x], TARGET, {}) for x in (a, moved, local)}
        assert len(keys) == 1

    def test_the_file_the_version_the_target_and_the_settings_count(self):
        """A new hash, version, target or setting is a new wheelhouse."""
        a = wheel("alpha")
        base = wheelhouse_key([a], TARGET, {"layout": 1})
        others = [
            wheelhouse_key([wheel("alpha", sha="b" * 64)], TARGET, {"layout": 1}),
            wheelhouse_key([wheel("alpha", version="2.0")], TARGET, {"layout": 1}),
            wheelhouse_key(
                [a], Target.parse(python="3.13", platform=TARGET.platform), {"layout": 1}
            ),
            wheelhouse_key([a], TARGET, {"layout": 1, "build": {"repair": "never"}}),
        ]
        assert base not in others and len(set(others)) == len(others)
