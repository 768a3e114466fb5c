"""Finding a base image's Python from its config or its layer listings."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from wheelbarrow._core.errors import InputError
from wheelbarrow.ship.oci.basepython import BasePython, from_config, from_layers, require_match


def layer(*names: str, symlinks: dict[str, str] | None = None) -> io.BytesIO:
    """A gzipped tar holding empty files at ``names`` (and symlinks)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in names:
            tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return io.BytesIO(gzip.compress(raw.getvalue()))


class TestFromLayers:
    def test_debian_python_is_found(self):
        """/usr/bin/python3.11 with /usr/lib/python3.11/os.py is the base's Python."""
        found = from_layers(
            [layer("./usr/bin/python3.11", "./usr/lib/python3.11/os.py", "./etc/debian_version")]
        )
        assert found == BasePython(
            executable="/usr/bin/python3.11", version="3.11", found_by="layers"
        )

    def test_interpreter_without_stdlib_does_not_count(self):
        """A lone binary (or a stdlib without a binary) is not a usable Python."""
        assert from_layers([layer("usr/bin/python3.12", "usr/lib/python3.11/os.py")]) is None

    def test_later_layer_whiteout_removes_python(self):
        """A whiteout in a later layer deletes the interpreter, as at run time."""
        first = layer("usr/bin/python3.11", "usr/lib/python3.11/os.py")
        second = layer("usr/bin/.wh.python3.11")
        assert from_layers([first, second]) is None

    def test_newest_python_wins_across_layers(self):
        """Two Pythons in the image: the newest is taken; parts may come from different layers."""
        found = from_layers(
            [
                layer(
                    "usr/bin/python3.11",
                    "usr/lib/python3.11/os.py",
                    "usr/local/lib/python3.12/os.py",
                ),
                layer(symlinks={"usr/local/bin/python3.12": "python3"}),
            ]
        )
        assert found is not None and found.executable == "/usr/local/bin/python3.12"


class TestFromConfig:
    def test_official_image_env_gives_the_full_version(self):
        """PYTHON_VERSION in the config's Env names the full version and /usr/local."""
        found = from_config({"config": {"Env": ["PATH=/usr/bin", "PYTHON_VERSION=3.12.4"]}})
        assert found == BasePython(
            executable="/usr/local/bin/python3.12", version="3.12.4", found_by="config"
        )

    def test_no_hint_in_the_config(self):
        """A config without PYTHON_VERSION says nothing."""
        assert from_config({"config": {"Env": ["PATH=/bin"]}}) is None


class TestRequireMatch:
    def test_no_python_is_a_clear_error(self):
        """A base without Python is refused, naming the image."""
        with pytest.raises(InputError, match="base:1: the base image has no Python"):
            require_match(None, target="3.11", image="base:1")

    def test_other_version_is_a_clear_error(self):
        """A base whose Python differs from the lock's target names both."""
        base = BasePython(executable="/usr/bin/python3.12", version="3.12", found_by="layers")
        with pytest.raises(InputError, match=r"has Python 3\.12 .* the lock targets Python 3\.11"):
            require_match(base, target="3.11", image="b")
