"""Running external tools (uv, the target's python): the one place subprocesses start."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from wheelbarrow._core.errors import ToolError


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """What a finished command left behind."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs a command to completion and returns its output; never raises on a non-zero exit.

    With ``log``, the output goes to the end of that file instead, stdout and
    stderr interleaved as the command writes them (a build's log, followed
    while it runs), and ``stdout`` and ``stderr`` come back empty.

    >>> runner(["uv", "--version"], cwd=None, env=None).stdout
    'uv 0.9.0\\n'
    """

    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> Completed: ...


def run_subprocess(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> Completed:
    """The real :class:`Runner`: captures output as text, raises only when the tool is missing."""
    if log is not None:
        with log.open("a", encoding="utf-8") as out:
            proc = _start(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        return Completed(args=tuple(args), returncode=proc.returncode, stdout="", stderr="")
    proc = _start(args, cwd=cwd, env=env, capture_output=True, text=True)
    return Completed(
        args=tuple(args), returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr
    )


def _start(
    args: Sequence[str], *, cwd: Path | None, env: Mapping[str, str] | None, **output: Any
) -> subprocess.CompletedProcess[Any]:
    try:
        return subprocess.run(
            list(args), cwd=cwd, env=dict(env) if env is not None else None, check=False, **output
        )
    except FileNotFoundError as exc:
        raise ToolError(
            f"cannot run {args[0]!r}: not found",
            hint="install it, or put it on PATH",
        ) from exc


def marked_report(stdout: str, mark: str) -> dict[str, Any] | None:
    """The JSON object a child script printed last on a line starting with ``mark``.

    Scripts run in another interpreter (the app's environment) report this way,
    so their own output may come before it; None when there is no such line.
    """
    import json

    for line in reversed(stdout.splitlines()):
        if line.startswith(mark):
            try:
                parsed = json.loads(line.removeprefix(mark))
            except json.JSONDecodeError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None
