"""Locking: resolve an app's requirements for a target with uv and write pylock.toml."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from wheelbarrow._core.digests import file_sha256, json_sha256
from wheelbarrow._core.errors import LockError
from wheelbarrow._core.redact import redact, strip_credentials
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import plural
from wheelbarrow.app.credentials import split_userinfo
from wheelbarrow.app.requirements import IndexOptions, RequirementLine, Requirements
from wheelbarrow.app.target import Target
from wheelbarrow.lock.lockfile import wheelbarrow_table

LOCK_HEADER = "# Written by `wheelbarrow lock`: edit the requirements and lock again.\n"
TOOL_TABLE = "tool.wheelbarrow"
SCRATCH_PREFIX = "wheelbarrow-lock-"


@dataclass(frozen=True, slots=True, kw_only=True)
class LockRequest:
    """Everything a lock depends on: the requirements, the target and the indexes."""

    requirements: Requirements
    target: Target
    index: IndexOptions
    # The app's own uv indexes ([[tool.uv.index]], uv.toml), as ``name=url`` without
    # credentials: uv resolves against them, so a change must relock.
    uv_indexes: tuple[str, ...] = ()
    # Exact pins from a package manager's lock (Poetry, Pipenv): nothing else is
    # added, and only the files whose hashes that lock lists are kept.
    exact: bool = False
    # What the lock records as its inputs instead of :attr:`digest` (a manager's lock's).
    recorded_inputs: str | None = None
    # Resolve afresh: every package (``upgrade``) or the named ones, ignoring the old lock.
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    what: str | None = None  # "3 pins from poetry.lock": the progress line's subject

    @property
    def digest(self) -> str:
        """A hash of the normalised inputs: equal digests give the same lock.

        Comments, blank lines and line order do not count, so reformatting a
        requirements file does not invalidate its lock. Index options from the
        command line are kept apart (see :attr:`index_digest`) so that commands
        which take none, like ``install``, can check the lock.
        """
        reqs = self.requirements
        data: dict[str, object] = {
            "requirements": sorted(_line_key(r) for r in reqs.requirements),
            "constraints": sorted(_line_key(r) for r in reqs.constraints),
            "index": _index_dict(reqs.index),
            "pre": reqs.pre,
            "only_binary": sorted(reqs.only_binary),
            "target": self.target.as_dict(),
        }
        if self.uv_indexes:  # only when there are some: other apps' locks stay current
            data["uv_indexes"] = list(self.uv_indexes)
        return _digest(data)

    @property
    def index_digest(self) -> str:
        """A hash of the effective index options; recorded instead of the URLs,
        which may hold credentials."""
        return _digest(_index_dict(self.index))


def _digest(data: object) -> str:
    return "sha256:" + json_sha256(data)


def _index_dict(index: IndexOptions) -> dict[str, object]:
    # Without credentials: a rotated token must not relock, nor leave its hash in the lock.
    return {
        "index_url": _bare(index.index_url) if index.index_url else None,
        "extra_index_urls": [_bare(u) for u in index.extra_index_urls],
        "find_links": [_bare(u) for u in index.find_links],
        "no_index": index.no_index,
    }


def _bare(url: str) -> str:
    return split_userinfo(url)[0]


def _line_key(line: RequirementLine) -> str:
    key = str(line) + "".join(f" --hash={h}" for h in sorted(line.hashes))
    local = _local_file(line.url)
    if local is not None:
        # A wheel or sdist named by its path is rebuilt under the same name: its bytes are
        # an input, or the lock would keep the old file's hash (and install the old code).
        key += f" --file-sha256={file_sha256(local)}"
    return key


def _local_file(url: str | None) -> Path | None:
    """The regular file a ``file:`` URL names, or None (a directory is hashed as a source
    tree when the lock is read; anything unreadable fails later, naming its line)."""
    if url is None or not url.startswith("file:"):
        return None
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    path = Path(url2pathname(urlparse(url).path))
    try:
        return path if path.is_file() else None
    except OSError:
        return None


def lock_digest(lock_text: str) -> str | None:
    """The inputs digest a lock was written for, or None if wheelbarrow did not write it."""
    try:
        data = tomllib.loads(lock_text)
    except tomllib.TOMLDecodeError:
        return None
    value = wheelbarrow_table(data).get("inputs")
    return value if isinstance(value, str) else None


def lock(
    request: LockRequest,
    *,
    output: Path,
    uv: str,
    runner: Runner,
    reporter: Reporter,
    environ: Mapping[str, str],
) -> Path:
    """Resolve ``request`` with uv and write the PEP 751 lock to ``output`` atomically.

    An existing lock at ``output`` is handed to uv as preferences, so packages
    whose requirements did not change keep their locked versions.
    """
    # Imported here: checking a lock (`wheelbarrow key`) writes nothing, and starts faster.
    import shutil
    import tempfile

    from wheelbarrow._core.files import atomic_write_text
    from wheelbarrow._core.scratch import clean_stale, scratch

    reqs = request.requirements
    count = request.what or plural(len(reqs.requirements), "requirement")
    reporter.message("step", f"Locking {count} for {request.target}")
    scratch_root = Path(tempfile.gettempdir())
    clean_stale(scratch_root, SCRATCH_PREFIX)  # left by killed locks
    with scratch(scratch_root, SCRATCH_PREFIX) as tmp:
        args = _uv_compile(request, uv=uv, work=tmp)
        keep = output.is_file() and lock_digest(output.read_text(encoding="utf-8")) is not None
        if keep and not request.upgrade:
            shutil.copyfile(output, tmp / "pylock.toml")  # preferences: unchanged pins stay
        result = runner(args, cwd=tmp, env=dict(environ))
        if result.returncode != 0:
            raise _lock_failure(result.stderr, reqs, request.target)
        text = (tmp / "pylock.toml").read_text(encoding="utf-8")
    atomic_write_text(output, _lock_text(text, request))
    return output


def _uv_compile(request: LockRequest, *, uv: str, work: Path) -> list[str]:
    """Write uv's inputs into ``work`` and return the command that locks them there."""
    reqs = request.requirements
    (work / "requirements.in").write_text(
        "".join(f"{line}\n" for line in reqs.requirements), encoding="utf-8"
    )
    args = [
        uv, "pip", "compile", "requirements.in",
        "--format", "pylock.toml", "--output-file", "pylock.toml", "--no-header",
        # 3.X (every 3.X.y) or the pinned 3.X.Y: what the lock records, too.
        "--python-version", str(request.target.python),
        "--python-platform", request.target.uv_platform,
    ]  # fmt: skip
    if reqs.constraints:
        (work / "constraints.txt").write_text(
            "".join(f"{line}\n" for line in reqs.constraints), encoding="utf-8"
        )
        args += ["--constraint", "constraints.txt"]
    args += _index_args(request.index)
    if reqs.pre:
        args += ["--prerelease", "allow"]
    for name in sorted(reqs.only_binary):
        args += ["--only-binary", name]
    if request.exact:
        args.append("--no-deps")  # the manager's lock already holds every dependency
    for name in request.upgrade_packages:
        args += ["--upgrade-package", name]
    return args


def _lock_text(text: str, request: LockRequest) -> str:
    """uv's lock checked, without credentials, with wheelbarrow's header and table."""
    reqs = request.requirements
    _check_user_hashes(text, reqs, request.target)
    if request.exact:
        text = keep_hashed_files(text, reqs)
    # uv keeps the credentials of a direct `name @ https://user:token@...` URL in the
    # lock; the fetcher finds them again from the requirements, so the file never holds them.
    text = strip_credentials(text)
    return LOCK_HEADER + text.rstrip("\n") + "\n\n" + _tool_table(request)


def _index_args(index: IndexOptions) -> list[str]:
    args: list[str] = []
    if index.no_index:
        args.append("--no-index")
    if index.index_url:
        args += ["--index-url", index.index_url]
    for url in index.extra_index_urls:
        args += ["--extra-index-url", url]
    for link in index.find_links:
        args += ["--find-links", link]
    for host in index.trusted_hosts:
        args += ["--allow-insecure-host", host]
    return args


def _tool_table(request: LockRequest) -> str:
    return tool_table(
        request.recorded_inputs or request.digest, request.target, index=request.index_digest
    )


def tool_table(inputs: str, target: Target, *, index: str | None = None) -> str:
    """The ``[tool.wheelbarrow]`` table that marks a lock as wheelbarrow's, for ``inputs``."""
    recorded = target.as_dict()
    return (
        f"[{TOOL_TABLE}]\n"
        f'inputs = "{inputs}"\n'
        + (f'index = "{index}"\n' if index is not None else "")
        + f'python = "{recorded["python"]}"\n'
        f'platform = "{recorded["platform"]}"\n'
    )


def digest_of(data: object) -> str:
    """The ``sha256:`` digest of JSON-able ``data``, as lock inputs are recorded."""
    return _digest(data)


def index_key(index: IndexOptions) -> dict[str, object]:
    """Index options as they count for a lock: without credentials."""
    return _index_dict(index)


def _lock_failure(stderr: str, reqs: Requirements, target: Target) -> LockError:
    """Turn uv's explanation into an error that also points at the requirement lines."""
    text = redact(stderr.strip()) or "uv exited without saying why"
    mentioned = set(re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", text.lower()))
    where = [
        f"{line.origin}: {line}"
        for line in reqs.requirements
        if line.requirement is not None and canonicalize_name(line.requirement.name) in mentioned
    ]
    detail = "\n".join("  " + row for row in text.splitlines())
    message = f"could not lock the requirements for {target}:\n{detail}"
    if where:
        message += "\nrequested at:\n" + "\n".join("  " + row for row in where)
    from wheelbarrow.system.sysdeps import hint_from_log

    # uv builds an sdist to read its metadata when the index has no wheel for it: a
    # missing system library then fails the lock, and the log says which.
    system = hint_from_log(text)
    return LockError(
        message,
        hint=f"uv had to build a package to read its metadata, and {system}"
        if system
        else "check the package names and versions (and the index options); "
        "the resolver's explanation is above",
    )


def _check_user_hashes(lock_text: str, reqs: Requirements, target: Target) -> None:
    """Refuse a lock whose artefacts do not match the ``--hash`` options the user wrote."""
    wanted = {
        canonicalize_name(line.requirement.name): {h.split(":", 1)[1] for h in line.hashes}
        for line in reqs.requirements
        if line.hashes and line.requirement is not None
    }
    if not wanted:
        return
    data = tomllib.loads(lock_text)
    problems = []
    for package in data.get("packages", []):
        name = canonicalize_name(package.get("name", ""))
        if name not in wanted:
            continue
        artefacts = [*package.get("wheels", []), package.get("sdist") or {}]
        found = {a.get("hashes", {}).get("sha256") for a in artefacts if a}
        if not found & wanted[name]:
            line = next(
                r for r in reqs.requirements
                if r.requirement is not None and canonicalize_name(r.requirement.name) == name
            )  # fmt: skip
            problems.append(
                f"{line.origin}: {name} {package.get('version')} for {target} has no file "
                f"matching the --hash options given"
            )
    if problems:
        raise LockError(
            "\n".join(problems),
            hint="update the --hash values, or pin the version they were made for",
        )


def keep_hashed_files(lock_text: str, reqs: Requirements) -> str:
    """Drop every file of a pinned package whose sha256 the pins do not list.

    A package manager's lock lists the files it accepted; the index may hold
    more (a wheel uploaded since), which its own installer would refuse too.
    """
    import tomli_w  # only a package manager's lock is rewritten

    wanted = {
        canonicalize_name(line.requirement.name): {h.split(":", 1)[1] for h in line.hashes}
        for line in reqs.requirements
        if line.hashes and line.requirement is not None
    }
    data = tomllib.loads(lock_text)
    for package in data.get("packages", []):
        allowed = wanted.get(canonicalize_name(package.get("name", "")))
        if allowed is None:
            continue
        if "wheels" in package:
            kept = [w for w in package["wheels"] if w.get("hashes", {}).get("sha256") in allowed]
            if kept:
                package["wheels"] = kept
            else:
                del package["wheels"]
        sdist = package.get("sdist")
        if sdist is not None and sdist.get("hashes", {}).get("sha256") not in allowed:
            del package["sdist"]
    return tomli_w.dumps(data)
