"""``wheelbarrow image``: the app's OCI image, written without a daemon."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.errors import InputError
from wheelbarrow.cli import common, image_record, render
from wheelbarrow.ship.oci.compression import layer_compression
from wheelbarrow.ship.oci.platforms import is_image_platforms

if TYPE_CHECKING:
    from collections.abc import Callable

    from wheelbarrow._core.report import Reporter
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.ship.oci.compression import Compression
    from wheelbarrow.ship.oci.multiarch import BuildMachine, ShippedImages
    from wheelbarrow.ship.oci.pipeline import ShippedImage
    from wheelbarrow.store.store import Store


def run(args: argparse.Namespace) -> int:
    """Build on ``--base``; write an OCI layout, a docker-archive, or push to a registry."""
    with contextlib.ExitStack() as held:  # the leases that keep `store gc` off what is used
        return _image(args, held)


def _image(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    if not (args.oci or args.docker_archive or args.push):
        raise InputError(
            "say where the image goes: --oci DIR, --docker-archive FILE or --push",
            hint="--push uploads to the registry named by --tag",
        )
    if args.push:
        from wheelbarrow.share.oci.reference import ImageReference

        ImageReference.parse(args.tag)  # a bad reference fails before anything is built
    compression = layer_compression(args.compression)  # a missing library fails first too
    start = time.monotonic()
    store = common.store(args)
    reporter = common.LazyReporter(
        lambda: render.make_reporter(quiet=args.quiet, json_mode=args.json)
    )
    if is_image_platforms(args.platform):
        return _platform_images(args, held, store, reporter, start, compression)
    # The app-only rebuild: from the record of the last image, without planning.
    shipped = image_record.ship_recorded(args, compression=compression, reporter=reporter)
    if shipped is None:
        shipped = _planned_image(args, held, store, reporter, compression)
    built = shipped.built
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
                "compression": {
                    "media_type": compression.media_type,
                    "library": compression.library,
                    "version": compression.version,
                    "level": compression.level,
                },
                "python": built.python.executable,
                "outputs": shipped.outputs,
                "seconds": round(seconds, 3),
            }
        )
    elif not args.quiet:
        render.out(f"Image {args.tag} {built.digest} in {seconds:.1f}s")
        for kind, where in shipped.outputs.items():
            render.out(f"  {kind}: {where}")
    return 0


def _planned_image(
    args: argparse.Namespace,
    held: contextlib.ExitStack,
    store: Store,
    reporter: common.LazyReporter,
    compression: Compression,
) -> ShippedImage:
    """The image from a plan, recorded for the next (cli/image_record.py)."""
    from wheelbarrow._core.runner import run_subprocess
    from wheelbarrow.ship.oci.pipeline import ImageOutputs, ship_image

    planned = image_record.planned(args, store, reporter)
    plan = planned.plan
    found: list[Interpreter] = []

    def interpreter() -> Interpreter:
        found.append(common.interpreter_for(plan, args))
        return found[-1]

    shipped = ship_image(
        plan,
        base=args.base,
        tag=args.tag,
        outputs=ImageOutputs(oci=args.oci, docker_archive=args.docker_archive, push=args.push),
        source=args.source,
        store=store,
        interpreter=interpreter,
        runner=run_subprocess,
        reporter=reporter,
        environ=os.environ,
        home=Path.home(),
        held=held,
        compression=compression,
        sbom=args.sbom,
    )
    image_record.remember(planned, shipped, found[0] if found else None, store, args)
    return shipped


def _platform_images(
    args: argparse.Namespace,
    held: contextlib.ExitStack,
    store: Store,
    reporter: Reporter,
    start: float,
    compression: Compression,
) -> int:
    """``--platform linux/amd64,linux/arm64``: an image per platform, in an index."""
    import dataclasses

    from wheelbarrow._core.runner import run_subprocess
    from wheelbarrow.ship.oci.multiarch import plan_platforms, ship_platform_images
    from wheelbarrow.ship.oci.pipeline import ImageOutputs
    from wheelbarrow.ship.oci.platforms import parse_platforms

    platforms = parse_platforms(args.platform)
    options = dataclasses.replace(common.options(args), platform=None, side_by_side=False)
    plans = plan_platforms(
        common.app(args),
        options,
        common.host(),
        platforms,
        runner=run_subprocess,
        reporter=reporter,
    )
    shipped = ship_platform_images(
        plans,
        base=args.base,
        tag=args.tag,
        outputs=ImageOutputs(oci=args.oci, docker_archive=args.docker_archive, push=args.push),
        source=args.source,
        store=store,
        machine=_this_machine(lambda: common.interpreter_for(plans[0].plan, args)),
        runner=run_subprocess,
        reporter=reporter,
        environ=os.environ,
        home=Path.home(),
        held=held,
        compression=compression,
        sbom=args.sbom,
    )
    seconds = time.monotonic() - start
    if args.json:
        render.emit_json(_platforms_report(args.tag, shipped, compression, seconds))
    elif not args.quiet:
        what = f"index of {len(shipped.images)}" if shipped.index is not None else "image"
        render.out(f"Image {args.tag} ({what}) {shipped.digest} in {seconds:.1f}s")
        for image in shipped.images:
            reused = " (environment layer reused)" if image.built.env_layer_reused else ""
            render.out(f"  {image.platform}: {image.built.digest}{reused}")
        for kind, where in shipped.outputs.items():
            render.out(f"  {kind}: {where}")
    return 0


def _this_machine(python: Callable[[], Interpreter]) -> BuildMachine:
    """What of this machine the images are built with: ``python`` (found when first asked),
    and the one architecture it compiles sources for, on Linux only."""
    import platform
    import sys

    from wheelbarrow.ship.oci.multiarch import BuildMachine

    machine = platform.machine().lower()
    native = {_WHEEL_ARCH.get(machine, machine)} if sys.platform == "linux" else set()
    return BuildMachine(python=python, native_arches=frozenset(native))


def _platforms_report(
    tag: str, shipped: ShippedImages, compression: Compression, seconds: float
) -> dict[str, object]:
    """The ``--json`` report of an image per platform."""
    return {
        "version": 1,
        "image": tag,
        "digest": shipped.digest,
        "index": shipped.index is not None,
        "compression": {
            "media_type": compression.media_type,
            "library": compression.library,
            "version": compression.version,
            "level": compression.level,
        },
        "platforms": [
            {
                "platform": str(image.platform),
                "target": image.plan.target.as_dict(),
                "lock": image.plan.lock.path.name,
                "digest": image.built.digest,
                "env_layer": {
                    "digest": image.built.env_layer.digest,
                    "reused": image.built.env_layer_reused,
                    "size": image.built.env_layer.size,
                },
                "app_layer": {
                    "digest": image.built.app_layer.digest,
                    "size": image.built.app_layer.size,
                },
                "python": image.built.python.executable,
            }
            for image in shipped.images
        ],
        "outputs": shipped.outputs,
        "seconds": round(seconds, 3),
    }


# What platform.machine() says, as wheel tags spell it (arm64 is a Mac's and Windows' aarch64).
_WHEEL_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
