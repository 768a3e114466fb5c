"""Image platforms (``linux/amd64``, ``linux/arm64``) and the manylinux target each stands for."""

from __future__ import annotations

from dataclasses import dataclass

from wheelbarrow._core.errors import TargetError
from wheelbarrow.app.target import Target
from wheelbarrow.ship.oci.image import ImageConfig, Platform

# OCI architecture -> wheel architecture: what manylinux wheels exist for and uv locks for.
WHEEL_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
# Other spellings people write (docker and podman take them too).
_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}
_VARIANTS = {"arm64": ("v8",), "amd64": ()}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePlatform:
    """What one image of an index runs on: ``linux/arm64``, maybe with a variant (``v8``).

    The architecture is in OCI spelling (``amd64``, ``arm64``);
    :attr:`wheel_arch` is the same machine as wheel tags spell it.
    """

    architecture: str
    os: str = "linux"
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImagePlatform:
        """``linux/amd64``, ``linux/arm64`` or ``linux/arm64/v8`` (and ``linux/aarch64``)."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise TargetError(
                f"--platform: {text.strip()!r} is not an image platform",
                hint="write OS/ARCH, e.g. linux/amd64,linux/arm64",
            )
        os_name, arch = parts[0], _ALIASES.get(parts[1], parts[1])
        variant = parts[2] if len(parts) == 3 else None
        if os_name != "linux" or arch not in WHEEL_ARCH:
            raise TargetError(
                f"--platform: wheelbarrow cannot build images for {text.strip()!r}",
                hint="images are made of manylinux wheels: use linux/amd64 or linux/arm64",
            )
        if variant is not None and variant not in _VARIANTS[arch]:
            raise TargetError(
                f"--platform: {arch} has no variant {variant!r}",
                hint=f"use linux/{arch}"
                + "".join(f" or linux/{arch}/{v}" for v in _VARIANTS[arch]),
            )
        return cls(architecture=arch, os=os_name, variant=variant)

    @classmethod
    def of_target(cls, target: Target) -> ImagePlatform:
        """The image platform of a manylinux target (``manylinux_2_28_aarch64``: linux/arm64)."""
        arch = next(oci for oci, wheel in WHEEL_ARCH.items() if wheel == target.arch)
        return cls(architecture=arch)

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    @property
    def wheel_arch(self) -> str:
        """The architecture as wheel tags spell it: ``x86_64``, ``aarch64``."""
        return WHEEL_ARCH[self.architecture]

    def target(self, default: Target) -> Target:
        """``default`` (the app's lock target) for this architecture: same Python and glibc."""
        return Target.parse(
            python=str(default.python),
            platform=f"manylinux_{default.glibc[0]}_{default.glibc[1]}_{self.wheel_arch}",
        )

    def matches(self, config: ImageConfig) -> bool:
        """Whether an image config says it runs here (a variant only counts when asked for)."""
        architecture = _ALIASES.get(config.architecture, config.architecture)
        return (
            config.os == self.os
            and architecture == self.architecture
            and (self.variant is None or config.variant == self.variant)
        )

    @staticmethod
    def of_config(config: ImageConfig) -> Platform:
        """The ``platform`` of an index entry for an image of ``config``, as its config says."""
        return Platform(architecture=config.architecture, os=config.os, variant=config.variant)

    @staticmethod
    def describe(config: ImageConfig) -> str:
        """``linux/amd64``: what a config says its image runs on."""
        return "/".join(p for p in (config.os, config.architecture, config.variant) if p)


def parse_platforms(text: str) -> tuple[ImagePlatform, ...]:
    """A comma-separated list of image platforms, each once, in the order given."""
    platforms = tuple(ImagePlatform.parse(part) for part in text.split(",") if part.strip())
    if not platforms:
        raise TargetError("--platform: no platform given", hint="e.g. linux/amd64,linux/arm64")
    names = [(p.os, p.architecture) for p in platforms]
    twice = sorted({str(p) for p, n in zip(platforms, names, strict=True) if names.count(n) > 1})
    if twice:
        raise TargetError(
            f"--platform: {', '.join(twice)} given more than once",
            hint="name each platform once: an index holds one image per platform",
        )
    return platforms


def is_image_platforms(text: str | None) -> bool:
    """Whether an image's ``--platform`` names image platforms (``linux/arm64``), not a
    manylinux tag (``manylinux_2_28_x86_64``, the lock's target as for ``build``)."""
    return text is not None and "/" in text
