"""``wheelbarrow install``: a ready-to-run environment from the wheelhouse, offline."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from wheelbarrow._core.runner import run_subprocess
from wheelbarrow._core.text import plural
from wheelbarrow.cli import common, render
from wheelbarrow.environment.clone import clean_install_leftovers, installed_env_sound
from wheelbarrow.environment.envs import InstallReport, InstallStatus, env_key, install_from_store
from wheelbarrow.environment.marker import read_marker
from wheelbarrow.wheelhouse.assemble import require_wheelhouse


def run(args: argparse.Namespace) -> int:
    """Never touches the network: the lock must be current and its wheelhouse built."""
    with contextlib.ExitStack() as held:  # the leases that keep `store gc` off what is used
        return _install(args, held)


def _install(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    start = time.monotonic()
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=False)
    house_key, manifest = store.hold(held, "wheelhouse", lambda: require_wheelhouse(store, plan))
    interpreter = common.interpreter_for(plan, args)
    key = env_key(house_key, interpreter)
    held.enter_context(store.use("env", key))
    dest = Path(args.into).absolute()
    marker = read_marker(dest)
    status: InstallStatus
    # An edited environment is installed again (with hard links, the store's copy
    # holds the same edit, and is rebuilt on the way).
    if marker is not None and marker.get("env_key") == key and installed_env_sound(dest):
        status = "up-to-date"
        # A killed install may have renamed its result into place before cleaning up.
        clean_install_leftovers(dest)
    else:
        common.check_wheels_run_on(interpreter, manifest)
        made = install_from_store(
            store,
            house_key,
            manifest,
            interpreter,
            dest=dest,
            mode=args.link_mode,
            runner=run_subprocess,
            reporter=reporter,
        )
        status = "built-and-cloned" if made else "cloned"
    report = InstallReport(
        path=dest,
        env_key=key,
        status=status,
        interpreter=interpreter,
        packages=len(plan.artefacts),
        seconds=time.monotonic() - start,
    )
    if args.json:
        render.emit_json(report.as_json())
    elif not args.quiet:
        verb = {
            "up-to-date": "is up to date",
            "cloned": "installed from the store",
            "built-and-cloned": "built and installed",
        }[status]
        render.out(
            f"Environment {dest} {verb}: {plural(report.packages, 'package')}, Python "
            f"{interpreter.version}, in {report.seconds:.2f}s"
        )
    return 0
