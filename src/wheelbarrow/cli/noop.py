"""The unchanged app's ``build``, answered from a record of what its last plan read.

Planning parses the requirements and the lock with ``packaging``, whose import alone takes
most of the 0.1 s a no-op build may cost. So a build whose plan depends only on what it
read leaves, in the app's record in the store, the list of those inputs and one digest of
them: the files the plan opened (their bytes), the directories it listed and the app
directory's own entries (their names: a file added or removed there counts), the
environment variables it looked up, the command line, this Python, and wheelbarrow's and
``packaging``'s modules (their sizes and times: an upgrade counts). The next build reads,
hashes and lists the same inputs, parsing nothing, and when the digest is the same and the
wheelhouse is still in the store it answers as the full build would; anything else takes
the full build, which records afresh.

What the plan reads is seen through Python's audit hooks (PEP 578: ``open``, ``os.listdir``,
``os.scandir``) on the planning thread, leaving out the files imports read. A plan that
started a process, wrote a file, reported anything, locked, asked for this machine's
platform or uv, or has sources to build is not recorded: its outcome rests on more than
what it read. Nor is one during which something else changed what it read: each path's
stat when first read must be its stat after the digest, or the record would hold bytes
the plan never saw. Only the standard library is imported here before the shortcut is known.
"""

# Paths stay str and go through os.*: the audit hook sees every file the process opens, and
# abspath, unlike Path.resolve, follows no links (the path as opened is what was read).
# ruff: noqa: PTH100, PTH116

from __future__ import annotations

import _thread
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from stat import S_ISDIR, S_ISREG

from wheelbarrow import __version__
from wheelbarrow._core.digests import small_sha256
from wheelbarrow._core.tuples import NamedTuple

# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

FORMAT = 1
RECORD_KEY = "noop"  # the app record's field (the record itself is the store's apps/<hash>.json)
MANIFEST = "wheelhouse.json"  # wheelhouse.assemble's, which imports the build machinery
# What does not change the answer, only how it is shown (or how many downloads run at once).
NOT_INPUTS = frozenset({"json", "quiet", "jobs"})
# Settings that turn a remote store or a cluster on; a record is made only with neither.
ALWAYS_READ = ("WHEELBARROW_REMOTE", "WHEELBARROW_PUSH", "WHEELBARROW_CLUSTER")
# Whose modules' sizes and times count: an upgrade of either may plan differently.
CODE = ("wheelbarrow", "packaging")
SPAWNS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"})
SPAWNS |= frozenset({"os.fork", "os.forkpty"})
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers which variables were looked up (``*``: all of them)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._environ[name]

    def __iter__(self) -> Iterator[str]:
        self.read.add("*")
        return iter(self._environ)

    def __len__(self) -> int:
        self.read.add("*")
        return len(self._environ)


# Plain classes, not dataclasses: the dataclasses module alone is a tenth of the shortcut.
class Watch:
    """What the planning thread read, and whether it did anything that is not reading."""

    __slots__ = ("acted", "dirs", "environ", "files", "probed", "seen", "seen_dirs", "thread")

    def __init__(self, thread: int, environ: RecordingEnviron) -> None:
        self.thread = thread
        self.environ = environ
        self.files: set[str] = set()  # opened
        self.dirs: set[str] = set()  # listed
        self.probed: set[str] = set()  # looked up (os.stat, os.lstat): is it there, and what
        self.acted: list[str] = []  # processes started, files written, what cannot be followed
        self.seen: dict[str, Identity] = {}  # each path's identity when the plan first read it
        self.seen_dirs: dict[str, Identity] = {}  # and each listed directory's


Identity = tuple[int, ...] | str | None  # of what is at a path: its stat, an error, or nothing
_os_stat = os.stat  # as imported: the probes below wrap os.stat while a plan is watched


def _identity(path: str, *, listed: bool = False) -> Identity:
    """What is at ``path`` now, by the stat of what it names: any write changes it (its
    ctime), and so does a file put in its place or a link pointed elsewhere. A directory
    opened or looked up counts only as one (so in the digest): its entries count where it
    is ``listed``."""
    try:
        st = _os_stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"error {exc.errno}"
    if S_ISDIR(st.st_mode) and not listed:
        return "directory"  # /tmp or the store, looked up on the way: not what it holds
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _seen(watch: Watch, path: str, *, listed: bool = False) -> None:
    seen = watch.seen_dirs if listed else watch.seen
    if path not in seen:
        seen[path] = _identity(path, listed=listed)


_active: dict[int, Watch] = {}  # by thread
_lock = _thread.allocate_lock()
_hooked = False
_stats: tuple[Callable[..., os.stat_result], Callable[..., os.stat_result]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    watch = _active.get(_thread.get_ident()) if _active else None
    if watch is None:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return  # a descriptor opened before, by a path seen then
        if any(c in str(mode) for c in "wax+") or int(flags or 0) & _WRITES:
            watch.acted.append(f"wrote {os.fsdecode(path)}")
        opened = os.path.abspath(os.fsdecode(path))
        watch.files.add(opened)
        _seen(watch, opened)
    elif event in ("os.listdir", "os.scandir"):
        path = args[0] if args else None
        if isinstance(path, int):
            watch.acted.append("listed a directory by its descriptor")
        else:
            listed = os.path.abspath(os.fsdecode(path if path is not None else "."))
            watch.dirs.add(listed)
            _seen(watch, listed, listed=True)
    elif event in SPAWNS:
        watch.acted.append(f"ran {event}")


def _probing(original: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
    """``os.stat`` or ``os.lstat``, also noting the path for the watch of this thread."""

    def probe(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        watch = _active.get(_thread.get_ident()) if _active else None
        if watch is not None:
            if isinstance(path, int) or kwargs.get("dir_fd") is not None or args:
                watch.acted.append("looked a file up by a descriptor")
            else:
                probed = os.path.abspath(os.fsdecode(path))
                watch.probed.add(probed)
                _seen(watch, probed)
        return original(path, *args, **kwargs)

    return probe


@contextlib.contextmanager
def watching(environ: Mapping[str, str]) -> Iterator[Watch]:
    """Record what this thread reads until the block ends.

    Files opened and directories listed come from an audit hook, which stays for the
    process's life (one, idle between watches); files looked up go through ``os.stat``
    and ``os.lstat``, wrapped while any thread watches.
    """
    global _hooked, _stats
    ident = _thread.get_ident()
    watch = Watch(ident, RecordingEnviron(environ))
    with _lock:
        if not _hooked:
            sys.addaudithook(_audit)
            _hooked = True
        if _stats is None:
            _stats = (os.stat, os.lstat)
            os.stat, os.lstat = _probing(os.stat), _probing(os.lstat)
        previous = _active.get(ident)
        _active[ident] = watch
    try:
        yield watch
    finally:
        with _lock:
            if previous is not None:
                _active[ident] = previous
            else:
                del _active[ident]
            if not _active and _stats is not None:
                os.stat, os.lstat = _stats
                _stats = None


class Inputs(NamedTuple):
    """What a plan read, and the digest of it when it was planned: the files opened or looked
    up (a file only looked up counts by its content too: whether it is there, and what), the
    directories listed, the variables read, and the modules of the code."""

    files: tuple[str, ...]
    dirs: tuple[str, ...]
    env: tuple[str, ...]
    code: tuple[str, ...]
    digest: str


def inputs_of(watch: Watch, args: argparse.Namespace) -> Inputs | None:
    """The inputs a finished watch saw, digested now (right after the plan, before anything
    can change them); None when the plan did more than read."""
    if watch.acted:
        return None
    modules = list(sys.modules.items())
    imported = {
        os.path.abspath(p)
        for _, m in modules
        for p in (getattr(m, "__file__", None), getattr(m, "__cached__", None))
        if isinstance(p, str)
    }
    searched = {os.path.abspath(p or ".") for p in sys.path}
    for _, m in modules:
        searched.update(os.path.abspath(p) for p in getattr(m, "__path__", None) or ())
    code = tuple(
        sorted(
            os.path.abspath(path)
            for name, m in modules
            if name.split(".")[0] in CODE and isinstance(path := getattr(m, "__file__", None), str)
        )
    )
    files = tuple(sorted((watch.files | watch.probed) - imported - searched))
    dirs = tuple(sorted((watch.dirs - searched) | {str(_app_root(args))}))
    env = tuple(sorted(watch.environ.read | set(ALWAYS_READ)))
    digest = _digest(args, files=files, dirs=dirs, env=env, code=code)
    # A file another process saved (or made, or removed) after the plan read it and before
    # the digest would be recorded by bytes the plan never saw: a later build would answer
    # "up to date" with the old plan's key. So what the plan read must be as it was then.
    if any(_identity(p) != watch.seen[p] for p in files if p in watch.seen) or any(
        _identity(p, listed=True) != watch.seen_dirs[p] for p in dirs if p in watch.seen_dirs
    ):
        return None
    return Inputs(files=files, dirs=dirs, env=env, code=code, digest=digest)


def remember(
    record: Path,
    inputs: Inputs,
    *,
    key: str,
    packages: int,
    target: Mapping[str, object],
) -> None:
    """Add the inputs of the build of ``key`` to the app's record, if the record names ``key``
    (else another build finished since, and its record stays as it is)."""
    from wheelbarrow._core.files import atomic_write_text

    data = _read_json(record)
    if data is None or data.get("key") != key:
        return
    data[RECORD_KEY] = {
        "format": FORMAT,
        "key": key,
        "packages": packages,
        "target": dict(target),
        "files": list(inputs.files),
        "dirs": list(inputs.dirs),
        "env": list(inputs.env),
        "code": list(inputs.code),
        "digest": inputs.digest,
    }
    atomic_write_text(record, json.dumps(data) + "\n")


class Answer(NamedTuple):
    """An up-to-date build, as the record tells it."""

    key: str
    packages: int
    target: dict[str, object]
    wheelhouse: Path
    seconds: float


def answer(args: argparse.Namespace, store_root: Path, say: Callable[[Answer], None]) -> bool:
    """Say ``build``'s answer for an app whose inputs are those recorded and whose wheelhouse
    is in the store (under its lease, as the full build holds it); False when it cannot."""
    start = time.monotonic()
    if any(getattr(args, name, None) for name in ("output", "remote", "push", "cluster")):
        return False
    if not store_root.is_dir():
        return False
    from wheelbarrow.store.store import Store

    store = Store(store_root)
    found = _recorded(store.app_state(_app_root(args)))
    if found is None:
        return False
    key, noop = found
    lists = [noop.get(kind) for kind in ("files", "dirs", "env", "code")]
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists):
        return False
    files, dirs, env, code = (tuple(v) for v in lists)  # type: ignore[arg-type]
    if _digest(args, files=files, dirs=dirs, env=env, code=code) != noop.get("digest"):
        return False
    with store.use("wheelhouse", key):
        if _read_json(store.wheelhouse(key) / MANIFEST) is None:
            return False  # gone (gc): the full build makes it again
        store.clean_stale_tmp()  # as the full build does, also when up to date
        say(
            Answer(
                key=key,
                packages=int(noop.get("packages", 0)),
                target=dict(noop.get("target") or {}),
                wheelhouse=store.wheelhouse(key),
                seconds=time.monotonic() - start,
            )
        )
    return True


def _recorded(record: Path) -> tuple[str, dict[str, Any]] | None:
    """The key and the inputs the app's record holds, if it holds inputs for its key."""
    data = _read_json(record)
    noop = data.get(RECORD_KEY) if data is not None else None
    if not isinstance(noop, dict) or noop.get("format") != FORMAT:
        return None
    key = noop.get("key")
    if not isinstance(key, str) or data is None or data.get("key") != key:
        return None
    return key, noop


def _app_root(args: argparse.Namespace) -> Path:
    return Path(args.app).absolute()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _digest(
    args: argparse.Namespace,
    *,
    files: Sequence[str],
    dirs: Sequence[str],
    env: Sequence[str],
    code: Sequence[str],
) -> str:
    """One sha256 of everything the plan's outcome rests on, as it is now."""
    environ = os.environ
    options = {k: v for k, v in vars(args).items() if k not in NOT_INPUTS}
    options["app"] = str(_app_root(args))
    content = {
        "format": FORMAT,
        "wheelbarrow": __version__,
        "python": [sys.version, sys.executable],
        "options": options,
        "files": {p: _file_digest(p) for p in files},
        "dirs": {p: _listing(p) for p in dirs},
        "env": dict(environ) if "*" in env else {n: environ.get(n) for n in env},
        "code": {p: _stamp(p) for p in code},
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return small_sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _file_digest(path: str) -> str | None:
    """The sha256 of the file's bytes; None when nothing is there; for a directory, anything
    else that is not a file or what cannot be read, a word for it, unlike any digest.

    Opened without blocking and checked to be a file before it is read: a path only looked
    up may be a directory or a pipe.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"error {exc.errno}"
    try:
        mode = os.fstat(fd).st_mode
        if not S_ISREG(mode):
            return "directory" if S_ISDIR(mode) else "not a file"
        digest = small_sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    except OSError as exc:
        return f"error {exc.errno}"
    finally:
        os.close(fd)


def _listing(path: str) -> list[list[str]] | str | None:
    try:
        with os.scandir(path) as entries:
            return sorted([e.name, "d" if e.is_dir() else "f"] for e in entries)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"error {exc.errno}"


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]
