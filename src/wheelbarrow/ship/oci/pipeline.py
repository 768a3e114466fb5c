"""``wheelbarrow image``'s flow: the stored wheelhouse and environment, the image, where it goes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from wheelbarrow._core.files import temporary_sibling
from wheelbarrow.ship.oci.build import (
    BaseImage,
    BuiltImage,
    build_image,
    copy_blob,
    labels_for,
    source_date_epoch,
)
from wheelbarrow.ship.oci.compression import Compression, layer_compression
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from wheelbarrow._core.report import Reporter
    from wheelbarrow._core.runner import Runner
    from wheelbarrow.app.target import Target
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.lock.lockfile import Lock
    from wheelbarrow.lock.plan import Plan
    from wheelbarrow.share.oci.registry import RegistryClient
    from wheelbarrow.ship.oci.referrers import Artifact

__all__ = ["ImageOutputs", "ShippedImage", "StoredApp", "ship_image", "ship_stored"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageOutputs:
    """Where the image goes: an OCI layout ``DIR[:TAG]``, a docker-archive file, the registry."""

    oci: str | None = None
    docker_archive: str | None = None
    push: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ShippedImage:
    """The image built, how its layers are compressed, and what was written where (by kind),
    from what of the store."""

    built: BuiltImage
    outputs: dict[str, object]
    compression: Compression
    app: StoredApp


def ship_image(
    plan: Plan,
    *,
    base: str,
    tag: str,
    outputs: ImageOutputs,
    source: str | None,
    store: Store,
    interpreter: Callable[[], Interpreter],
    runner: Runner,
    reporter: Reporter,
    environ: Mapping[str, str],
    home: Path,
    held: contextlib.ExitStack,
    compression: Compression | None = None,
    sbom: bool = True,
) -> ShippedImage:
    """Build the app's image on ``base`` from the store's wheelhouse and environment, write it.

    Never downloads a package: the plan's wheelhouse must have been built.
    ``interpreter`` is asked once the wheelhouse is found; the stored
    environment is made (or checked) only when its layer is not already made.
    Layers are compressed with ``compression`` (default: gzip). With ``sbom`` the
    image's CycloneDX SBOM goes with it, as a referrer, into the layout and the
    registry. The leases that keep ``store gc`` off what is used go on ``held``.
    """
    from wheelbarrow.environment.envs import ensure_wheelhouse_env, env_key
    from wheelbarrow.wheelhouse.assemble import require_wheelhouse

    house_key, manifest = store.hold(held, "wheelhouse", lambda: require_wheelhouse(store, plan))
    python = interpreter()
    key = env_key(house_key, python)

    def environment() -> Path:
        held.enter_context(store.use("env", key))
        return ensure_wheelhouse_env(
            store, house_key, manifest, python, runner=runner, reporter=reporter
        )[1].path

    stored = StoredApp(
        root=plan.app.root,
        target=plan.target,
        lock_sha256=plan.lock.sha256,
        wheelhouse=house_key,
        env_key=key,
        environment=environment,
        lock=lambda: plan.lock,
    )
    return ship_stored(
        stored,
        base=base,
        tag=tag,
        outputs=outputs,
        source=source,
        store=store,
        reporter=reporter,
        environ=environ,
        home=home,
        held=held,
        compression=compression,
        sbom=sbom,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredApp:
    """What an app's image is made of besides its base and the app's files: the app's
    directory, its target, its lock's digest, the wheelhouse (its lease held) and the key of
    its environment for the interpreter that makes it. From a plan, or from the record of the
    last image of the unchanged app (cli/image_record.py), which has no plan to read.

    ``environment`` gives the stored environment's path (made or checked), asked only when
    the environment layer is not made yet; ``lock`` gives the parsed lock, asked only when
    the image's SBOM is not made yet.
    """

    root: Path
    target: Target
    lock_sha256: str
    wheelhouse: str
    env_key: str
    environment: Callable[[], Path]
    lock: Callable[[], Lock]


def ship_stored(
    app: StoredApp,
    *,
    base: str,
    tag: str,
    outputs: ImageOutputs,
    source: str | None,
    store: Store,
    reporter: Reporter,
    environ: Mapping[str, str],
    home: Path,
    held: contextlib.ExitStack,
    compression: Compression | None = None,
    sbom: bool = True,
) -> ShippedImage:
    """:func:`ship_image` once the wheelhouse and the environment's key are known."""
    from wheelbarrow.ship.oci.append import manifest_layer_type

    compression = compression or layer_compression()
    # Layers and pulled base blobs are referenced by nothing until their records are written.
    held.enter_context(store.building())
    mtime = source_date_epoch(environ)
    client = _client(environ, home) if (outputs.push or not base.startswith("oci:")) else None
    try:
        base_image = _load_base(base, app.target, store, client)
        # A Docker v2 base cannot take zstd layers: say so before any layer is made.
        manifest_layer_type(compression.media_type, docker=base_image.parsed_manifest.is_docker)
        attach_sbom = (
            start_sbom(
                held,
                store,
                app.wheelhouse,
                base_image,
                lock_sha256=app.lock_sha256,
                lock=app.lock,
                name=tag,
                environ=environ,
            )
            if sbom and (outputs.oci or outputs.push)  # a docker-archive has no place for it
            else None
        )
        reporter.message("step", f"Building {tag} on {base_image.name}")
        built = build_image(
            app.root,
            base=base_image,
            env=app.environment,
            env_key=app.env_key,
            target_python=app.target.python.short,
            labels=labels_for(
                app.root,
                lock_sha256=app.lock_sha256,
                wheelhouse=app.wheelhouse,
                source=source,
                mtime=mtime,
            ),
            store=store,
            mtime=mtime,
            compression=compression,
        )
        reporter.message(
            "info",
            f"environment layer {built.env_layer.digest[:19]}… "
            + ("(reused)" if built.env_layer_reused else "(new)"),
        )
        referrers = [attach_sbom(built, mtime)] if attach_sbom is not None else []
        written = _write(built, base_image, tag, outputs, client, store, referrers)
    finally:
        if client is not None:
            client.close()
    return ShippedImage(built=built, outputs=written, compression=compression, app=app)


def _write(
    built: BuiltImage,
    base: BaseImage,
    tag: str,
    outputs: ImageOutputs,
    client: RegistryClient | None,
    store: Store,
    referrers: Sequence[Artifact] = (),
) -> dict[str, object]:
    """Write the image to each output asked for, with its ``referrers`` (its SBOM) where
    they can go (a docker-archive has no place for them); what went where, by output kind."""
    from wheelbarrow.ship.oci.blobs import chain_blobs

    blobs = chain_blobs(built.blobs(), base.open_blob)
    written: dict[str, object] = {}
    if outputs.oci:
        from wheelbarrow.ship.oci.layout import write_oci_layout
        from wheelbarrow.ship.oci.referrers import write_referrer_layout

        directory, _, ref = outputs.oci.partition(":")
        _link_blobs(Path(directory), _local_blobs(built, base, store))
        write_oci_layout(
            Path(directory),
            manifest=built.manifest,
            config=built.config,
            blobs=blobs,
            ref_name=ref or "latest",
        )
        write_referrer_layout(Path(directory), list(referrers))
        written["oci"] = f"{directory}:{ref or 'latest'}"
    if outputs.docker_archive:
        from wheelbarrow.ship.oci.docker_archive import write_docker_archive

        write_docker_archive(
            Path(outputs.docker_archive),
            manifest=built.manifest,
            config=built.config,
            blob_source=blobs,
            repo_tag=tag,
        )
        written["docker-archive"] = outputs.docker_archive
    if outputs.push and client is not None:
        written["push"] = _push(tag, built, blobs, base, client, store, referrers)
    if referrers:
        written["sbom"] = {"digest": referrers[0].digest, "subject": referrers[0].subject.digest}
    return written


def start_sbom(
    held: contextlib.ExitStack,
    store: Store,
    house_key: str,
    base: BaseImage,
    *,
    lock_sha256: str,
    lock: Callable[[], Lock],
    name: str,
    environ: Mapping[str, str],
) -> Callable[[BuiltImage, int], Artifact]:
    """Start making the SBOM of the image named ``name`` on ``base`` of the wheelhouse
    ``house_key`` from the lock of digest ``lock_sha256`` (parsed by ``lock``, asked only
    when the document is not kept in the store yet) and the base's Python; what then gives
    the referrer of the built image, dated ``mtime`` (``SOURCE_DATE_EPOCH``).

    The document is made in a thread while the image's layers are: the CycloneDX
    library's strict validator alone takes seconds to import (its schema format
    checkers compile their grammars), time the environment layer hides when the
    machine has a core to spare. ``held`` waits for the thread. A document the store
    keeps is read at once, with no thread.
    """
    from wheelbarrow.ship.oci.build import base_python
    from wheelbarrow.ship.oci.image import Descriptor, Manifest
    from wheelbarrow.ship.oci.referrers import image_sbom, kept_sbom_document, sbom_document

    # As wheelhouse.sbom.source_date_epoch reads it: the document's date, none when unset.
    given = environ.get("SOURCE_DATE_EPOCH", "").strip()
    epoch = int(given) if given.isdigit() else None

    def document(python: str) -> bytes:
        return sbom_document(
            store,
            house_key,
            lock_sha256=lock_sha256,
            lock=lock,
            python=python,
            name=name,
            epoch=epoch,
        )

    found = base_python(base, store)  # read once, then kept by the base's digest
    early: tuple[str, Callable[[], bytes]] | None = None
    if found is not None:
        kept = kept_sbom_document(
            store, house_key, lock_sha256=lock_sha256, python=found.version, name=name, epoch=epoch
        )
        if kept is not None:  # an app-only rebuild: no thread (nor its modules) for a read
            early = (found.version, lambda: kept)
        else:
            from concurrent.futures import ThreadPoolExecutor

            threads = held.enter_context(
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="sbom")
            )
            early = (found.version, threads.submit(document, found.version).result)

    def referrer(built: BuiltImage, mtime: int) -> Artifact:
        subject = Descriptor(
            media_type=Manifest.from_json(built.manifest).media_type,
            digest=built.digest,
            size=len(built.manifest),
        )
        python = built.python.version
        made = early[1]() if early and early[0] == python else document(python)
        return image_sbom(made, subject, mtime=mtime)

    return referrer


def _local_blobs(built: BuiltImage, base: BaseImage, store: Store) -> dict[str, Path]:
    """The image's layers that are files here (in the store, or the base's OCI layout)."""
    from wheelbarrow.ship.oci.image import Manifest

    files = {d: p for d, p in built.blobs().items() if isinstance(p, Path)}
    layout = Path(base.name.removeprefix("oci:").partition(":")[0])
    for layer in Manifest.from_json(built.manifest).layers:
        algorithm, _, hexdigest = layer.digest.partition(":")
        if layer.digest in files or algorithm != "sha256":
            continue
        candidates = [store.blob(hexdigest)]
        if base.name.startswith("oci:"):
            candidates.insert(0, layout / "blobs" / algorithm / hexdigest)
        found = next((c for c in candidates if c.is_file()), None)
        if found is not None and found.stat().st_size == layer.size:
            files[layer.digest] = found
    return files


def _link_blobs(directory: Path, files: Mapping[str, Path]) -> None:
    """Put each blob into the layout ``directory`` as a reflink, else a hard link of its file.

    Blobs are named by their digest and never written in place (here, in the
    store or in a base's layout), so sharing their blocks or their inode is as
    good as a copy and takes no time. Where neither is possible (another
    filesystem), the blob is left for :func:`write_oci_layout` to copy and check.
    """
    for digest, source in files.items():
        target = directory / "blobs" / "sha256" / digest.removeprefix("sha256:")
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(target, ".link")
        if _reflink(source, tmp) or _hardlink(source, tmp):
            tmp.replace(target)


# Linux's FICLONE ioctl: _IOW(0x94, 9, int).
_FICLONE = 0x40049409
_CANNOT_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.EOPNOTSUPP}
_CANNOT_REFLINK = _CANNOT_LINK | {errno.ENOTSUP, errno.EINVAL, errno.ENOTTY, errno.ENOSYS}


def _reflink(source: Path, target: Path) -> bool:
    """Clone ``source`` to the new file ``target`` sharing its blocks (Btrfs, XFS)."""
    with source.open("rb") as src, target.open("xb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
            return True
        except OSError as exc:
            if exc.errno not in _CANNOT_REFLINK:
                raise
    target.unlink()
    return False


def _hardlink(source: Path, target: Path) -> bool:
    try:
        target.hardlink_to(source)
    except OSError as exc:
        if exc.errno not in _CANNOT_LINK:
            raise
        return False
    return True


def _client(environ: Mapping[str, str], home: Path) -> RegistryClient:
    from wheelbarrow.share.oci.auth import AuthSource
    from wheelbarrow.share.oci.registry import RegistryClient

    return RegistryClient(auth=AuthSource.from_environment(environ, home))


def _load_base(text: str, target: Target, store: Store, client: RegistryClient | None) -> BaseImage:
    """The base's image for the target's architecture: ``oci:DIR:TAG`` (an OCI layout), else
    an image reference in a registry; from an index its image for that platform, else the
    one image it is, which must be for that platform."""
    from wheelbarrow.ship.oci.bases import load_platform_bases
    from wheelbarrow.ship.oci.platforms import ImagePlatform

    return load_platform_bases(text, [ImagePlatform.of_target(target)], store, client)[0]


def _push(
    tag: str,
    built: BuiltImage,
    blobs: Callable[[str], BinaryIO],
    base: BaseImage,
    client: RegistryClient,
    store: Store,
    referrers: Sequence[Artifact] = (),
) -> dict[str, object]:
    """Upload what the registry lacks, then tag: nothing half-pushed is ever tagged. The
    ``referrers`` of the image follow it."""
    from wheelbarrow._core.errors import RegistryError
    from wheelbarrow.share.oci.reference import ImageReference
    from wheelbarrow.ship.oci.image import Manifest

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
    pushed: dict[str, object] = {
        "reference": tag,
        "digest": digest,
        "uploaded": uploaded,
        "skipped": skipped,
    }
    if referrers:
        from wheelbarrow.ship.oci.referrers import push_referrer

        pushed["referrers"] = [push_referrer(client, target, r).to_dict() for r in referrers]
    return pushed
