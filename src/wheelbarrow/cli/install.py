"""``wheelbarrow install``: a ready-to-run environment from the wheelhouse, offline.

The default layout (``--link-mode shared``) writes a small environment that runs on the
stored one (environment/shared.py), in the same time whatever the number of packages. The
plan that finds the wheelhouse parses the requirements and the lock with ``packaging``, and
finding the interpreter may run it; so a full install leaves a record of what its plan read
(cli/noop.py's inputs: files, directories, variables, code) and of how it found the
interpreter, and the next install of the same app with the same options checks that record
instead of planning (:mod:`wheelbarrow.cli.install_record`). Anything else takes the full
path, which records afresh.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from wheelbarrow.environment.outcome import InstallReport, InstallStatus


def run(args: argparse.Namespace) -> int:
    """Never touches the network: the lock must be current and its wheelhouse built."""
    start = time.monotonic()
    if args.link_mode == "shared":
        from wheelbarrow.cli import install_record

        warm = install_record.warm_install(args, start)
        if warm is not None:
            _say(args, warm)
            return 0
    with contextlib.ExitStack() as held:  # the leases that keep `store gc` off what is used
        _say(args, _install(args, held, start))
    return 0


def _say(args: argparse.Namespace, report: InstallReport) -> None:
    # render.emit_json and render.out, without importing the renderer (and its reporter, and
    # typing) for one report.
    from wheelbarrow._core.redact import redact, redact_data

    if args.json:
        import json

        sys.stdout.write(json.dumps(redact_data(report.as_json()), indent=2) + "\n")
    elif not args.quiet:
        sys.stdout.write(redact(report.line()) + "\n")
        sys.stdout.flush()


def _install(args: argparse.Namespace, held: contextlib.ExitStack, start: float) -> InstallReport:
    from wheelbarrow._core.runner import run_subprocess
    from wheelbarrow.cli import common, install_record, render
    from wheelbarrow.environment.envs import env_key, install_from_store
    from wheelbarrow.environment.outcome import InstallReport
    from wheelbarrow.environment.shared import share_from_store
    from wheelbarrow.environment.target import clean_install_leftovers
    from wheelbarrow.wheelhouse.assemble import require_wheelhouse

    store = common.store(args)
    reporter = common.LazyReporter(
        lambda: render.make_reporter(quiet=args.quiet, json_mode=args.json)
    )
    planned = install_record.planned(args, store, reporter)
    plan = planned.plan
    house_key, manifest = store.hold(held, "wheelhouse", lambda: require_wheelhouse(store, plan))
    interpreter = common.interpreter_for(plan, args)
    key = env_key(house_key, interpreter)
    held.enter_context(store.use("env", key))
    dest = Path(args.into).absolute()
    shared = args.link_mode == "shared"
    status: InstallStatus
    if _up_to_date(dest, key, store.env(key), shared=shared):
        status = "up-to-date"
        # A killed install may have renamed its result into place before cleaning up.
        clean_install_leftovers(dest)
    else:
        common.check_wheels_run_on(interpreter, manifest)
        if shared:
            made = share_from_store(
                store,
                house_key,
                manifest,
                interpreter,
                dest=dest,
                runner=run_subprocess,
                reporter=reporter,
            )
        else:
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
    install_record.remember(planned, store, house_key, interpreter, args)
    return InstallReport(
        path=os.fspath(dest),
        env_key=key,
        status=status,
        layout=args.link_mode,
        python=str(interpreter.executable),
        python_version=interpreter.version,
        packages=len(plan.artefacts),
        seconds=time.monotonic() - start,
    )


def _up_to_date(dest: Path, key: str, stored: Path, *, shared: bool) -> bool:
    """Whether ``dest`` is the environment of ``key`` in the layout asked for, as installed.

    An edited environment is installed again (with hard links, the store's copy holds the
    same edit, and is rebuilt on the way); a shared one also needs its stored environment's
    stamp to hold.
    """
    from wheelbarrow.environment.marker import read_marker
    from wheelbarrow.environment.shared import LAYOUT
    from wheelbarrow.environment.stamp import current
    from wheelbarrow.environment.target import installed_env_sound

    marker = read_marker(dest)
    if marker is None or marker.get("env_key") != key or (marker.get("layout") == LAYOUT) != shared:
        return False
    return installed_env_sound(dest) and (not shared or current(stored) is not None)
