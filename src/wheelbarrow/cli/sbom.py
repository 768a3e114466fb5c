"""``wheelbarrow sbom``: the software bill of materials of the app's wheelhouse."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from wheelbarrow._core.errors import InputError, StoreError
from wheelbarrow._core.files import atomic_write_bytes
from wheelbarrow.cli import arguments, common, render
from wheelbarrow.wheelhouse.assemble import manifest_of, require_wheelhouse


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
    parser.add_argument(
        "--environment",
        metavar="DIR",
        help="the bill of materials of the environment `install` made in DIR (its wheelhouse "
        "and its Python), instead of the app's wheelhouse",
    )


def run(args: argparse.Namespace) -> int:
    """Print (or write) the bill of materials of the wheelhouse ``build`` made for the app."""
    from wheelbarrow.wheelhouse import sbom

    if args.environment:
        return _write(args, _environment_document(args))
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
    return _write(args, document, f"wheelhouse {key}")


def _write(args: argparse.Namespace, document: bytes, what: str | None = None) -> int:
    if args.output:
        atomic_write_bytes(Path(args.output), document)
        if not args.quiet:
            of = f"the bill of materials of {what or args.environment}"
            render.out(f"Wrote {of} to {args.output}")
    else:
        sys.stdout.write(document.decode("utf-8"))
        sys.stdout.flush()
    return 0


def _environment_document(args: argparse.Namespace) -> bytes:
    """The SBOM of an environment wheelbarrow installed: its marker names the wheelhouse it
    was made from, the store holding it and its Python's version."""
    from wheelbarrow.environment.marker import MARKER, read_marker
    from wheelbarrow.store.store import Store
    from wheelbarrow.wheelhouse import sbom

    where = Path(args.environment)
    marker = read_marker(where)
    key, version = (marker or {}).get("wheelhouse"), (marker or {}).get("python_version")
    if not isinstance(key, str) or not isinstance(version, str):
        raise InputError(
            f"{where}: not an environment wheelbarrow installed (no readable {MARKER})",
            hint="name the directory given to `wheelbarrow install --into`",
        )
    recorded = (marker or {}).get("store")
    store = common.store(args) if args.store or not isinstance(recorded, str) else None
    store = store or Store(Path(str(recorded)))
    with contextlib.ExitStack() as held:
        store.hold(held, "wheelhouse", lambda: (key, None))
        if manifest_of(store, key) is None:
            raise StoreError(
                f"{where}: its wheelhouse {key} is no longer in {store.root}",
                hint="install the environment again, or name its store with --store",
            )
        return sbom.cyclonedx_json(
            store,
            key,
            subject="environment",
            runtime=sbom.Runtime("cpython", version),
            name=where.resolve().name,
            epoch=sbom.source_date_epoch(os.environ),
        )
