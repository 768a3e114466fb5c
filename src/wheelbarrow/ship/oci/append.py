"""Appending layers to a base image: the new image's config and manifest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from wheelbarrow._core.errors import ImageFormatError
from wheelbarrow._core.text import plural
from wheelbarrow.share.oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)
from wheelbarrow.ship.oci.image import (
    ContainerConfig,
    Descriptor,
    HistoryEntry,
    ImageConfig,
    Manifest,
    epoch_timestamp,
)
from wheelbarrow.ship.oci.layer import LayerBlob


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChanges:
    """What an appended image changes in its base's run settings; ``None`` keeps the base's.

    ``env`` is merged by variable name (these win, new names go last); ``labels``
    are merged (these win); ``exposed_ports`` are added. As in a Dockerfile,
    setting ``entrypoint`` without ``cmd`` drops the base's ``Cmd``.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name in self.env:
            if not name or "=" in name:
                raise ImageFormatError(
                    f"environment variable name {name!r} is empty or contains '='"
                )

    def apply(self, base: ContainerConfig) -> ContainerConfig:
        """``base`` with these changes."""
        env = list(base.env)
        position = {item.partition("=")[0]: i for i, item in enumerate(env)}
        for name, value in self.env.items():
            if name in position:
                env[position[name]] = f"{name}={value}"
            else:
                position[name] = len(env)
                env.append(f"{name}={value}")
        cmd = base.cmd if self.entrypoint is None else None
        return ContainerConfig(
            env=tuple(env),
            entrypoint=base.entrypoint if self.entrypoint is None else tuple(self.entrypoint),
            cmd=cmd if self.cmd is None else tuple(self.cmd),
            working_dir=base.working_dir if self.working_dir is None else self.working_dir,
            user=base.user if self.user is None else self.user,
            labels={**base.labels, **self.labels},
            exposed_ports=tuple(sorted({*base.exposed_ports, *self.exposed_ports})),
            extra=base.extra,
        )


class ImageDocuments(NamedTuple):
    """A new image's config and manifest, as the bytes whose sha256 are their digests."""

    config: bytes
    manifest: bytes


def scratch_config(*, architecture: str = "amd64", os: str = "linux") -> ImageConfig:
    """The config of an empty image, to append the first layers to (``FROM scratch``)."""
    return ImageConfig(architecture=architecture, os=os)


def append_layers(
    base_config: ImageConfig | Mapping[str, Any],
    base_manifest: Manifest | None,
    new_layers: Sequence[LayerBlob],
    *,
    config_changes: ConfigChanges | None = None,
    created: int = 0,
    created_by: Sequence[str] = (),
) -> ImageDocuments:
    """The config and manifest of ``base`` with ``new_layers`` on top; no layer is read.

    The base's layer descriptors are kept as they are; the new ones follow in
    order. ``diff_ids`` and ``history`` are extended (one entry per new layer,
    ``created_by[i]`` or ``"wheelbarrow"``, at ``created`` seconds since the
    epoch, which also becomes the config's ``created``). The manifest keeps the
    base's format: a Docker v2 base gives a Docker v2 manifest with Docker media
    types for the new config and layers. ``base_manifest=None`` builds on
    nothing (an OCI image from :func:`scratch_config`).
    """
    base = (
        base_config
        if isinstance(base_config, ImageConfig)
        else ImageConfig.from_dict(base_config, where="base image config")
    )
    base_layers = base_manifest.layers if base_manifest is not None else ()
    _check_counts(base, base_layers, new_layers, created_by)
    docker = base_manifest is not None and base_manifest.is_docker
    config = _appended_config(
        base, new_layers, config_changes or ConfigChanges(), created=created, created_by=created_by
    )
    config_bytes = config.to_json()
    manifest = _appended_manifest(base_manifest, base_layers, new_layers, config_bytes, docker)
    return ImageDocuments(config=config_bytes, manifest=manifest.to_json())


def _check_counts(
    base: ImageConfig,
    base_layers: Sequence[Descriptor],
    new_layers: Sequence[LayerBlob],
    created_by: Sequence[str],
) -> None:
    if len(base.diff_ids) != len(base_layers):
        raise ImageFormatError(
            f"the base image's config lists {plural(len(base.diff_ids), 'layer')} "
            "(rootfs.diff_ids) "
            f"but its manifest {len(base_layers)}",
            hint="use a base image whose config belongs to its manifest",
        )
    if created_by and len(created_by) != len(new_layers):
        raise ValueError(f"created_by has {len(created_by)} entries for {len(new_layers)} layers")


def _appended_config(
    base: ImageConfig,
    new_layers: Sequence[LayerBlob],
    changes: ConfigChanges,
    *,
    created: int,
    created_by: Sequence[str],
) -> ImageConfig:
    """``base`` with ``changes`` applied and one diff_id and history entry per new layer."""
    timestamp = epoch_timestamp(created)
    history = tuple(
        HistoryEntry(created=timestamp, created_by=created_by[i] if created_by else "wheelbarrow")
        for i in range(len(new_layers))
    )
    return ImageConfig(
        architecture=base.architecture,
        os=base.os,
        variant=base.variant,
        created=timestamp,
        config=changes.apply(base.config),
        diff_ids=(*base.diff_ids, *(layer.diff_id for layer in new_layers)),
        history=(*base.history, *history),
        extra=base.extra,
    )


def _appended_manifest(
    base_manifest: Manifest | None,
    base_layers: Sequence[Descriptor],
    new_layers: Sequence[LayerBlob],
    config_bytes: bytes,
    docker: bool,
) -> Manifest:
    """The manifest of the new config over the base's layers and the new ones, in its format."""
    return Manifest(
        media_type=DOCKER_MANIFEST if docker else OCI_MANIFEST,
        config=Descriptor.of(config_bytes, DOCKER_CONFIG if docker else OCI_CONFIG),
        layers=(
            *base_layers,
            *(
                Descriptor(
                    media_type=manifest_layer_type(layer.media_type, docker=docker),
                    digest=layer.digest,
                    size=layer.size,
                )
                for layer in new_layers
            ),
        ),
        annotations=base_manifest.annotations if base_manifest is not None else {},
        extra=base_manifest.extra if base_manifest is not None else {},
    )


def manifest_layer_type(media_type: str, *, docker: bool) -> str:
    """A new layer's media type in a manifest: Docker v2 has a gzip type, and no zstd one."""
    if not docker:
        return media_type
    if media_type != OCI_LAYER_GZIP:
        raise ImageFormatError(
            f"a Docker v2 manifest has no media type for {media_type} layers",
            hint="use gzip layers (--compression gzip) on this base, or a base with an OCI "
            "manifest (skopeo copy --format oci)",
        )
    return DOCKER_LAYER_GZIP
