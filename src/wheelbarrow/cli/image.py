"""``wheelbarrow image``: the app's OCI image, written without a daemon."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from wheelbarrow._core.errors import InputError
from wheelbarrow.cli import common, render
from wheelbarrow.ship.oci.build import (
    BaseImage,
    build_image,
    copy_blob,
    labels_for,
    source_date_epoch,
)
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from wheelbarrow.ship.oci.build import BuiltImage
    from wheelbarrow.ship.oci.reference import ImageReference
    from wheelbarrow.ship.oci.registry import RegistryClient


def run(args: argparse.Namespace) -> int:
    """Build on ``--base``; write an OCI layout, a docker-archive, or push to a registry."""
    with contextlib.ExitStack() as held:  # the leases that keep `store gc` off what is used
        return _run(args, held)


def _run(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    if not (args.oci or args.docker_archive or args.push):
        raise InputError(
            "say where the image goes: --oci DIR, --docker-archive FILE or --push",
            hint="--push uploads to the registry named by --tag",
        )
    if args.push:
        from wheelbarrow.ship.oci.reference import ImageReference

        ImageReference.parse(args.tag)  # a bad reference fails before anything is built
    start = time.monotonic()
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=False)
    house_key, manifest = store.hold(
        held, "wheelhouse", lambda: common.built_wheelhouse(store, plan)
    )
    interpreter = common.interpreter_for(plan, args)
    from wheelbarrow.environment import envs as environment

    held.enter_context(store.use("env", environment.env_key(house_key, interpreter)))
    # Layers and pulled base blobs are referenced by nothing until their records are written.
    held.enter_context(store.building())
    env, env_key, _ = common.store_environment(
        store, plan, house_key, manifest, interpreter, reporter
    )
    mtime = source_date_epoch(os.environ)
    client = _client() if (args.push or not args.base.startswith("oci:")) else None
    try:
        base = _load_base(args.base, store, client)
        reporter.message("step", f"Building {args.tag} on {base.name}")
        built = build_image(
            plan.app.root,
            base=base,
            env=env,
            env_key=env_key,
            target_python=plan.target.python.short,
            labels=labels_for(
                plan.app.root,
                lock_sha256=plan.lock.sha256,
                wheelhouse=house_key,
                source=args.source,
                mtime=mtime,
            ),
            store=store,
            mtime=mtime,
        )
        reporter.message(
            "info",
            f"environment layer {built.env_layer.digest[:19]}… "
            + ("(reused)" if built.env_layer_reused else "(new)"),
        )
        from wheelbarrow.ship.oci.layout import chain_blobs, write_docker_archive, write_oci_layout

        blobs = chain_blobs(built.blobs(), base.open_blob)
        outputs: dict[str, object] = {}
        if args.oci:
            directory, _, ref = args.oci.partition(":")
            write_oci_layout(
                Path(directory),
                manifest=built.manifest,
                config=built.config,
                blobs=blobs,
                ref_name=ref or "latest",
            )
            outputs["oci"] = f"{directory}:{ref or 'latest'}"
        if args.docker_archive:
            write_docker_archive(
                Path(args.docker_archive),
                manifest=built.manifest,
                config=built.config,
                blob_source=blobs,
                repo_tag=args.tag,
            )
            outputs["docker-archive"] = args.docker_archive
        if args.push and client is not None:
            outputs["push"] = _push(args.tag, built, blobs, base, client, store)
    finally:
        if client is not None:
            client.close()
    seconds = time.monotonic() - start
    if args.json:
        render.emit_json(
            {
                "version": 1,
                "image": args.tag,
                "digest": built.digest,
                "env_layer": {
                    "digest": built.env_layer.digest,
                    "reused": built.env_layer_reused,
                    "size": built.env_layer.size,
                },
                "app_layer": {"digest": built.app_layer.digest, "size": built.app_layer.size},
                "python": built.python.executable,
                "outputs": outputs,
                "seconds": round(seconds, 3),
            }
        )
    elif not args.quiet:
        render.out(f"Image {args.tag} {built.digest} in {seconds:.1f}s")
        for kind, where in outputs.items():
            render.out(f"  {kind}: {where}")
    return 0


def _client() -> RegistryClient:
    from wheelbarrow.ship.oci.auth import AuthSource
    from wheelbarrow.ship.oci.registry import RegistryClient

    return RegistryClient(auth=AuthSource.from_environment(os.environ, Path.home()))


def _load_base(text: str, store: Store, client: RegistryClient | None) -> BaseImage:
    """``oci:DIR:TAG`` (an OCI layout), else an image reference in a registry."""
    if text.startswith("oci:"):
        from wheelbarrow.ship.oci.layout import read_oci_layout

        directory, _, ref = text.removeprefix("oci:").partition(":")
        image = read_oci_layout(Path(directory), ref or "latest")
        return BaseImage(
            name=text, manifest=image.manifest, config=image.config, open_blob=image.open_blob
        )
    from wheelbarrow.ship.oci.image import Manifest
    from wheelbarrow.ship.oci.reference import ImageReference

    if client is None:
        raise InputError(f"{text}: reading a base from a registry needs a registry client")
    reference = ImageReference.parse(text)
    body, _media_type, _digest = client.resolve_manifest(reference)
    manifest = Manifest.from_json(body, where=f"{text} manifest")
    config = client.get_blob(reference, manifest.config.digest)
    return BaseImage(
        name=text,
        manifest=body,
        config=config,
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


def _push(
    tag: str,
    built: BuiltImage,
    blobs: Callable[[str], BinaryIO],
    base: BaseImage,
    client: RegistryClient,
    store: Store,
) -> dict[str, object]:
    """Upload what the registry lacks, then tag: nothing half-pushed is ever tagged."""
    from wheelbarrow._core.errors import RegistryError
    from wheelbarrow.ship.oci.image import Manifest
    from wheelbarrow.ship.oci.reference import ImageReference

    target = ImageReference.parse(tag)
    manifest = Manifest.from_json(built.manifest)
    uploaded, skipped = [], []
    same_registry = (
        not base.name.startswith("oci:")
        and ImageReference.parse(base.name).registry == target.registry
    )
    for layer in manifest.layers:
        if client.has_blob(target, layer.digest):
            skipped.append(layer.digest)
            continue
        local = built.blobs().get(layer.digest)
        if isinstance(local, Path):
            client.push_blob(target, layer.digest, local, layer.size)
            uploaded.append(layer.digest)
            continue
        if same_registry:
            # The base's blobs are in the same registry: mount them, copy nothing.
            try:
                client.push_blob(
                    target,
                    layer.digest,
                    b"",
                    0,
                    mount_from=ImageReference.parse(base.name).repository,
                )
                skipped.append(layer.digest)
                continue
            except RegistryError:
                pass  # the registry refused the mount: upload it below
        # A base layer from elsewhere goes through a scratch file: it may be large.
        with store.scratch("push-", directory=False) as scratch:
            copy_blob(blobs, layer.digest, scratch)
            client.push_blob(target, layer.digest, scratch, layer.size)
        uploaded.append(layer.digest)
    client.push_blob(target, manifest.config.digest, built.config, len(built.config))
    digest = client.put_manifest(target, built.manifest, manifest.media_type)
    return {"reference": tag, "digest": digest, "uploaded": uploaded, "skipped": skipped}
