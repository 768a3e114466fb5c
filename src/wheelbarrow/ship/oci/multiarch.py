"""Multi-architecture images: one image per platform from one app, and the index naming them.

Nothing of a target platform runs on the machine that builds them. Its wheels are
unpacked by wheelbarrow's own code under a CPython of the target's X.Y on this
machine, which also compiles the bytecode (the bytecode of a minor version is the
same on every architecture), and scripts are written for the image's interpreter
(``/opt/venv/bin/python``, a link to the base's). So an x86_64 machine builds the
linux/arm64 image, and an arm64 laptop the linux/amd64 one, without emulation.
What is taken from the building machine is a :class:`BuildMachine`, passed in.

Each platform has its own lock and wheelhouse (its own ``pylock.<name>.toml`` beside
the default ``pylock.toml``, and its own key), as ``wheelbarrow build --platform``
makes them: a :class:`~wheelbarrow.lock.plan.Plan` is for one target, and the
wheelhouse key, the stored environment and the environment layer all follow from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelbarrow._core.errors import InputError, NoCompatibleWheelError, StoreError
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import agree, plural
from wheelbarrow.app.directory import App
from wheelbarrow.environment.envs import env_key
from wheelbarrow.lock.options import Host, Options
from wheelbarrow.lock.plan import Plan, make_plan
from wheelbarrow.lock.requirements_lock import build_command
from wheelbarrow.lock.target_choice import resolve_target
from wheelbarrow.ship.oci.bases import load_platform_bases
from wheelbarrow.ship.oci.build import BaseImage, BuiltImage, build_image, labels_for
from wheelbarrow.ship.oci.image import ImageConfig
from wheelbarrow.ship.oci.platforms import ImagePlatform
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.lock.lockfile import Lock
    from wheelbarrow.share.oci.registry import RegistryClient
    from wheelbarrow.ship.oci.compression import Compression
    from wheelbarrow.ship.oci.pipeline import ImageOutputs
    from wheelbarrow.ship.oci.referrers import Artifact

__all__ = [
    "BuildMachine",
    "PlatformImage",
    "PlatformPlan",
    "ShippedImages",
    "plan_platforms",
    "ship_platform_images",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildMachine:
    """What of the machine that builds the images is used; nothing else of it is assumed.

    ``python`` is asked once the wheelhouses are found: a CPython of the target's
    X.Y on this machine, which lays out each platform's environment (``python -m
    venv``, whose links the image points at the base's interpreter), runs
    wheelbarrow's unpacking and compiles the bytecode; it never imports a wheel's
    code. ``native_arches`` are the wheel
    architectures whose sources ``wheelbarrow build`` can compile here (on Linux
    the machine's own; elsewhere none: a Mac's compilers make no manylinux wheels);
    another platform's wheelhouse is made of wheels only. The store's environments
    are made with hard links (``os.link``) inside the store, which every POSIX
    filesystem has; paths inside images are POSIX paths, whatever the host's.
    """

    python: Callable[[], Interpreter]
    native_arches: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformPlan:
    """One platform of the index and the plan (target, lock, wheelhouse key) for it."""

    platform: ImagePlatform
    plan: Plan


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformImage:
    """One platform's image, built."""

    platform: ImagePlatform
    plan: Plan
    built: BuiltImage

    @property
    def config(self) -> ImageConfig:
        """The image's config."""
        return ImageConfig.from_json(self.built.config)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShippedImages:
    """The images built and what was written where. ``index`` is the image index's
    bytes; with one platform there is none, and that image is what was written."""

    images: tuple[PlatformImage, ...]
    index: bytes | None
    outputs: dict[str, object]

    @property
    def digest(self) -> str:
        """The index's digest, or the one image's."""
        from wheelbarrow.ship.oci.image import sha256_digest

        return sha256_digest(self.index) if self.index is not None else self.images[0].built.digest


def plan_platforms(
    app: App,
    options: Options,
    host: Host,
    platforms: Sequence[ImagePlatform],
    *,
    runner: Runner,
    reporter: Reporter,
) -> tuple[PlatformPlan, ...]:
    """The plan of each platform: the app's target (its lock's, else this machine's) with
    that platform's architecture, the same Python and glibc; never locking.

    The default target's lock is ``pylock.toml``; another architecture's is its own
    side-by-side ``pylock.<name>.toml``, the one ``wheelbarrow build --platform``
    writes. A package the lock has no wheel for on a platform is an error naming
    both.
    """
    plain = dataclasses.replace(options, platform=None, side_by_side=bool(options.python))
    default = resolve_target(app, plain, host)
    plans = []
    for platform in platforms:
        target = platform.target(default)
        wanted = dataclasses.replace(options, platform=target.platform, side_by_side=True)
        try:
            plan = make_plan(app, wanted, host, runner=runner, reporter=reporter, may_lock=False)
        except NoCompatibleWheelError as exc:
            raise NoCompatibleWheelError(exc.packages, target=f"{platform} ({target})") from exc
        plans.append(PlatformPlan(platform=platform, plan=plan))
    return tuple(plans)


def ship_platform_images(
    plans: Sequence[PlatformPlan],
    *,
    base: str,
    tag: str,
    outputs: ImageOutputs,
    source: str | None,
    store: Store,
    machine: BuildMachine,
    runner: Runner,
    reporter: Reporter,
    environ: Mapping[str, str],
    home: Path,
    held: contextlib.ExitStack,
    compression: Compression | None = None,
    sbom: bool = True,
) -> ShippedImages:
    """Build each platform's image on ``base``'s image for it, then write them (and with
    several platforms, the index naming them) where ``outputs`` says.

    Never downloads a package: every platform's wheelhouse must have been built.
    Every wheelhouse and every platform's base are found before anything is
    built; a stored environment is made (or checked) only when its layer is not
    made yet. Layers are compressed with ``compression`` (default: gzip). With
    ``sbom`` each platform's image gets its own SBOM as a referrer (its packages
    are its lock's). The leases that keep ``store gc`` off what is used go on ``held``.
    """
    from wheelbarrow.ship.oci.append import manifest_layer_type
    from wheelbarrow.ship.oci.build import source_date_epoch
    from wheelbarrow.ship.oci.compression import layer_compression
    from wheelbarrow.ship.oci.pipeline import _client, start_sbom

    compression = compression or layer_compression()
    if outputs.docker_archive and len(plans) > 1:
        raise InputError(
            "a docker-archive holds one platform's image, not an index of "
            f"{len(plans)} ({', '.join(str(p.platform) for p in plans)})",
            hint="write the index with --oci DIR or --push, or give one --platform",
        )
    houses = [
        store.hold(held, "wheelhouse", functools.partial(_require_wheelhouse, store, item, machine))
        for item in plans
    ]
    # Layers and pulled base blobs are referenced by nothing until their records are written.
    held.enter_context(store.building())
    client = _client(environ, home) if (outputs.push or not base.startswith("oci:")) else None
    try:
        bases = load_platform_bases(base, [p.platform for p in plans], store, client)
        for base_image in bases:
            # A Docker v2 base cannot take zstd layers: say so before any layer is made.
            manifest_layer_type(compression.media_type, docker=base_image.parsed_manifest.is_docker)
        run = _Run(
            store=store,
            python=machine.python(),
            held=held,
            runner=runner,
            reporter=reporter,
            tag=tag,
            source=source,
            mtime=source_date_epoch(environ),
            compression=compression,
        )
        attach_sboms = (
            [
                start_sbom(
                    held,
                    store,
                    house[0],
                    base_image,
                    lock_sha256=item.plan.lock.sha256,
                    lock=_lock_of(item.plan),
                    name=tag,
                    environ=environ,
                )
                for item, house, base_image in zip(plans, houses, bases, strict=True)
            ]
            if sbom and (outputs.oci or outputs.push)  # a docker-archive has no place for it
            else []
        )
        images = tuple(
            _build_one(run, item, house, base_image)
            for item, house, base_image in zip(plans, houses, bases, strict=True)
        )
        referrers = {
            image.built.digest: attach(image.built, run.mtime)
            for image, attach in zip(images, attach_sboms, strict=False)
        }
        return _write(images, tag, outputs, client, store, referrers)
    finally:
        if client is not None:
            client.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """What every platform's image of one ``wheelbarrow image`` is built with."""

    store: Store
    python: Interpreter
    held: contextlib.ExitStack
    runner: Runner
    reporter: Reporter
    tag: str
    source: str | None
    mtime: int
    compression: Compression


def _build_one(
    run: _Run, item: PlatformPlan, house: tuple[str, dict[str, Any]], base: BaseImage
) -> PlatformImage:
    """One platform's image: its environment layer (the stored environment made only when
    the layer is not), the app layer, on the base's image for that platform."""
    house_key, manifest = house
    run.reporter.message("step", f"Building {run.tag} for {item.platform} on {base.name}")
    built = build_image(
        item.plan.app.root,
        base=base,
        env=functools.partial(_stored_env, run, house_key, manifest),
        env_key=env_key(house_key, run.python),
        target_python=item.plan.target.python.short,
        labels=labels_for(
            item.plan.app.root,
            lock_sha256=item.plan.lock.sha256,
            wheelhouse=house_key,
            source=run.source,
            mtime=run.mtime,
        ),
        store=run.store,
        mtime=run.mtime,
        compression=run.compression,
    )
    run.reporter.message(
        "info",
        f"{item.platform}: environment layer {built.env_layer.digest[:19]}… "
        + ("(reused)" if built.env_layer_reused else "(new)"),
    )
    return PlatformImage(platform=item.platform, plan=item.plan, built=built)


def _stored_env(run: _Run, house_key: str, manifest: Mapping[str, Any]) -> Path:
    """The store's environment of a wheelhouse, made with this machine's Python (which
    unpacks and compiles, and runs nothing of the wheels), leased while the run lasts."""
    from wheelbarrow.environment.envs import ensure_wheelhouse_env

    run.held.enter_context(run.store.use("env", env_key(house_key, run.python)))
    _, made = ensure_wheelhouse_env(
        run.store, house_key, manifest, run.python, runner=run.runner, reporter=run.reporter
    )
    return made.path


def _require_wheelhouse(
    store: Store, item: PlatformPlan, machine: BuildMachine
) -> tuple[str, dict[str, Any]]:
    """The platform's stored wheelhouse; without one, what to run, or why it cannot be made here."""
    from wheelbarrow.wheelhouse.assemble import (
        find_wheelhouse,
        local_projects,
        refuse_edited_local_projects,
    )

    plan = item.plan
    found = find_wheelhouse(
        store,
        plan.key,
        app_root=plan.app.root,
        lock_sha256=plan.lock.sha256,
        target=plan.target,
        directories=local_projects(plan),
    )
    if found is not None:
        return found
    refuse_edited_local_projects(store, plan)
    if plan.sources and plan.target.arch not in machine.native_arches:
        raise InputError(_foreign_sources(item, machine), hint=_foreign_hint(item))
    raise StoreError(
        f"no wheelhouse for {item.platform} ({plan.target}, {plan.lock.path.name}) "
        f"in {store.root} (key {plan.key})",
        hint=f"run `{build_command(plan.app, plan.target, plan.lock.path)}` first "
        "(this command never downloads)",
    )


def _foreign_sources(item: PlatformPlan, machine: BuildMachine) -> str:
    sources = item.plan.sources
    here = " and ".join(sorted(machine.native_arches)) or "no manylinux platform"
    return (
        f"{item.plan.lock.path}: {plural(len(sources), 'package')} "
        f"{agree(len(sources), 'has', 'have')} no wheel for {item.platform} "
        f"({item.plan.target.platform}), only a source to build:\n"
        + "".join(f"  - {a.label} ({a.kind})\n" for a in sources)
        + "source builds for a foreign architecture are out of scope: this machine builds "
        f"from source for {here} only, and wheelbarrow runs nothing of another platform"
    )


def _foreign_hint(item: PlatformPlan) -> str:
    return (
        f"pin versions that publish {item.plan.target.arch} wheels, or build the wheelhouse "
        f"on a {item.platform} machine and share it through a remote store "
        "(`wheelbarrow build --push` there, `wheelbarrow pull` here)"
    )


def _lock_of(plan: Plan) -> Callable[[], Lock]:
    """The plan's lock, for an SBOM that is not made yet."""
    return lambda: plan.lock


def _write(
    images: tuple[PlatformImage, ...],
    tag: str,
    outputs: ImageOutputs,
    client: RegistryClient | None,
    store: Store,
    referrers: Mapping[str, Artifact],
) -> ShippedImages:
    """One platform: its image, written as ``wheelbarrow image`` writes one. Several: each
    image, then the index naming them, into the layout and the registry; each image's
    SBOM (in ``referrers``, by its digest) with it."""
    from wheelbarrow.ship.oci.image_index import image_index, push_index, write_index_layout
    from wheelbarrow.ship.oci.pipeline import _link_blobs, _local_blobs
    from wheelbarrow.ship.oci.pipeline import _write as write_one
    from wheelbarrow.ship.oci.referrers import write_referrer_layout

    if len(images) == 1:
        built = images[0].built
        alone = write_one(built, built.base, tag, outputs, client, store, list(referrers.values()))
        return ShippedImages(images=images, index=None, outputs=alone)
    index = image_index([(i.built.manifest, i.config) for i in images])
    written: dict[str, object] = {}
    if outputs.oci:
        directory, _, ref = outputs.oci.partition(":")
        for one in images:  # layers as reflinks or hard links of their files, where they can be
            _link_blobs(Path(directory), _local_blobs(one.built, one.built.base, store))
        write_index_layout(
            Path(directory), index=index, images=[i.built for i in images], ref_name=ref or "latest"
        )
        write_referrer_layout(Path(directory), list(referrers.values()))
        written["oci"] = f"{directory}:{ref or 'latest'}"
    if outputs.push and client is not None:
        written["push"] = push_index(
            tag, index, [i.built for i in images], client, store, referrers=referrers
        )
    if referrers:
        written["sbom"] = [
            {"digest": r.digest, "subject": r.subject.digest} for r in referrers.values()
        ]
    return ShippedImages(images=images, index=index, outputs=written)
