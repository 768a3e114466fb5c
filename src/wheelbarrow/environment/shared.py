"""The shared layout: an environment of its own that runs on the stored, read-only package tree.

``install --into DIR`` (the default ``--link-mode shared``) writes a small virtual
environment whose size does not depend on the packages:

- ``pyvenv.cfg`` and ``bin/`` (the interpreter's links, the console scripts, ``activate``):
  copies of the stored environment's, pointed at DIR, each checked against the stored
  environment's stamp as it is read;
- ``lib/pythonX.Y/site-packages/``: empty, writable and first on ``sys.path``, holding one
  file, ``_wheelbarrow_shared.pth``, which adds the stored environment's ``site-packages``
  after it with ``site.addsitedir`` (so the ``.pth`` files of the shared packages work as
  they do in the stored environment);
- its marker and its own seal.

``pip install`` in DIR writes to DIR's own ``site-packages``, where a newer version shadows
the shared one; ``pip uninstall`` of a shared package finds it outside the environment and
removes nothing (pip says so). Neither can change the store or another environment: DIR
holds no link to a stored file. The stored tree is made read-only and stamped first
(:mod:`wheelbarrow.environment.stamp`), and the store records DIR as using it
(:mod:`wheelbarrow.store.dependents`) before DIR is renamed into place, so ``store gc``
keeps it while DIR is there.

Only the standard library and light modules are imported at the top: a warm install runs
this with nothing else loaded.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from wheelbarrow._core.digests import small_sha256
from wheelbarrow._core.errors import EnvironmentEditedError
from wheelbarrow._core.scratch import scratch
from wheelbarrow.environment.marker import MARKER
from wheelbarrow.environment.sealfile import SEAL, seal_bytes
from wheelbarrow.environment.stamp import inside
from wheelbarrow.environment.target import check_target, clean_install_leftovers, scratch_prefix
from wheelbarrow.store.dependents import SHARED_LAYOUT, register

# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from wheelbarrow._core.report import Reporter
    from wheelbarrow._core.runner import Runner
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.store.store import Store

LAYOUT = SHARED_LAYOUT
PTH = "_wheelbarrow_shared.pth"

_File = tuple[str, int, int, int, str]  # path, size, mtime (ns), inode, sha256


def site_of(version: str) -> str:
    """The ``site-packages`` of an environment of Python ``version`` (3.12 or 3.12.4)."""
    short = ".".join(version.split(".")[:2])
    return f"lib/python{short}/site-packages"


def shared_marker(
    *, env_key: str, wheelhouse: str, python: str, python_version: str, stored: Path, store: Path
) -> dict[str, str]:
    """The marker of an environment sharing ``stored`` (what ``install`` and ``gc`` read)."""
    return {
        "env_key": env_key,
        "wheelhouse": wheelhouse,
        "python": python,
        "python_version": python_version,
        "layout": LAYOUT,
        "shares": os.fspath(stored),
        "store": os.fspath(store),
    }


def link_shared(
    stored: Path,
    dest: Path,
    stamp: Mapping[str, Any],
    *,
    marker: Mapping[str, str],
    store_root: Path,
) -> None:
    """Make ``dest`` an environment that runs on the stored environment ``stored``.

    ``stamp`` is the stored environment's current stamp. ``dest`` is built beside itself and
    renamed into place (a previous wheelbarrow environment there is replaced, unless it
    holds files wheelbarrow did not put there). Raises
    :class:`~wheelbarrow._core.errors.EnvironmentEditedError` when a file it copies differs
    from the stamp.
    """
    dest = dest.absolute()
    check_target(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_install_leftovers(dest)
    with scratch(dest.parent, scratch_prefix(dest)) as holder:
        work = holder / "env"
        files = _lay_out(stored, work, dest, stamp)
        files.append(_write(work, MARKER, (json.dumps(dict(marker)) + "\n").encode(), 0o644))
        links = dict(stamp["links"])
        (work / SEAL).write_bytes(seal_bytes(files, links))
        # Recorded before it is in place: gc never sees a shared environment it does not know.
        register(store_root, marker["env_key"], dest)
        if dest.exists():
            dest.rename(holder / "old")  # removed with the scratch entry
        work.rename(dest)


def _lay_out(stored: Path, work: Path, dest: Path, stamp: Mapping[str, Any]) -> list[_File]:
    """Write the environment's own files into ``work``; returns them for its seal."""
    site = str(stamp["site"])
    work.mkdir()
    for rel, _, _ in stamp["dirs"]:  # sorted: parents first
        if not inside(rel, site):
            (work / rel).mkdir()
    (work / site).mkdir(parents=True)
    for rel, target in stamp["links"].items():
        (work / rel).symlink_to(target)
    old, new = os.fsencode(stored), os.fsencode(dest)
    files = []
    for rel, sha256 in stamp["own"].items():
        source = stored / rel
        data = source.read_bytes()
        if small_sha256(data).hexdigest() != sha256:
            raise EnvironmentEditedError(
                f"{source}: changed after it was sealed",
                hint="run `wheelbarrow verify --repair`, then install again",
            )
        if rel == "pyvenv.cfg" or rel.startswith("bin/"):
            data = data.replace(old, new)  # as relocate() does for clones
        files.append(_write(work, rel, data, stat.S_IMODE(source.stat().st_mode) | stat.S_IWUSR))
    line = f"import site; site.addsitedir({os.fspath(stored / site)!r})\n"
    files.append(_write(work, f"{site}/{PTH}", line.encode(), 0o644))
    return files


def _write(root: Path, rel: str, data: bytes, mode: int) -> _File:
    fd = os.open(root / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)  # whatever the umask
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return (rel, st.st_size, st.st_mtime_ns, st.st_ino, small_sha256(data).hexdigest())


def share_from_store(
    store: Store,
    house_key: str,
    manifest: Mapping[str, Any],
    interpreter: Interpreter,
    *,
    dest: Path,
    runner: Runner,
    reporter: Reporter,
) -> bool:
    """Install ``dest`` in the shared layout from the store's environment for the wheelhouse,
    making, checking and stamping that first as needed; True when it was made now.

    The caller holds the stored environment's lease. A stored environment that fails its
    seal is set aside and made again in its place (by
    :func:`~wheelbarrow.environment.envs.ensure_wheelhouse_env`, which names what changed):
    every environment sharing it runs on the new one from then on.
    """
    from wheelbarrow.environment.envs import ensure_wheelhouse_env, env_key, sealed_env_exists
    from wheelbarrow.environment.stamp import current, prepare

    key = env_key(house_key, interpreter)
    stored = store.env(key)
    site = site_of(interpreter.version)
    made = False
    stamp = current(stored)
    if stamp is None:
        if not sealed_env_exists(stored):
            made = ensure_wheelhouse_env(
                store, house_key, manifest, interpreter, runner=runner, reporter=reporter
            )[1].made
        try:
            stamp = prepare(stored, site)
        except EnvironmentEditedError:
            made = ensure_wheelhouse_env(
                store, house_key, manifest, interpreter, runner=runner, reporter=reporter
            )[1].made
            stamp = prepare(stored, site)
    marker = shared_marker(
        env_key=key,
        wheelhouse=house_key,
        python=str(interpreter.executable),
        python_version=interpreter.version,
        stored=stored,
        store=store.root,
    )
    try:
        link_shared(stored, dest, stamp, marker=marker, store_root=store.root)
    except EnvironmentEditedError:
        # A copied file differs though the stamp held: check in full, make again, once.
        made = ensure_wheelhouse_env(
            store, house_key, manifest, interpreter, runner=runner, reporter=reporter
        )[1].made
        link_shared(stored, dest, prepare(stored, site), marker=marker, store_root=store.root)
    return made
