"""Apps and CLI runs for tests: an app directory in a few lines, the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelbarrow.cli import main

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
WHEELBARROW = (sys.executable, "-m", "wheelbarrow")  # a run in a process of its own
PLATFORM = "manylinux_2_28_x86_64"


def make_app(directory: Path, requirements: str, *, python: str = HOST_PYTHON) -> Path:
    """An app directory with ``requirements.txt`` and ``.python-version``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "requirements.txt").write_text(requirements, encoding="utf-8")
    (directory / ".python-version").write_text(python + "\n", encoding="utf-8")
    return directory


@dataclass(frozen=True, slots=True)
class Result:
    """What one CLI run printed and returned."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)


def cli(*args: str | Path) -> Result:
    """Run ``wheelbarrow ARGS`` in this process and capture its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def build_cli(app: Path, store: Path, index_url: str, *extra: str | Path) -> Result:
    """``wheelbarrow build`` of ``app`` into ``store`` from a local index, for PLATFORM."""
    return cli(
        "build", app, "--store", store, "--index-url", index_url, "--platform", PLATFORM, *extra
    )


def build_ok(app: Path, store: Path, index_url: str, *extra: str | Path) -> dict[str, Any]:
    """:func:`build_cli` that must succeed; returns its JSON report."""
    result = build_cli(app, store, index_url, "--json", *extra)
    assert result.code == 0, result.err
    report: dict[str, Any] = result.json()
    return report


def run(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``wheelbarrow ARGS`` in a process of its own with ``env`` (as on another machine)."""
    return subprocess.run(
        [*WHEELBARROW, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def run_ok(env: dict[str, str], *args: str | Path) -> dict[str, Any]:
    """:func:`run` with ``--json`` that must succeed; its JSON report."""
    done = run(env, *args, "--json")
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report
