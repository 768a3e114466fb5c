"""The lock of a build's requirements for the target, cached in the store by its inputs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from wheelbarrow._core.errors import LockError, WheelbarrowError
from wheelbarrow._core.report import NullReporter
from wheelbarrow.app.requirements_file import requirements_from_strings
from wheelbarrow.app.target import Target
from wheelbarrow.build.context import SourceContext
from wheelbarrow.lock.lockfile import Artefact, Lock, read_lock
from wheelbarrow.lock.resolve import LockRequest, lock

# Bump when cached build-requirement locks must not be reused (2: locks for 3.X hold for 3.X.0).
BUILDLOCK_FORMAT = 2


def source_pins(sources: Sequence[Artefact]) -> dict[str, str]:
    """The versions of the index sdists being built, by canonical name."""
    return {s.name: s.version for s in sources if s.kind == "sdist" and s.version}


def _build_constraints(
    requires: Sequence[str], pins: Mapping[str, str], source: Artefact
) -> list[str]:
    """``name==version`` for each pin that no build requirement's specifier excludes.

    numpy's sdist is pinned by the app and scipy's build requires numpy: scipy is
    built against that numpy, built once, rather than the newest on the index.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    allowed = {name: version for name, version in pins.items() if name != source.name}
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # reported by the lock itself
        name = canonicalize_name(req.name)
        if name in allowed and not req.specifier.contains(allowed[name], prereleases=True):
            del allowed[name]
    return [f"{name}=={version}" for name, version in sorted(allowed.items())]


def lock_build_requirements(requires: Sequence[str], source: Artefact, ctx: SourceContext) -> Lock:
    """The lock of a build's requirements for the target, cached in the store by its inputs.

    Constrained to the versions this run builds (:func:`_build_constraints`);
    when those make it unresolvable, locked again without them.
    """
    constraints = _build_constraints(requires, ctx.pins, source)
    if constraints:
        try:
            return _lock_build_requirements_with(requires, constraints, source, ctx)
        except LockError:
            ctx.reporter.message(
                "info",
                f"the build requirements of {source.label} do not fit the versions being "
                f"built here ({', '.join(constraints)}): locking them without",
            )
    return _lock_build_requirements_with(requires, [], source, ctx)


def _lock_build_requirements_with(
    requires: Sequence[str], constraints: Sequence[str], source: Artefact, ctx: SourceContext
) -> Lock:
    reqs = requirements_from_strings(requires, path=Path(f"{source.label} [build-system] requires"))
    if constraints:
        pinned = requirements_from_strings(constraints, path=Path("the versions built here"))
        reqs = replace(reqs, constraints=pinned.requirements)
    request = LockRequest(requirements=reqs, target=ctx.target, index=ctx.index)
    digest = hashlib.sha256(
        (f"buildlock-{BUILDLOCK_FORMAT}" + request.digest + request.index_digest).encode()
    ).hexdigest()[:32]
    path = ctx.store.root / "buildlocks" / digest / "pylock.toml"
    if path.is_file() and not _build_lock_holds(path, ctx.target):
        # Written by an older wheelbarrow for the running micro release, or damaged:
        # a cached lock must never break this build (or another app's).
        ctx.reporter.message(
            "info",
            f"locking the build requirements of {source.label} again (the cached lock "
            f"does not hold for {ctx.target.python})",
        )
        path.unlink()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        named = _named_constraints(requires, constraints)
        ctx.reporter.message(
            "info",
            f"locking the build requirements of {source.label}: "
            + ", ".join(requires)
            + (f" (with {', '.join(named)}, built here)" if named else ""),
        )
        try:
            lock(
                request,
                output=path,
                uv=ctx.uv,
                runner=ctx.runner,
                reporter=NullReporter(),
                environ=ctx.environ,
            )
        except LockError as exc:
            raise LockError(
                f"{source.label}: its build requirements ({', '.join(requires)}) cannot be "
                f"had: {exc.message}",
                hint="make them available on the index (or --find-links), or provide the "
                "package's wheel so it need not be built",
            ) from exc
    return read_lock(path)


def _named_constraints(requires: Sequence[str], constraints: Sequence[str]) -> list[str]:
    """The constraints on packages ``requires`` names itself, for the message."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names = set()
    for text in requires:
        try:
            names.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    return [c for c in constraints if c.split("==")[0] in names]


def _build_lock_holds(path: Path, target: Target) -> bool:
    try:
        current = read_lock(path)
    except WheelbarrowError:
        return False
    required = current.pylock.requires_python
    return required is None or required.contains(target.python.full)
