"""The warm ``install``: answered from a record of what the last full install of the app read.

A full install plans (the app, its lock, the store's record of its last build, the
wheelhouse's manifest), finds the interpreter and checks that it accepts the wheels. It then
leaves ``locks/installs/<hash>.json`` in the store, named by the app's directory and the
options that choose the plan: the plan's inputs as cli/noop.py sees them (the files it
opened, by their bytes; the directories it listed and the app's own entries; the variables it
looked up; this Python; wheelbarrow's and ``packaging``'s modules, by size and time), the
wheelhouse and environment it chose, how the interpreter was found, with the ``lstat`` of
each file that finding rests on, and this machine's glibc and architecture (what the wheel
tags the interpreter accepts rest on besides it).

The next install with the same options hashes and lists the same inputs, and ``lstat``s the
interpreter instead of running it; when all is as recorded, and the stored environment's
stamp is current (environment/stamp.py), it writes the environment without planning. Only
the standard library and light modules are imported on that path. A plan that reported
anything, ran a process, wrote a file, asked for this machine's platform or has sources to
build, or an interpreter found by anything but ``--python-executable``, the running
interpreter or ``python3.X`` on PATH, is not recorded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from wheelbarrow._core.digests import small_sha256
from wheelbarrow._core.tuples import NamedTuple
from wheelbarrow.cli import noop

# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from wheelbarrow.cli.common import LazyReporter
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.environment.outcome import InstallReport, InstallStatus
    from wheelbarrow.lock.plan import Plan
    from wheelbarrow.store.store import Store

FORMAT = 1
# Options that do not choose the plan: where the environment goes, and how it is laid out.
NOT_PLAN = frozenset({"into", "link_mode"})


class Planned(NamedTuple):
    """A full install's plan, and what it read when it may be recorded (else None)."""

    plan: Plan
    inputs: noop.Inputs | None


def _plan_args(args: argparse.Namespace) -> argparse.Namespace:
    return without(args, NOT_PLAN)


def without(args: argparse.Namespace, names: frozenset[str]) -> argparse.Namespace:
    """``args`` but ``names``: the options that choose the plan."""
    plan = type(args)()  # argparse's Namespace, or cli/quickparse.py's SimpleNamespace
    for name, value in vars(args).items():
        if name not in names:
            setattr(plan, name, value)
    return plan


def record_path(store_root: Path, args: argparse.Namespace) -> Path:
    """The record of the installs of this app with these options."""
    options = {k: v for k, v in vars(_plan_args(args)).items() if k not in noop.NOT_INPUTS}
    options["app"] = os.fspath(Path(args.app).absolute())
    text = json.dumps(options, sort_keys=True, default=str)
    name = small_sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return store_root / "locks" / "installs" / f"{name}.json"


def planned(args: argparse.Namespace, store: Store, reporter: LazyReporter) -> Planned:
    """Plan the install (the lock must be current), watching what the plan reads."""
    from wheelbarrow.cli import common
    from wheelbarrow.wheelhouse.assemble import require_wheelhouse

    plan_args = _plan_args(args)
    with noop.watching(os.environ) as watch:
        the_host = common.host(watch.environ)
        plan = common.plan(args, reporter, may_lock=False, the_host=the_host, environ=watch.environ)
        require_wheelhouse(store, plan)  # its reads are inputs too (the app's last build)
    inputs = noop.inputs_of(watch, plan_args)
    quiet = reporter.calls == 0 and not the_host.found and not plan.sources
    return Planned(plan=plan, inputs=inputs if quiet else None)


def remember(
    planned: Planned,
    store: Store,
    house_key: str,
    interpreter: Interpreter,
    args: argparse.Namespace,
) -> None:
    """Record a full install for the next, when its plan and interpreter allow it."""
    from wheelbarrow._core.files import atomic_write_text
    from wheelbarrow.environment.envs import env_key

    inputs = planned.inputs
    found = how_found(interpreter, args)
    if inputs is None or found is None:
        return
    record = inputs_record(FORMAT, inputs, found) | {
        "wheelhouse": house_key,
        "env_key": env_key(house_key, interpreter),
        "packages": len(planned.plan.artefacts),
    }
    atomic_write_text(record_path(store.root, args), json.dumps(record) + "\n")


def inputs_record(fmt: int, inputs: noop.Inputs, found: dict[str, Any]) -> dict[str, Any]:
    """A record's part that says what the plan read and how the interpreter was found (from
    :func:`how_found`), in the record format ``fmt``; :func:`inputs_hold` checks it."""
    return {
        "format": fmt,
        "files": list(inputs.files),
        "dirs": list(inputs.dirs),
        "env": list(inputs.env),
        "code": list(inputs.code),
        "digest": inputs.digest,
        "interpreter": found,
        "host": host_facts(),
    }


def inputs_hold(
    record: dict[str, Any], fmt: int, args: argparse.Namespace, plan_args: argparse.Namespace
) -> bool:
    """Whether an :func:`inputs_record` of format ``fmt`` holds now: this machine, the same
    interpreter found the same way, and what the plan read (with ``plan_args``) unchanged.
    Raises KeyError, TypeError or ValueError for a record of another shape."""
    if record["format"] != fmt or record["host"] != host_facts():
        return False
    if not interpreter_holds(record["interpreter"], args):
        return False
    files, dirs, env, code = (
        tuple(str(x) for x in record[k]) for k in ("files", "dirs", "env", "code")
    )
    now = noop._digest(plan_args, files=files, dirs=dirs, env=env, code=code)
    return bool(now == record["digest"])


def how_found(interpreter: Interpreter, args: argparse.Namespace) -> dict[str, Any] | None:
    """How the interpreter was found, with what proves the same search finds it again."""
    executable = os.fspath(interpreter.executable)
    found: dict[str, Any] = {"executable": executable, "version": interpreter.version}
    given = getattr(args, "python_executable", None)
    if given:
        return found | {"how": "given", "stats": _stats([given, executable])}
    if executable == _running()[0] and interpreter.version == _running()[1]:
        return found | {"how": "running"}
    name = f"python{interpreter.short}"
    on_path = _which(name, os.environ.get("PATH", os.defpath))
    if on_path is None or os.path.realpath(on_path) != executable:
        return None  # pyenv's versions or uv's: their search runs processes
    stats = _stats([on_path, executable])
    return found | {"how": "path", "name": name, "which": on_path, "stats": stats}


def host_facts() -> list[str | None]:
    """What the wheel tags the interpreter accepts rest on besides it: glibc and the machine."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        libc = None
    return [libc, os.uname().machine]


def _running() -> tuple[str, str]:
    """The running interpreter as common.running_interpreter gives it: base executable, version."""
    base = getattr(sys, "_base_executable", sys.executable)
    return os.path.realpath(base), ".".join(map(str, sys.version_info[:3]))


def _which(name: str, path: str) -> str | None:
    """shutil.which, for one name, without importing shutil."""
    for directory in path.split(os.pathsep):
        candidate = Path(directory or ".", name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return os.fspath(candidate)
    return None


def _stats(paths: list[str]) -> dict[str, list[int] | None]:
    """Each path's and its target's size, mtime, inode and ctime: any change counts."""
    found: dict[str, list[int] | None] = {}
    for path in {*paths, *(os.path.realpath(p) for p in paths)}:
        try:
            st = Path(path).stat()
        except OSError:
            found[path] = None
            continue
        found[path] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    return found


class Recalled(NamedTuple):
    """What a record holds, checked against what is there now."""

    wheelhouse: str
    env_key: str
    packages: int
    python: str
    python_version: str


def holding_record(
    path: Path, fmt: int, args: argparse.Namespace, plan_args: argparse.Namespace
) -> dict[str, Any] | None:
    """The record at ``path`` if it is an :func:`inputs_record` of format ``fmt`` that holds
    now (see :func:`inputs_hold`); None when it is missing, unreadable or stale."""
    try:
        record = json.loads(path.read_bytes())
        return (
            record
            if isinstance(record, dict) and inputs_hold(record, fmt, args, plan_args)
            else None
        )
    except (OSError, KeyError, TypeError, ValueError):
        return None


def recall(store_root: Path, args: argparse.Namespace) -> Recalled | None:
    """The record of this install, if everything it rests on is as recorded; else None."""
    record = holding_record(record_path(store_root, args), FORMAT, args, _plan_args(args))
    if record is None:
        return None
    try:
        found = record["interpreter"]
        return Recalled(
            wheelhouse=str(record["wheelhouse"]),
            env_key=str(record["env_key"]),
            packages=int(record["packages"]),
            python=str(found["executable"]),
            python_version=str(found["version"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def interpreter_holds(found: dict[str, Any], args: argparse.Namespace) -> bool:
    """Whether the search that found the recorded interpreter would find it again now."""
    how, executable, version = found.get("how"), str(found["executable"]), str(found["version"])
    given = getattr(args, "python_executable", None)
    if how == "running":
        return not given and _running() == (executable, version)
    if how == "given":
        return bool(given) and _stats([str(given), executable]) == found["stats"]
    if how != "path" or given:
        return False
    # Nothing else decides it: the running Python is not of this version (it would have been
    # chosen), and PATH finds the same file under this name, unchanged.
    if _running()[1].rsplit(".", 1)[0] == version.rsplit(".", 1)[0]:
        return False
    on_path = _which(str(found["name"]), os.environ.get("PATH", os.defpath))
    return (
        on_path is not None
        and on_path == found["which"]
        and (_stats([on_path, executable]) == found["stats"])
    )


def warm_install(args: argparse.Namespace, start: float) -> InstallReport | None:
    """Install from the record, as the full install would; None when the record does not hold
    (the full install then runs, and records afresh)."""
    from wheelbarrow.cli import common

    root, _ = common.store_root(args)
    recalled = recall(root, args)
    if recalled is None:
        return None
    import contextlib

    from wheelbarrow.environment.outcome import InstallReport
    from wheelbarrow.store.store import Store

    store = Store(root)
    dest = Path(args.into).absolute()
    with contextlib.ExitStack() as held:
        held.enter_context(store.use("wheelhouse", recalled.wheelhouse))
        held.enter_context(store.use("env", recalled.env_key))
        if not (store.wheelhouse(recalled.wheelhouse) / noop.MANIFEST).is_file():
            return None  # removed (gc) since it was recorded: the full install says so
        status = _share(store, recalled, dest)
    if status is None:
        return None
    return InstallReport(
        path=os.fspath(dest),
        env_key=recalled.env_key,
        status=status,
        layout="shared",
        python=recalled.python,
        python_version=recalled.python_version,
        packages=recalled.packages,
        seconds=time.monotonic() - start,
    )


def _share(store: Store, recalled: Recalled, dest: Path) -> InstallStatus | None:
    """Lay ``dest`` out on the recorded stored environment if its stamp holds (the caller
    holds the leases); None when the full install must look at it."""
    from wheelbarrow._core.errors import EnvironmentEditedError
    from wheelbarrow.environment.marker import read_marker
    from wheelbarrow.environment.shared import LAYOUT, link_shared, shared_marker
    from wheelbarrow.environment.stamp import current

    stored = store.env(recalled.env_key)
    stamp = current(stored)
    if stamp is None:
        return None  # the full install checks it in full, or makes it
    marker = read_marker(dest)
    if (
        marker is not None
        and marker.get("env_key") == recalled.env_key
        and marker.get("layout") == LAYOUT
    ):
        from wheelbarrow.environment.target import clean_install_leftovers, installed_env_sound

        if installed_env_sound(dest):
            clean_install_leftovers(dest)
            return "up-to-date"
    wanted = shared_marker(
        env_key=recalled.env_key,
        wheelhouse=recalled.wheelhouse,
        python=recalled.python,
        python_version=recalled.python_version,
        stored=stored,
        store=store.root,
    )
    try:
        link_shared(stored, dest, stamp, marker=wanted, store_root=store.root)
    except EnvironmentEditedError:
        return None  # the full install checks the stored environment in full
    return "cloned"
