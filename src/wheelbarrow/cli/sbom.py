"""``wheelbarrow sbom``: the software bill of materials of the app's wheelhouse."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from wheelbarrow._core.errors import StoreError
from wheelbarrow._core.files import atomic_write_bytes
from wheelbarrow.cli import arguments, common, render
from wheelbarrow.wheelhouse.assemble import require_wheelhouse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow sbom``: the app and target as for ``install``; the format."""
    arguments.common_options(parser, index=False)
    parser.add_argument(
        "--format",
        choices=("cyclonedx", "spdx"),
        default="cyclonedx",
        help="cyclonedx (default): CycloneDX 1.6 JSON; spdx: SPDX 2.3 JSON (needs the "
        "wheelbarrow[spdx] extra)",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="write the document to FILE instead of printing it"
    )


def run(args: argparse.Namespace) -> int:
    """Print (or write) the bill of materials of the wheelhouse ``build`` made for the app."""
    from wheelbarrow.wheelhouse import sbom

    store = common.store(args)
    reporter = render.make_reporter(quiet=True, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=False)
    with contextlib.ExitStack() as held:
        try:
            key, _ = store.hold(held, "wheelhouse", lambda: require_wheelhouse(store, plan))
        except StoreError as exc:
            raise StoreError(
                f"{plan.app.root}: no wheelhouse for {plan.target} in {store.root} yet",
                hint=f"run `wheelbarrow build {plan.app.root}` first (sbom never downloads)",
            ) from exc
        document_of = sbom.cyclonedx_json
        if args.format == "spdx":
            from wheelbarrow.wheelhouse.sbom_spdx import spdx_json as document_of
        document = document_of(
            store,
            key,
            subject="wheelhouse",
            # The target's Python: what the wheelhouse is for, as exactly as it is known.
            runtime=sbom.Runtime("cpython", str(plan.target.python)),
            lock=plan.lock,
            name=plan.app.root.resolve().name,
            epoch=sbom.source_date_epoch(os.environ),
        )
    if args.output:
        atomic_write_bytes(Path(args.output), document)
        if not args.quiet:
            render.out(f"Wrote the bill of materials of wheelhouse {key} to {args.output}")
    else:
        sys.stdout.write(document.decode("utf-8"))
        sys.stdout.flush()
    return 0
