"""The Cloud Native Buildpack contract: detect, the Buildpack Plan, launch.toml, buildpack.toml."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelbarrow._core.errors import BuildpackError, InputError, WheelbarrowError, error_text
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.redact import redact
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.ship.heroku.cnb_env import check_process_type
from wheelbarrow.ship.heroku.cnb_toml import toml_string, toml_value

BUILDPACK_API = "0.10"
BUILDPACK_ID = "wheelbarrow/python"
BUILDPACK_NAME = "wheelbarrow Python"
# The architectures wheelbarrow locks for (manylinux x86_64 and aarch64), in OCI names.
TARGETS: tuple[tuple[str, str], ...] = (("linux", "amd64"), ("linux", "arm64"))
# The SBOM media types bin/build writes layer SBOM files in (wheelhouse.sbom.MEDIA_TYPE).
SBOM_FORMATS = ("application/vnd.cyclonedx+json",)

DETECT_PASS = 0
DETECT_FAIL = 100  # the spec's "fail": another buildpack may still claim the app

PLAN_ENTRY = "python"


# --- detect -------------------------------------------------------------------------------


def detect(app_dir: Path, *, plan_path: Path) -> int:
    """Pass when wheelbarrow can build the app, writing the Build Plan; fail (100) otherwise.

    See :func:`wheelbarrow.ship.heroku.cnb_detect.detect`: uv.lock, poetry.lock, Pipfile
    with Pipfile.lock, requirements.txt, a pylock.toml or ``[project] dependencies``
    pass; the plan requires ``python`` with ``metadata.version`` when runtime.txt,
    .python-version or Pipfile.lock pins one. Nothing is written on a fail.
    """
    from wheelbarrow.ship.heroku.cnb_detect import detect as detect_app

    return detect_app(app_dir, plan_path=plan_path)


def build_plan(python: PythonVersion | None) -> str:
    """The Build Plan TOML of a Python app: provides ``python`` and requires it."""
    from wheelbarrow.ship.heroku.cnb_detect import build_plan as plan_text

    return plan_text(str(python) if python is not None else None)


def plan_python_version(bp_plan_path: Path) -> str | None:
    """The Python version that the Buildpack Plan (``CNB_BP_PLAN_PATH``) asks for, if any."""
    plan = _read_toml(bp_plan_path)
    entries = plan.get("entries", [])
    if not isinstance(entries, list):
        raise InputError(f"{bp_plan_path}: [[entries]] must be an array of tables")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("name") != PLAN_ENTRY:
            continue
        metadata = entry.get("metadata", {})
        version = metadata.get("version") if isinstance(metadata, dict) else None
        if version is not None:
            return str(version)
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc


# --- launch.toml and buildpack.toml -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    """A process type in ``launch.toml`` (buildpack API 0.9+: ``command`` is a list).

    ``command`` holds the executable and the arguments always passed; ``args`` the default
    arguments a user may override. Give ``default=True`` to the process that runs when none
    is named, normally ``web``.
    """

    type: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    default: bool = False
    working_dir: str | None = None

    def __post_init__(self) -> None:
        check_process_type(self.type)
        if not self.command or not self.command[0]:
            raise BuildpackError(
                f"process {self.type!r}: empty command",
                hint="the first element of command is the executable",
            )


def launch_toml(processes: Sequence[Process]) -> str:
    """The text of ``launch.toml`` for ``processes``, checked as the spec asks."""
    types = [p.type for p in processes]
    duplicates = sorted({t for t in types if types.count(t) > 1})
    if duplicates:
        raise BuildpackError(f"process types given twice: {', '.join(duplicates)}")
    defaults = [p.type for p in processes if p.default]
    if len(defaults) > 1:
        raise BuildpackError(
            f"more than one default process: {', '.join(defaults)}",
            hint="a buildpack may mark only one process type as default",
        )
    blocks = []
    for process in processes:
        block = f"[[processes]]\ntype = {toml_string(process.type)}\n"
        block += f"command = {toml_value(process.command)}\n"
        if process.args:
            block += f"args = {toml_value(process.args)}\n"
        block += f"default = {toml_value(process.default)}\n"
        if process.working_dir is not None:
            block += f"working-dir = {toml_string(process.working_dir)}\n"
        blocks.append(block)
    return "\n".join(blocks)


def write_launch(layers_dir: Path, processes: Sequence[Process]) -> Path:
    """Write ``<layers>/launch.toml`` declaring ``processes``; returns its path."""
    path = layers_dir / "launch.toml"
    atomic_write_text(path, launch_toml(processes))
    return path


def buildpack_toml(version: str) -> str:
    """The ``buildpack.toml`` of the wheelbarrow buildpack at ``version`` (API 0.10, the SBOM
    formats it writes, targets)."""
    if not version.strip():
        raise BuildpackError("the buildpack version is empty", hint="pass a version such as 0.1.0")
    text = f"api = {toml_string(BUILDPACK_API)}\n\n[buildpack]\n"
    text += f"id = {toml_string(BUILDPACK_ID)}\n"
    text += f"name = {toml_string(BUILDPACK_NAME)}\n"
    text += f"version = {toml_string(version.strip())}\n"
    description = "Python apps from a locked, content-addressed wheelhouse, installed offline"
    text += f"description = {toml_string(description)}\n"
    # The environment layer's SBOM file (venv.sbom.cdx.json): Buildpack API 0.7+ wants
    # the formats a buildpack writes declared.
    text += f"sbom-formats = {toml_value(list(SBOM_FORMATS))}\n"
    for os_name, arch in TARGETS:
        text += f"\n[[targets]]\nos = {toml_string(os_name)}\narch = {toml_string(arch)}\n"
    return text


# --- entry point for bin/detect -----------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """``python -m wheelbarrow.ship.heroku.cnb detect | buildpack-toml VERSION``; the exit code.

    ``detect`` runs in the app directory (the working directory, as the lifecycle sets it)
    and writes the plan to ``$CNB_BUILD_PLAN_PATH``.
    """
    parser = argparse.ArgumentParser(prog="python -m wheelbarrow.ship.heroku.cnb")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("detect", help="the bin/detect side: pass (0) or fail (100)")
    text = commands.add_parser("buildpack-toml", help="print buildpack.toml")
    text.add_argument("version")
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        if args.command == "buildpack-toml":
            sys.stdout.write(buildpack_toml(args.version))
            return 0
        plan = env.get("CNB_BUILD_PLAN_PATH")
        if not plan:
            raise BuildpackError(
                "CNB_BUILD_PLAN_PATH is not set",
                hint="run detect from the buildpack's bin/detect under a lifecycle "
                "(buildpack API 0.8 or newer)",
            )
        return detect(Path.cwd() if cwd is None else cwd, plan_path=Path(plan))
    except WheelbarrowError as exc:
        # The edge: only this entry point writes, as the command line does.
        sys.stderr.write(error_text(redact(exc.message), redact(exc.hint) if exc.hint else None))
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
