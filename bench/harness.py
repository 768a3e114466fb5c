"""What the benchmarks share: a clean environment, timed commands, the tools venv."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Machine settings that would point pip or uv elsewhere than their default index, change
# how they build, or stop Python writing bytecode; each benchmark sets its own caches.
DROPPED = {"PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PYTHONDONTWRITEBYTECODE"}
DROPPED |= {"PIP_CACHE_DIR", "UV_CACHE_DIR", "WHEELBARROW_STORE", "VIRTUAL_ENV"}


class CommandFailed(Exception):
    """A measured or set-up command exited non-zero, or did not do what was asked."""


def log(text: str) -> None:
    """A progress line on stderr (stdout is the report)."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def clean_environ(*, drop_prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment without the settings above, with pip and uv unconfigured."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in DROPPED and not (drop_prefixes and k.startswith(drop_prefixes))
    }
    return base | {"PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1"}


def run(
    args: Sequence[str | Path], env: Mapping[str, str], expect: str = ""
) -> tuple[float, str, str]:
    """Run a command with output captured; returns its wall time, stdout and stderr.

    Fails loudly when it exits non-zero or its stdout lacks ``expect``.
    """
    cmd = [str(a) for a in args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or expect not in proc.stdout:
        why = f"exited with {proc.returncode}" if proc.returncode else f"did not print {expect!r}"
        out, err = proc.stdout[-3000:], proc.stderr[-6000:]
        raise CommandFailed(f"{shlex.join(cmd)} {why}\n--- stdout\n{out}\n--- stderr\n{err}")
    return seconds, proc.stdout, proc.stderr


def fresh(path: Path) -> Path:
    """``path`` as a new empty directory."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def install_tools(work: Path, env: Mapping[str, str]) -> Path:
    """A venv at ``work/tools`` with wheelbarrow (non-editable, bytecode compiled) and pip.

    wheelbarrow is timed as users run it: installed from the repository as a
    wheel, with its .pyc files. Returns the venv's bin directory.
    """
    uv = shutil.which("uv")
    if uv is None:
        raise CommandFailed("uv is needed on PATH to set up the benchmark")
    log(f"setting up in {work}")
    tools = work / "tools"
    run([sys.executable, "-m", "venv", "--without-pip", tools], env)
    setup_env = dict(env) | {"UV_CACHE_DIR": str(work / "setup-uv-cache")}
    run(
        [
            uv,
            "pip",
            "install",
            "--compile-bytecode",
            "--python",
            tools / "bin" / "python",
            REPO,
            "pip",
        ],
        setup_env,
    )
    return tools / "bin"
