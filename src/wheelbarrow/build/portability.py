"""Portability of built wheels: code that needs more of the CPU than the target's baseline.

A wheel built with ``-march=native`` (or ``-mavx2``) runs only on CPUs like the
build machine's: elsewhere it stops with "Illegal instruction". Each extension
module and shared library of a wheel is inspected (:mod:`wheelbarrow.build.elfcode`),
and what its unchecked code uses beyond the baseline is warned about or refused.
"""

from __future__ import annotations

import contextlib
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.text import plural

# What the check compares code against: settings of the app (see app/config.py).
from wheelbarrow.app.config import (
    BASELINES,
    DEFAULT_BASELINE,
    Baseline,
    PortableMode,
)
from wheelbarrow.build.elfcode import inspect_elf
from wheelbarrow.build.elffile import read_links
from wheelbarrow.build.x86features import beyond, cpuinfo_flag, level_needed, shown, sort_features

_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")


class NotPortableError(WheelbarrowError):
    """A built wheel's code needs more of the CPU than the target's baseline, and
    ``portable = "error"`` is set."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFinding:
    """One file of a wheel whose code runs extensions beyond the baseline unchecked."""

    file: str
    extensions: tuple[str, ...]  # beyond the baseline, iced-x86's names
    functions: tuple[str, ...]
    count: int

    def describe(self) -> str:
        """``numpy/_x.so: AVX, AVX2 (x86-64-v3) in 3 functions, e.g. f, g``."""
        names = ", ".join(shown(f) for f in self.extensions)
        where = plural(self.count, "function")
        example = f", e.g. {', '.join(self.functions)}" if self.functions else ""
        return f"{self.file}: {names} ({level_needed(self.extensions)}) in {where}{example}"

    def as_json(self) -> dict[str, object]:
        """For the build report and the build cache."""
        return {
            "file": self.file,
            "extensions": [shown(f) for f in self.extensions],
            "features": list(self.extensions),
            "level": level_needed(self.extensions),
            "functions": list(self.functions),
            "count": self.count,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PortabilityFinding:
    """What a wheel's code needs of the CPU beyond ``baseline``.

    ``inspected`` counts the x86-64 ELF files read; ``guarded`` lists the
    extensions used only by code chosen at run time (reported, never a problem).
    """

    wheel: str
    baseline: str
    inspected: int = 0
    files: tuple[FileFinding, ...] = ()
    guarded: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def portable(self) -> bool:
        """Whether the wheel runs on every CPU of the baseline."""
        return not self.files

    @property
    def needs(self) -> tuple[str, ...]:
        """The extensions (iced-x86's names) the unchecked code uses."""
        return tuple(sort_features(f for file in self.files for f in file.extensions))

    def needs_cpuinfo(self) -> tuple[str, ...]:
        """The /proc/cpuinfo flags a CPU must have to run this wheel."""
        return tuple(sorted({cpuinfo_flag(f) for f in self.needs}))

    def describe(self) -> str:
        """One line for the build log."""
        if not self.inspected:
            return "CPU: no x86-64 code to inspect"
        if self.portable:
            extra = (
                f"; {', '.join(shown(f) for f in self.guarded)} only where chosen at run time"
                if self.guarded
                else ""
            )
            return (
                f"CPU: runs on {self.baseline} ({plural(self.inspected, 'file')} inspected{extra})"
            )
        needs = ", ".join(shown(f) for f in self.needs)
        return f"CPU: needs {needs} ({level_needed(self.needs)}), beyond {self.baseline}"

    def as_json(self) -> dict[str, object]:
        """For the build report and the build cache (read back by :meth:`from_json`)."""
        return {
            "wheel": self.wheel,
            "baseline": self.baseline,
            "inspected": self.inspected,
            "portable": self.portable,
            "needs": [shown(f) for f in self.needs],
            "needs_cpuinfo": list(self.needs_cpuinfo()),
            "files": [f.as_json() for f in self.files],
            "guarded": [shown(f) for f in self.guarded],
            "guarded_features": list(self.guarded),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_json(cls, data: object) -> PortabilityFinding | None:
        """A finding recorded by :meth:`as_json`, or None if ``data`` is not one."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                wheel=str(data["wheel"]),
                baseline=str(data["baseline"]),
                inspected=int(data["inspected"]),
                files=tuple(
                    FileFinding(
                        file=str(f["file"]),
                        extensions=tuple(str(x) for x in f["features"]),
                        functions=tuple(str(x) for x in f["functions"]),
                        count=int(f["count"]),
                    )
                    for f in data["files"]
                ),
                guarded=tuple(str(x) for x in data.get("guarded_features", [])),
                seconds=float(data.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _is_shared_object(member: str) -> bool:
    return bool(_SHARED_OBJECT.search(PurePosixPath(member).name))


def inspect_wheel(path: Path, *, baseline: Baseline = DEFAULT_BASELINE) -> PortabilityFinding:
    """What the extension modules and shared libraries in the wheel at ``path`` need of the CPU.

    Only members named ``*.so`` or ``*.so.N`` are read, and only x86-64 ones
    inspected. A library's entry points are the symbols the wheel's other files
    import from it (all it exports when none of them names it).
    """
    started = time.perf_counter()
    with zipfile.ZipFile(path) as archive:
        blobs = {
            info.filename: archive.read(info)
            for info in archive.infolist()
            if not info.is_dir() and _is_shared_object(info.filename)
        }
    links = {member: found for member, data in blobs.items() if (found := read_links(data))}
    users: dict[str, set[str]] = {}  # library name -> the symbols its users import
    for found in links.values():
        for name in found.needed:
            users.setdefault(name, set()).update(found.imports)
    files: list[FileFinding] = []
    guarded: set[str] = set()
    for member, found in sorted(links.items()):
        names = {PurePosixPath(member).name, *([found.soname] if found.soname else [])}
        called = {s for n in names for s in users.get(n, ())} if names & set(users) else None
        code = inspect_elf(blobs[member], called=frozenset(called) if called is not None else None)
        if code is None:
            continue
        guarded.update(code.guarded)
        extra = beyond(code.unguarded, baseline)
        if extra:
            files.append(
                FileFinding(
                    file=member, extensions=tuple(extra), functions=code.functions, count=code.count
                )
            )
        else:
            guarded.update(code.unguarded)
    return PortabilityFinding(
        wheel=path.name,
        baseline=baseline,
        inspected=len(links),
        files=tuple(files),
        guarded=tuple(beyond(guarded - {f for file in files for f in file.extensions}, baseline)),
        seconds=round(time.perf_counter() - started, 3),
    )


def check_finding(
    finding: PortabilityFinding, *, label: str, mode: PortableMode, package: str
) -> str | None:
    """The warning for a wheel that is not portable; raises in ``"error"`` mode."""
    if finding.portable or mode == "off":
        return None
    files = "\n".join(f"  - {f.describe()}" for f in finding.files)
    needs = ", ".join(shown(f) for f in finding.needs)
    what = (
        f"{label}: its code uses {needs} without checking the CPU first, beyond the "
        f"target's baseline ({finding.baseline}): on CPUs without them it stops with "
        f"'Illegal instruction'\n{files}"
    )
    fix = (
        "build it for the baseline: remove -march=native (or -mavx2, ...) from its build "
        f'flags, e.g. set CFLAGS = "-O2 -march={finding.baseline}" in '
        f"[tool.wheelbarrow.packages.{package}.env]; or, if every server has them, "
        f'set cpu-baseline = "{_level_for(finding.needs)}"'
    )
    if mode == "error":
        raise NotPortableError(
            f'{what}\n  (portable = "error" is set)', hint=f"{fix}; nothing was stored"
        )
    return f'{what}\n  To fix: {fix} (portable = "error" makes this an error)'


def _level_for(features: Sequence[str]) -> str:
    level = level_needed(features)
    return level if level in BASELINES else "x86-64-v4"


def check_built_wheel(
    wheel: Path,
    *,
    label: str,
    package: str,
    mode: PortableMode,
    baseline: Baseline,
    log: Path | None,
    reporter: Reporter,
    finding: PortabilityFinding | None = None,
) -> PortabilityFinding | None:
    """Inspect a built wheel (unless ``finding`` was recorded), warn or raise, note it in ``log``.

    ``log`` is None for a wheel reused from the build cache. A recorded finding
    for another baseline is inspected again. None when ``mode`` is ``"off"``.
    """
    if mode == "off":
        return None
    if finding is None or finding.baseline != baseline:
        finding = inspect_wheel(wheel, baseline=baseline)
    try:
        warning = check_finding(finding, label=label, mode=mode, package=package)
    except NotPortableError as exc:
        _note(log, f"# {exc.message}")
        raise
    _note(log, f"# {finding.describe()} ({finding.seconds:.2f}s)")
    if warning is not None:
        reporter.message("warning", warning)
    return finding


def _note(log: Path | None, text: str) -> None:
    if log is None:
        return
    with contextlib.suppress(OSError), log.open("a", encoding="utf-8") as f:
        f.write(text.replace("\n", "\n# ") + "\n")
