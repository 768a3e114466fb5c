"""Whether an installed environment can run: its dependencies met, its console scripts importable.

``pip check`` alone passes an environment whose console script cannot start
(an old celery importing ``pkg_resources``, which new setuptools no longer
has): the script's module is imported too. The environment's own interpreter
reports what is installed (with :mod:`importlib.metadata`) and imports each
script's entry point; the requirements are judged here, with
:mod:`packaging`, against that interpreter's marker environment, so nothing of
wheelbarrow's own environment is put on the checked one's ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelbarrow._core.errors import InstallError
from wheelbarrow._core.runner import Runner, marked_report
from wheelbarrow._core.text import agree, plural

# The config var that turns the import of console scripts off (the dependency check stays).
SKIP_SCRIPTS_VAR = "WHEELBARROW_SKIP_SCRIPT_CHECK"
_MARK = "wheelbarrow-envcheck:"

# Run by the checked environment's interpreter (-I: neither the app's directory
# nor PYTHONPATH may hide a module the environment lacks). It runs on every
# Python the buildpacks deploy, so it keeps to what 3.8's stdlib has.
_PROBE = r"""
import contextlib, importlib.metadata as md, io, json, os, platform, sys, traceback
check_scripts = sys.argv[1] == "1"
impl = sys.implementation.version
iver = "%d.%d.%d" % (impl.major, impl.minor, impl.micro)
if impl.releaselevel != "final":
    iver += impl.releaselevel[0] + str(impl.serial)
env = {
    "implementation_name": sys.implementation.name,
    "implementation_version": iver,
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
dists, seen = [], set()
for dist in md.distributions():
    name = dist.metadata["Name"]
    key = (name or "").lower().replace("_", "-").replace(".", "-")
    if not name or key in seen:
        continue  # shadowed by an earlier entry of sys.path, as the import system sees it
    seen.add(key)
    scripts = []
    for ep in dist.entry_points:
        if ep.group != "console_scripts":
            continue
        error = None
        if check_scripts:
            sink = io.StringIO()
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    ep.load()
            except BaseException as exc:  # a script's import may exit or raise anything
                error = traceback.format_exception_only(type(exc), exc)[-1].strip()
        scripts.append({"name": ep.name, "value": ep.value, "error": error})
    dists.append(
        {"name": name, "version": dist.version, "requires": dist.requires or [],
         "scripts": scripts}
    )
sys.stdout.write("\n" + MARK + json.dumps({"env": env, "dists": dists}) + "\n")
""".replace("MARK", repr(_MARK))


class BrokenEnvironmentError(InstallError):
    """An installed environment whose dependencies are unmet or whose scripts cannot start."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptFailure:
    """A console script whose entry point cannot be imported."""

    package: str
    version: str
    script: str
    entry_point: str  # "module:function"
    error: str  # the last line of the import error

    def __str__(self) -> str:
        return (
            f"{self.package} {self.version}: its console script {self.script!r} cannot start: "
            f"importing {self.entry_point} fails with {self.error}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvCheck:
    """What the check found; ``ok`` when nothing."""

    packages: int
    scripts: int  # console scripts imported (0 when the import check is off)
    unmet: tuple[str, ...]  # pip check's sentences
    broken_scripts: tuple[ScriptFailure, ...]

    @property
    def ok(self) -> bool:
        """No unmet dependency and no script that cannot start."""
        return not self.unmet and not self.broken_scripts

    def describe(self) -> str:
        """One line for the build log."""
        checked = f"{plural(self.packages, 'package')}' dependencies met"
        if self.scripts:
            return f"{checked}, {plural(self.scripts, 'console script')} importable"
        return checked


def check_environment(
    python: Path,
    *,
    runner: Runner,
    scripts: bool = True,
    env: Mapping[str, str] | None = None,
) -> EnvCheck:
    """Check the environment of ``python``; ``scripts=False`` skips importing console scripts.

    ``env`` is the process environment to run it in (``-I`` makes Python
    ignore its ``PYTHON*`` variables; ``-B`` keeps bytecode out of the
    checked environment). Returns what was found without raising;
    :func:`require_healthy` turns problems into an error.
    """
    done = runner([str(python), "-I", "-B", "-c", _PROBE, "1" if scripts else "0"], env=env)
    report = marked_report(done.stdout, _MARK)
    if done.returncode != 0 or report is None:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BrokenEnvironmentError(
            f"{python}: the environment's interpreter cannot list what is installed "
            f"(exit {done.returncode}): {tail}",
            hint="the environment is damaged; clear the build cache and build again",
        )
    markers: Mapping[str, str] = report["env"]
    dists: list[dict[str, Any]] = report["dists"]
    installed: dict[str, str] = {canonicalize_name(d["name"]): d["version"] for d in dists}
    unmet: list[str] = []
    failures: list[ScriptFailure] = []
    imported = 0
    for dist in sorted(dists, key=lambda d: canonicalize_name(d["name"])):
        unmet.extend(_unmet(dist["name"], dist["version"], dist["requires"], installed, markers))
        for script in dist["scripts"]:
            imported += scripts
            if script["error"] is not None:
                failures.append(
                    ScriptFailure(
                        package=dist["name"],
                        version=dist["version"],
                        script=script["name"],
                        entry_point=script["value"],
                        error=script["error"],
                    )
                )
    return EnvCheck(
        packages=len(dists),
        scripts=imported,
        unmet=tuple(unmet),
        broken_scripts=tuple(failures),
    )


def require_healthy(check: EnvCheck, *, skip_hint: str) -> None:
    """Raise :class:`BrokenEnvironmentError` naming every problem ``check`` found.

    ``skip_hint`` says how this caller turns the script check off (the
    dependency check has no such setting: an unmet dependency is a broken app).
    """
    if check.ok:
        return
    lines: list[str] = []
    if check.unmet:
        lines.append(
            f"{plural(len(check.unmet), 'dependency', 'dependencies')} of the installed "
            f"packages {agree(len(check.unmet), 'is', 'are')} not met (as pip check reports them):"
        )
        lines += [f"  {sentence}" for sentence in check.unmet]
    if check.broken_scripts:
        lines.append(
            f"{plural(len(check.broken_scripts), 'console script')} of the installed packages "
            f"cannot start:"
        )
        lines += [f"  {failure}" for failure in check.broken_scripts]
    hints = []
    if check.unmet:
        hints.append(
            "add the missing or conflicting package to the app's requirements and lock again"
        )
    if check.broken_scripts:
        names = sorted({f.package for f in check.broken_scripts})
        hints.append(
            f"pin a version of {', '.join(names)} that works with the rest of the app; "
            f"or {skip_hint}"
        )
    raise BrokenEnvironmentError("\n".join(lines), hint="; ".join(hints))


def _unmet(
    name: str,
    version: str,
    requires: list[str],
    installed: Mapping[str, str],
    env: Mapping[str, str],
) -> list[str]:
    """pip check's sentences for one package's requirements (those without an extra)."""
    problems = []
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # metadata pip could not read either; installing it did not fail
        if req.marker is not None and not _applies(req.marker, env):
            continue
        have = installed.get(canonicalize_name(req.name))
        if have is None:
            problems.append(f"{name} {version} requires {req.name}, which is not installed.")
        elif req.specifier and not _satisfies(req, have):
            problems.append(
                f"{name} {version} has requirement {req}, but you have {req.name} {have}."
            )
    return problems


def _applies(marker: Marker, env: Mapping[str, str]) -> bool:
    return marker.evaluate({**env, "extra": ""})


def _satisfies(req: Requirement, version: str) -> bool:
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True  # a legacy version packaging cannot order: pip check skips it too
