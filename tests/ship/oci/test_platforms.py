"""Image platforms: what --platform linux/amd64,linux/arm64 means, and the target of each."""

from __future__ import annotations

import pytest

from wheelbarrow._core.errors import TargetError
from wheelbarrow.app.target import Target
from wheelbarrow.ship.oci.image import ImageConfig
from wheelbarrow.ship.oci.platforms import ImagePlatform, is_image_platforms, parse_platforms


class TestImagePlatform:
    def test_a_list_is_parsed_in_order(self) -> None:
        """linux/amd64,linux/arm64 gives both platforms, in the order given."""
        platforms = parse_platforms("linux/amd64, linux/arm64")
        assert [str(p) for p in platforms] == ["linux/amd64", "linux/arm64"]
        assert [p.wheel_arch for p in platforms] == ["x86_64", "aarch64"]

    def test_wheel_spellings_and_the_arm64_variant_are_taken(self) -> None:
        """linux/aarch64 is linux/arm64; linux/arm64/v8 keeps its variant."""
        assert str(ImagePlatform.parse("linux/aarch64")) == "linux/arm64"
        assert ImagePlatform.parse("linux/arm64/v8").variant == "v8"

    @pytest.mark.parametrize("text", ["windows/amd64", "linux/s390x", "arm64", "linux/amd64/v3"])
    def test_what_no_manylinux_wheel_runs_on_is_refused(self, text: str) -> None:
        """Only linux/amd64 and linux/arm64 have manylinux wheels; the error names the value."""
        with pytest.raises(TargetError, match="--platform"):
            ImagePlatform.parse(text)

    def test_a_platform_given_twice_is_refused(self) -> None:
        """An index holds one image per platform: a repeated one is named."""
        with pytest.raises(TargetError, match="linux/arm64 given more than once"):
            parse_platforms("linux/arm64,linux/amd64,linux/aarch64")

    def test_the_target_keeps_the_locks_python_and_glibc(self) -> None:
        """linux/arm64 of a CPython 3.12 manylinux_2_36_x86_64 lock is manylinux_2_36_aarch64."""
        default = Target.parse(python="3.12", platform="manylinux_2_36_x86_64")
        target = ImagePlatform.parse("linux/arm64").target(default)
        assert target == Target.parse(python="3.12", platform="manylinux_2_36_aarch64")

    def test_a_config_matches_by_os_and_architecture_and_a_variant_only_when_asked(self) -> None:
        """An arm64 config with variant v8 is linux/arm64 and linux/arm64/v8, not linux/amd64."""
        config = ImageConfig(architecture="arm64", os="linux", variant="v8")
        assert ImagePlatform.parse("linux/arm64").matches(config)
        assert ImagePlatform.parse("linux/arm64/v8").matches(config)
        assert not ImagePlatform.parse("linux/amd64").matches(config)
        assert ImagePlatform.describe(config) == "linux/arm64/v8"

    def test_a_manylinux_tag_is_not_an_image_platform(self) -> None:
        """--platform manylinux_2_28_x86_64 keeps its meaning (the lock's target)."""
        assert not is_image_platforms("manylinux_2_28_x86_64")
        assert not is_image_platforms(None)
        assert is_image_platforms("linux/arm64")
