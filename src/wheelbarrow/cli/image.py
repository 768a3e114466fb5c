"""``wheelbarrow image``: the app's OCI image, written without a daemon."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.cli import common, render
from wheelbarrow.ship.oci.compression import layer_compression
from wheelbarrow.ship.oci.pipeline import ImageOutputs, ship_image


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
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=False)
    shipped = ship_image(
        plan,
        base=args.base,
        tag=args.tag,
        outputs=ImageOutputs(oci=args.oci, docker_archive=args.docker_archive, push=args.push),
        source=args.source,
        store=store,
        interpreter=lambda: common.interpreter_for(plan, args),
        runner=run_subprocess,
        reporter=reporter,
        environ=os.environ,
        home=Path.home(),
        held=held,
        compression=compression,
    )
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
