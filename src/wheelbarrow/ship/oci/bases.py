"""A base image for each platform: from an OCI layout ``oci:DIR:TAG`` or a registry, its
image for the platform (from an index or a manifest list), checked to be for it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from wheelbarrow._core.errors import ImageError, InputError
from wheelbarrow.ship.oci.build import BaseImage, copy_blob
from wheelbarrow.ship.oci.image import ImageConfig
from wheelbarrow.ship.oci.platforms import ImagePlatform

if TYPE_CHECKING:
    from wheelbarrow.share.oci.reference import ImageReference
    from wheelbarrow.share.oci.registry import RegistryClient
    from wheelbarrow.store.store import Store

__all__ = ["load_platform_bases"]


def load_platform_bases(
    text: str,
    platforms: Sequence[ImagePlatform],
    store: Store,
    client: RegistryClient | None,
) -> list[BaseImage]:
    """The base's image for each platform, from its index (an OCI image index or a Docker
    manifest list, in a registry or an OCI layout ``oci:DIR:TAG``).

    Each image's config must say it runs on its platform: a single-platform base
    given for several platforms is an error naming it, before anything is built.
    """
    bases = [_load_one(text, platform, store, client) for platform in platforms]
    distinct = len({b.digest for b in bases})
    for platform, base in zip(platforms, bases, strict=True):
        config = ImageConfig.from_json(base.config, where=f"{text} config")
        if platform.matches(config):
            continue
        has = ImagePlatform.describe(config)
        if distinct == 1:
            raise ImageError(
                f"{text} is a single-platform image ({has}), so it is no base for {platform}",
                hint="give a multi-architecture base, an OCI image index or a Docker "
                "manifest list with an image for "
                + ", ".join(str(p) for p in platforms)
                + " (docker.io's debian and python images are)",
            )
        raise ImageError(
            f"{text}: its image for {platform} is a {has} image, says its config",
            hint="the index names the wrong image for the platform: rebuild the base",
        )
    return bases


def _load_one(
    text: str, platform: ImagePlatform, store: Store, client: RegistryClient | None
) -> BaseImage:
    """The base's image for ``platform`` (a plain image manifest is taken as it is)."""
    from wheelbarrow.ship.oci.image import Platform

    wanted = Platform(architecture=platform.architecture, os=platform.os, variant=platform.variant)
    if text.startswith("oci:"):
        from wheelbarrow.ship.oci.layout import read_oci_layout

        directory, _, ref = text.removeprefix("oci:").partition(":")
        try:
            image = read_oci_layout(Path(directory), ref or "latest", platform=wanted)
        except ImageError as exc:
            raise ImageError(f"{text}: for {platform}: {exc.message}", hint=exc.hint) from exc
        return BaseImage(
            name=text, manifest=image.manifest, config=image.config, open_blob=image.open_blob
        )
    from wheelbarrow.share.oci.reference import ImageReference
    from wheelbarrow.ship.oci.image import Manifest

    if client is None:
        raise InputError(f"{text}: reading a base from a registry needs a registry client")
    reference = ImageReference.parse(text)
    body, _media_type, _digest = client.resolve_manifest(
        reference, os=platform.os, arch=platform.architecture, variant=platform.variant
    )
    manifest = Manifest.from_json(body, where=f"{text} manifest for {platform}")
    return BaseImage(
        name=text,
        manifest=body,
        config=client.get_blob(reference, manifest.config.digest),
        open_blob=_cached_registry_blobs(client, reference, store),
    )


def _cached_registry_blobs(
    client: RegistryClient, ref: ImageReference, store: Store
) -> Callable[[str], BinaryIO]:
    """Base blobs streamed from the registry into the store once, then read from there."""

    def open_blob(digest: str) -> BinaryIO:
        path = store.blob(digest.split(":", 1)[1])
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            copy_blob(lambda d: _stream(client, ref, d, store), digest, path)
        return path.open("rb")

    return open_blob


def _stream(client: RegistryClient, ref: ImageReference, digest: str, store: Store) -> BinaryIO:
    with store.scratch("pull-", directory=False) as tmp:
        with tmp.open("wb") as out:

            def sink(chunk: bytes) -> None:
                out.write(chunk)

            client.stream_blob(ref, digest, sink)
        # Open before the scratch entry goes: the reader keeps the unlinked file.
        return tmp.open("rb")
