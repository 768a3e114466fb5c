"""One source build now: under its lock, built, repaired, checked and put in the build cache."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow.app.config import PackageSettings
from wheelbarrow.build import portability
from wheelbarrow.build.blas import BlasFinding, check_built_wheel
from wheelbarrow.build.buildcache import (
    build_key_inputs,
    build_lock,
    entry_name,
    previous_inputs,
    previous_path,
    push_build,
    record_build,
    reusable,
    why_rebuilt,
)
from wheelbarrow.build.builder import BuildFailure, BuildRequest, build_env_key, build_wheel
from wheelbarrow.build.buildrequires import lock_build_requirements
from wheelbarrow.build.context import Built, SourceContext, system_libraries
from wheelbarrow.build.links import linked_libraries
from wheelbarrow.build.provenance import (
    Dependency,
    build_facts,
    dumps,
    provenance_statement,
    utc_now,
)
from wheelbarrow.lock.lockfile import Artefact, select_artefacts

if TYPE_CHECKING:
    from wheelbarrow.build.repair import RepairResult


@dataclass(slots=True, kw_only=True)
class SourceNode:
    """A source to build in this run: its key, settings, unpacked tree and what its build needs."""

    key: str
    source: Artefact
    settings: PackageSettings
    src_dir: Path
    build_wheels: list[Artefact] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    needed_sources: set[str] = field(default_factory=set)  # sha256 of the sources in needs
    requires: tuple[str, ...] = ()


def build_node(node: SourceNode, results: Mapping[str, Built], ctx: SourceContext) -> Built:
    """Build ``node`` now, unless another process built it meanwhile; report its start and end."""
    from filelock import Timeout

    lock = build_lock(ctx.store, node.key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        ctx.reporter.message(
            "info", f"{node.source.label}: another process is building it; waiting for that build"
        )
        lock.acquire()
    try:
        return _build_locked(node, results, ctx)
    finally:
        lock.release()


def _build_locked(node: SourceNode, results: Mapping[str, Built], ctx: SourceContext) -> Built:
    reused, problem = reusable(node.key, node.source, ctx)
    if reused is not None:
        return reused
    label = node.source.label
    attempt = ctx.store.root / "built" / node.key  # the log while building; kept on failure
    attempt.mkdir(parents=True, exist_ok=True)
    log = attempt / "build.log"
    log.write_text(
        f"# {label} from {node.source.filename}\n"
        f"# build requires: {', '.join(node.requires) or '(none)'}\n",
        encoding="utf-8",
    )
    started = ctx.clock()
    ctx.reporter.build_started(label, log)
    try:
        built = _build_now(node, results, ctx, log=log, started=started, problem=problem)
    except BaseException as exc:
        ctx.reporter.build_finished(
            label, ok=False, seconds=ctx.clock() - started, result=_ended(exc, label)
        )
        raise
    ctx.reporter.build_finished(label, ok=True, seconds=built.seconds, result=built.repair)
    if ctx.push and ctx.remote is not None:
        ctx.reporter.message("info", f"{label}: pushing its build to {ctx.remote.url}")
        push_build(ctx.remote, ctx.store, built)
    return built


def _ended(exc: BaseException, label: str) -> str:
    """How a failed build ended, for its last progress line."""
    if isinstance(exc, WheelbarrowError):
        return exc.message.removeprefix(f"{label}: ")
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def _build_now(
    node: SourceNode,
    results: Mapping[str, Built],
    ctx: SourceContext,
    *,
    log: Path,
    started: float,
    problem: str | None,
) -> Built:
    """Build, repair and check ``node``'s wheel, store it and record the build in the cache."""
    store = ctx.store
    inputs = build_key_inputs(node.source, ctx)
    wheels = _environment_wheels(node, results, ctx, log=log)
    why = problem or why_rebuilt(previous_inputs(store, node.source, ctx), inputs)
    asked: list[Artefact] = []  # wheels the backend asked for at build time
    began = utc_now()  # wall-clock, for the provenance (ctx.clock times the build)

    def more_wheels(requirements: Sequence[str]) -> list[Path]:
        found = _more_wheels(requirements, node, ctx)
        asked.extend(found)
        return [store.named(a.sha256, a.filename) for a in found]

    epoch = _source_date_epoch(node, ctx)
    with store.scratch(f"out-{node.key[:16]}-") as out:
        wheel = build_wheel(
            _request(node, ctx, wheels, log=log, out_dir=out / "built", epoch=epoch),
            store=store,
            runner=ctx.runner,
            environ=ctx.environ,
            more_wheels=more_wheels,
        )
        # What the build linked, read before repair grafts copies of it into the wheel.
        links = linked_libraries(wheel, system_libraries(ctx))
        repaired = _repair(wheel, out / "repaired", node, ctx, log=log, epoch=epoch)
        blas, code = _check(repaired.wheel, node, ctx, log=log)
        sha256 = store.add_file(repaired.wheel)
        seconds = ctx.clock() - started
        result = {
            "key": node.key,
            "wheel": repaired.wheel.name,
            "sha256": sha256,
            "repair": repaired.describe(),
            "portability": code.as_json() if code is not None else None,
            "blas": {**blas.as_json(), "openblas_here": ctx.toolchain.get("openblas")},
            "inputs": inputs,
            "links": links,
            "build_env": build_env_key(
                [*wheels, *(store.named(a.sha256, a.filename) for a in asked)], ctx.interpreter
            ),
        }
        statement = _provenance(
            result, node, results, asked, ctx, began=began, log=log, epoch=epoch
        )
        entry = record_build(
            store, out / "entry", entry_name(node.key, links), result, log, provenance=statement
        )
        atomic_write_text(previous_path(store, node.source, ctx), json.dumps(inputs) + "\n")
    return Built(
        source=node.source,
        wheel=repaired.wheel.name,
        sha256=sha256,
        repair=repaired.describe(),
        reused=False,
        why=why,
        log=entry / "build.log",
        seconds=seconds,
        portability=code,
        blas=blas,
    )


def _environment_wheels(
    node: SourceNode, results: Mapping[str, Built], ctx: SourceContext, *, log: Path
) -> list[Path]:
    """The wheels of ``node``'s build environment (the ones built here first among them),
    listed in its log."""
    store = ctx.store
    wheels = [store.named(w.sha256, w.filename) for w in node.build_wheels]
    wheels += [store.named(results[k].sha256, results[k].wheel) for k in node.needs]
    with log.open("a", encoding="utf-8") as f:
        f.write(f"# build environment: {', '.join(sorted(w.name for w in wheels)) or '(empty)'}\n")
    return wheels


def _request(
    node: SourceNode,
    ctx: SourceContext,
    wheels: Sequence[Path],
    *,
    log: Path,
    out_dir: Path,
    epoch: int,
) -> BuildRequest:
    """The PEP 517 build of ``node`` in an environment of ``wheels``."""
    return BuildRequest(
        label=node.source.label,
        source_dir=node.src_dir,
        interpreter=ctx.interpreter,
        wheels=wheels,
        config_settings=node.settings.config_settings_dict(),
        env=node.settings.env,
        log=log,
        out_dir=out_dir,
        source_date_epoch=epoch,
    )


def _source_date_epoch(node: SourceNode, ctx: SourceContext) -> int:
    """SOURCE_DATE_EPOCH for ``node``: its sdist's newest member, else a fixed time."""
    from wheelbarrow.build.reproducible import DEFAULT_EPOCH, archive_epoch

    source = node.source
    if source.kind != "sdist" or not ctx.store.has(source.sha256):
        return DEFAULT_EPOCH
    return archive_epoch(ctx.store.named(source.sha256, source.filename))


def _repair(
    wheel: Path, out_dir: Path, node: SourceNode, ctx: SourceContext, *, log: Path, epoch: int
) -> RepairResult:
    """``wheel`` repaired for the target and normalised (normalise.py: the same members give the
    same bytes); a repair that fails fails the build, noted in its log."""
    from dataclasses import replace

    from wheelbarrow.build.normalise import normalise_wheel
    from wheelbarrow.build.repair import repair_wheel

    try:
        repaired = repair_wheel(
            wheel,
            out_dir,
            target=ctx.target,
            mode=ctx.config.repair,
            runner=ctx.runner,
            auditwheel=ctx.auditwheel,
            env=ctx.repair_env,
        )
        # After auditwheel, whose own zip carries its times and order.
        normal = normalise_wheel(repaired.wheel, out_dir / "normal", epoch=epoch)
        return replace(repaired, wheel=normal)
    except WheelbarrowError as exc:
        with log.open("a", encoding="utf-8") as f:
            f.write(f"# repair failed: {exc.message}\n")
        raise BuildFailure(node.source.label, log, reason=f"repair failed: {exc.message}") from exc


def _check(
    wheel: Path, node: SourceNode, ctx: SourceContext, *, log: Path
) -> tuple[BlasFinding, portability.PortabilityFinding | None]:
    """What BLAS the built wheel has and what its code needs of the CPU: warned about,
    refused as the settings say, and noted in the log."""
    blas = check_built_wheel(
        wheel,
        label=node.source.label,
        required=ctx.config.requires_blas(node.source.name),
        expected=ctx.config.expects_blas(node.source.name),
        log=log,
        reporter=ctx.reporter,
    )
    code = portability.check_built_wheel(
        wheel,
        label=node.source.label,
        package=node.source.name,
        mode=ctx.config.portable_mode(node.source.name),
        baseline=ctx.config.cpu_baseline,
        log=log,
        reporter=ctx.reporter,
    )
    return blas, code


def _more_wheels(
    requirements: Sequence[str], node: SourceNode, ctx: SourceContext
) -> list[Artefact]:
    """Wheels for requirements a backend asked for at build time (they must have wheels)."""
    lock_ = lock_build_requirements((*node.requires, *requirements), node.source, ctx)
    wanted = {r.split(";")[0].strip() for r in requirements}
    arts = select_artefacts(lock_, ctx.target, ctx.config)
    # Sources built for this build already are in its environment, as wheels.
    sources = [a for a in arts if a.kind != "wheel" and a.sha256 not in node.needed_sources]
    if sources:
        raise WheelbarrowError(
            f"{node.source.label}: its backend asked at build time for "
            f"{', '.join(sorted(wanted))}, and {', '.join(a.label for a in sources)} "
            "would have to be built from source first",
            hint="list them in [build-system] requires, or provide wheels for them",
        )
    have = {w.sha256 for w in node.build_wheels} | node.needed_sources
    extra = [a for a in arts if a.sha256 not in have]
    ctx.fetcher.fetch([a for a in extra if not ctx.store.has(a.sha256)], ctx.store, ctx.reporter)
    return extra


def _provenance(
    result: Mapping[str, object],
    node: SourceNode,
    results: Mapping[str, Built],
    asked: Sequence[Artefact],
    ctx: SourceContext,
    *,
    began: datetime,
    log: Path,
    epoch: int,
) -> bytes:
    """The in-toto statement of the build ``result`` records (provenance.py): its source, the
    wheels of its build environment, its settings and this machine's toolchain."""
    dependencies = [
        *(Dependency(name=w.filename, sha256=w.sha256, uri=w.url) for w in node.build_wheels),
        *(
            Dependency(name=results[k].wheel, sha256=results[k].sha256, role="built-requirement")
            for k in node.needs
        ),
        *(
            Dependency(name=a.filename, sha256=a.sha256, uri=a.url, role="asked-at-build-time")
            for a in asked
        ),
    ]
    facts = build_facts(
        source=node.source,
        settings=node.settings,
        config=ctx.config,
        src_dir=node.src_dir,
        requires=node.requires,
        dependencies=dependencies,
        toolchain=ctx.toolchain,
        python=ctx.interpreter.version,
        started=began,
        log=log,
        source_date_epoch=epoch,
    )
    return dumps(provenance_statement(result, facts))
