"""The target: versions and platforms parsed strictly, tags and markers derived from them."""

from __future__ import annotations

import pytest
from packaging.tags import Tag

from wheelbarrow._core.errors import TargetError
from wheelbarrow.app.target import PythonVersion, Target, host_platform, normalise_platform


class TestPythonVersion:
    @pytest.mark.parametrize(
        ("text", "short", "full"),
        [
            ("3.12", "3.12", "3.12.0"),
            ("3.12.4", "3.12", "3.12.4"),
            ("python-3.11.7", "3.11", "3.11.7"),
            ("cpython-3.13", "3.13", "3.13.0"),
            (" 3.10\n", "3.10", "3.10.0"),
        ],
    )
    def test_accepted_spellings(self, text, short, full):
        """The forms of .python-version, runtime.txt and uv are all understood."""
        version = PythonVersion.parse(text)
        assert (version.short, version.full) == (short, full)

    @pytest.mark.parametrize("text", ["3", "three", "2.7", "3.x", ""])
    def test_nonsense_is_refused_with_its_source(self, text):
        """A bad version names where it came from."""
        with pytest.raises(TargetError, match=r"runtime\.txt:1"):
            PythonVersion.parse(text, source="runtime.txt:1")

    def test_too_old_is_refused(self):
        """Python 3.8 is out of support."""
        with pytest.raises(TargetError, match="no longer supported"):
            PythonVersion.parse("3.8")


class TestPlatform:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("manylinux_2_28_x86_64", "manylinux_2_28_x86_64"),
            ("x86_64-manylinux_2_28", "manylinux_2_28_x86_64"),
            ("manylinux2014_x86_64", "manylinux_2_17_x86_64"),
            ("manylinux_2_34_aarch64", "manylinux_2_34_aarch64"),
        ],
    )
    def test_spellings_normalise(self, text, expected):
        """PEP 600, legacy and uv spellings give one canonical tag."""
        assert normalise_platform(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "win_amd64",
            "macosx_11_0_arm64",
            "manylinux_2_99_x86_64",
            "linux_x86_64",
            "manylinux_2_28_riscv",
        ],
    )
    def test_unsupported_platforms_are_refused_with_a_hint(self, text):
        """Only manylinux platforms uv can lock for are accepted, and the hint lists them."""
        with pytest.raises(TargetError) as info:
            normalise_platform(text)
        assert info.value.hint and "manylinux_2_M_ARCH" in info.value.hint

    def test_host_platform_is_the_best_supported_tag(self):
        """The running machine's first supported manylinux tag is the default."""
        assert (
            host_platform(["manylinux_2_41_x86_64", "manylinux_2_36_x86_64"])
            == "manylinux_2_36_x86_64"
        )


class TestTarget:
    def test_tags_accept_older_manylinux_and_abi3(self):
        """A 2_28 target takes 2_17 wheels and abi3 wheels, but not newer glibc or linux_*."""
        target = Target.parse(python="3.12", platform="manylinux_2_28_x86_64")
        tags = target.tag_set
        assert Tag("cp312", "cp312", "manylinux_2_17_x86_64") in tags
        assert Tag("cp312", "cp312", "manylinux2014_x86_64") in tags
        assert Tag("cp39", "abi3", "manylinux_2_28_x86_64") in tags
        assert Tag("py3", "none", "any") in tags
        assert Tag("cp312", "cp312", "manylinux_2_31_x86_64") not in tags
        assert Tag("cp312", "cp312", "linux_x86_64") not in tags
        assert Tag("cp311", "cp311", "manylinux_2_17_x86_64") not in tags
        assert Tag("cp312", "cp312", "manylinux_2_17_aarch64") not in tags

    def test_most_specific_tag_comes_first(self):
        """The best tag is the exact interpreter on the newest glibc."""
        target = Target.parse(python="3.12", platform="manylinux_2_28_x86_64")
        assert target.tags[0] == Tag("cp312", "cp312", "manylinux_2_28_x86_64")

    def test_marker_environment_is_the_target_not_the_host(self):
        """Markers see the target's Python and machine."""
        env = Target.parse(python="3.13.1", platform="manylinux_2_28_aarch64").environment
        assert env["python_version"] == "3.13"
        assert env["python_full_version"] == "3.13.1"
        assert env["platform_machine"] == "aarch64"
        assert env["sys_platform"] == "linux"

    def test_uv_spelling(self):
        """uv's --python-platform is derived from the tag."""
        assert (
            Target.parse(python="3.12", platform="manylinux_2_28_x86_64").uv_platform
            == "x86_64-manylinux_2_28"
        )
