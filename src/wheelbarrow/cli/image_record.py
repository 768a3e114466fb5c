"""The app-only ``image``: built from a record of what the last full image of the app read.

A full ``image`` plans (the app, its lock, the store's record of its last build, the
wheelhouse's manifest) and finds the interpreter the environment is made with; importing
the planner (``packaging``, the lock and requirements readers) is most of what an image
whose environment layer is already made costs. So a full image for an OCI layout base
leaves ``locks/images/<hash>.json`` in the store, named by the app's directory and the
options but where the image goes: what the plan read as cli/noop.py sees it (the files it
opened, by their bytes; the directories it listed and the app's own entries; the variables
it looked up; this Python; wheelbarrow's and ``packaging``'s modules), what the plan gave
(the app's directory, its target, its lock's digest, the wheelhouse), how the interpreter
was found (cli/install_record.py's record of it) and the environment's key for it.

The next image with the same options, written to an OCI layout only, checks all of that and
then builds as the full image does from there on (:func:`wheelbarrow.ship.oci.pipeline.
ship_stored`): the base is read again, the app layer, the config and the manifest are made
again. It never makes the environment or the image's SBOM: when the environment layer or the
SBOM is not in the store, it stops before anything is written and the full image runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wheelbarrow._core.digests import small_sha256
from wheelbarrow._core.tuples import NamedTuple
from wheelbarrow.cli import install_record, noop

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn

    from wheelbarrow._core.report import Level, Reporter
    from wheelbarrow.cli.common import LazyReporter
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.lock.plan import Plan
    from wheelbarrow.ship.oci.compression import Compression
    from wheelbarrow.ship.oci.pipeline import ShippedImage
    from wheelbarrow.store.store import Store

FORMAT = 1
# Where the image goes: not what it is made of.
NOT_PLAN = frozenset({"oci", "docker_archive", "push"})


class Planned(NamedTuple):
    """A full image's plan, and what it read when it may be recorded (else None)."""

    plan: Plan
    inputs: noop.Inputs | None


def record_path(store_root: Path, args: argparse.Namespace) -> Path:
    """The record of the images of this app with these options."""
    options = {
        k: v for k, v in vars(install_record.without(args, NOT_PLAN)).items()
        if k not in noop.NOT_INPUTS
    }  # fmt: skip
    options["app"] = os.fspath(Path(args.app).absolute())
    text = json.dumps(options, sort_keys=True, default=str)
    name = small_sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return store_root / "locks" / "images" / f"{name}.json"


def planned(args: argparse.Namespace, store: Store, reporter: LazyReporter) -> Planned:
    """Plan the image (the lock must be current), watching what the plan reads."""
    from wheelbarrow.cli import common
    from wheelbarrow.wheelhouse.assemble import require_wheelhouse

    with noop.watching(os.environ) as watch:
        the_host = common.host(watch.environ)
        plan = common.plan(args, reporter, may_lock=False, the_host=the_host, environ=watch.environ)
        require_wheelhouse(store, plan)  # its reads are inputs too (the app's last build)
    inputs = noop.inputs_of(watch, install_record.without(args, NOT_PLAN))
    quiet = reporter.calls == 0 and not the_host.found and not plan.sources
    return Planned(plan=plan, inputs=inputs if quiet else None)


def remember(
    planned: Planned,
    shipped: ShippedImage,
    interpreter: Interpreter | None,
    store: Store,
    args: argparse.Namespace,
) -> None:
    """Record a full image of an OCI layout base for the next, when its plan and interpreter
    allow it."""
    from wheelbarrow._core.files import atomic_write_text

    inputs = planned.inputs
    if inputs is None or interpreter is None or not str(args.base).startswith("oci:"):
        return
    found = install_record.how_found(interpreter, args)
    if found is None:
        return
    app = shipped.app
    record = install_record.inputs_record(FORMAT, inputs, found) | {
        "app": os.fspath(app.root),
        "target": app.target.as_dict(),
        "lock_sha256": app.lock_sha256,
        "wheelhouse": app.wheelhouse,
        "env_key": app.env_key,
    }
    atomic_write_text(record_path(store.root, args), json.dumps(record) + "\n")


class Recalled(NamedTuple):
    """What a record holds, checked against what is there now."""

    app: str
    target: dict[str, str]
    lock_sha256: str
    wheelhouse: str
    env_key: str


def recall(store_root: Path, args: argparse.Namespace) -> Recalled | None:
    """The record of this image, if everything it rests on is as recorded; else None."""
    plan_args = install_record.without(args, NOT_PLAN)
    record = install_record.holding_record(record_path(store_root, args), FORMAT, args, plan_args)
    if record is None:
        return None
    try:
        return Recalled(
            app=str(record["app"]),
            target={"python": str(record["target"]["python"]),
                    "platform": str(record["target"]["platform"])},
            lock_sha256=str(record["lock_sha256"]),
            wheelhouse=str(record["wheelhouse"]),
            env_key=str(record["env_key"]),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


class NotRecorded(Exception):
    """The image needs what the record cannot give (the environment, or the lock parsed for a
    new SBOM): the full image makes it."""


def ship_recorded(
    args: argparse.Namespace, *, compression: Compression, reporter: Reporter
) -> ShippedImage | None:
    """The image of an app whose record holds, as the full image would make it; None when the
    record does not hold or the image needs more than it (the full image then runs, and
    records afresh). Nothing is written to the layout then, and nothing is reported."""
    if args.push or args.docker_archive or not args.oci or args.platform:
        return None
    if not str(args.base).startswith("oci:"):
        return None  # a registry's tag may name another image now: the full image asks it
    from wheelbarrow.cli import common

    root, _ = common.store_root(args)
    recalled = recall(root, args)
    if recalled is None:
        return None
    import contextlib

    from wheelbarrow.app.target import Target
    from wheelbarrow.ship.oci.pipeline import ImageOutputs, StoredApp, ship_stored
    from wheelbarrow.store.store import Store

    store = Store(root)
    held_back = _HeldBack()
    with contextlib.ExitStack() as held:
        held.enter_context(store.use("wheelhouse", recalled.wheelhouse))
        if not (store.wheelhouse(recalled.wheelhouse) / noop.MANIFEST).is_file():
            return None  # removed (gc) since it was recorded: the full image says so
        stored = StoredApp(
            root=Path(recalled.app),
            target=Target.parse(**recalled.target),
            lock_sha256=recalled.lock_sha256,
            wheelhouse=recalled.wheelhouse,
            env_key=recalled.env_key,
            environment=_not_recorded,
            lock=_not_recorded,
        )
        try:
            shipped = ship_stored(
                stored,
                base=args.base,
                tag=args.tag,
                outputs=ImageOutputs(oci=args.oci),
                source=args.source,
                store=store,
                reporter=held_back,
                environ=os.environ,
                home=Path.home(),
                held=held,
                compression=compression,
                sbom=args.sbom,
            )
        except NotRecorded:
            return None
    held_back.replay(reporter)
    return shipped


def _not_recorded() -> NoReturn:
    raise NotRecorded


class _HeldBack:
    """A reporter that keeps its messages until the recorded image is made: one that falls
    back to the full image says nothing, and the full image says it all."""

    def __init__(self) -> None:
        self.messages: list[tuple[Level, str]] = []

    def replay(self, reporter: Reporter) -> None:
        for level, text in self.messages:
            reporter.message(level, text)

    def message(self, level: Level, text: str) -> None:
        self.messages.append((level, text))

    def download_started(self, files: int, total_bytes: int | None) -> None:
        raise NotRecorded  # an image from the record downloads nothing

    def download_expected(self, nbytes: int) -> None:
        raise NotRecorded

    def download_advanced(self, nbytes: int) -> None:
        raise NotRecorded

    def download_file_done(self, filename: str, nbytes: int) -> None:
        raise NotRecorded

    def download_finished(self) -> None:
        raise NotRecorded

    def build_started(self, label: str, log: Path) -> None:
        raise NotRecorded

    def build_finished(self, label: str, *, ok: bool, seconds: float, result: str) -> None:
        raise NotRecorded
