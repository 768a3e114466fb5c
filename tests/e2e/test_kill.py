"""kill -9 at random points of build and install: the store stays sound and the next run works.

Each trial starts a real ``wheelbarrow build`` (or ``install``) process against a local
index, kills it with SIGKILL after a random delay within its measured duration, then
requires ``wheelbarrow verify`` to find the store clean and the same command, run again,
to succeed. The app changes a pin every trial, so every build fetches and lays out a new
wheelhouse and every install derives a new environment: the kills land in real work.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import build_local_index, make_wheel, serve_local_index

pytestmark = pytest.mark.slow

TRIALS = 12
BUDGET_SECONDS = 90.0  # the whole test stops starting trials after this


def wheelbarrow(*args: str | Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "wheelbarrow", *map(str, args), "--store", str(store)]


def run_ok(args: list[str]) -> float:
    start = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return time.monotonic() - start


def kill_during(args: list[str], after: float) -> None:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def verify_clean(store: Path) -> None:
    done = subprocess.run(
        wheelbarrow("verify", store=store), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"verify found problems:\n{done.stdout}\n{done.stderr}"


def make_dists(directory: Path, versions: int) -> None:
    """A package with a version per trial, beside a larger one with many files."""
    for v in range(1, versions + 1):
        make_wheel(
            directory,
            "moving",
            f"1.{v}",
            files={
                "moving/__init__.py": f"__version__ = '1.{v}'\n",
                **{f"moving/m{i}.py": f"X = {i} * {v}\n" for i in range(150)},
            },
        )
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    make_wheel(
        directory,
        "bulky",
        "1.0",
        files={
            "bulky/__init__.py": "VALUE = 42\n",
            "bulky/blob.bin": rng.randbytes(3 << 20),
            **{f"bulky/sub/f{i}.py": f"Y = {i}\n" for i in range(600)},
        },
    )


def test_kill_at_random_points_of_build_and_install(tmp_path: Path) -> None:
    """After SIGKILL anywhere in build or install, verify is clean and the next run works."""
    dists = tmp_path / "dists"
    make_dists(dists, TRIALS + 1)
    build_local_index(dists)
    store = tmp_path / "store"
    app = tmp_path / "app"
    app.mkdir()  # no Python pin: the shape most users have
    # Kill points, reproducible by seed; not secrets.
    rng = random.Random(int(os.environ.get("WHEELBARROW_KILL_SEED", "1")))  # noqa: S311
    env = tmp_path / "env"
    started = time.monotonic()
    with serve_local_index(dists) as index:
        build = wheelbarrow("build", app, "--index-url", index.url, store=store)
        install = wheelbarrow("install", app, "--into", env, store=store)
        (app / "requirements.txt").write_text("moving==1.1\nbulky\n")
        build_time = run_ok(build)
        install_time = run_ok(install)
        trials = 0
        for trial in range(2, TRIALS + 2):
            if time.monotonic() - started > BUDGET_SECONDS:
                break
            trials += 1
            (app / "requirements.txt").write_text(f"moving==1.{trial}\nbulky\n")
            kill_during(build, rng.uniform(0.05, build_time * 1.2))
            verify_clean(store)
            run_ok(build)
            kill_during(install, rng.uniform(0.05, install_time * 1.2))
            verify_clean(store)
            run_ok(install)
            done = subprocess.run(
                [env / "bin" / "python", "-c", "import moving, bulky; print(moving.__version__)"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert done.stdout.strip() == f"1.{trial}"
        assert trials >= 4, f"only {trials} trials fitted in the budget"
    # What killed runs left in the store's scratch space is gone once runs completed.
    leftovers = [p.name for p in (store / "tmp").iterdir()] if (store / "tmp").exists() else []
    assert leftovers == []
    beside = [p.name for p in env.parent.iterdir() if p.name.startswith(".env.wheelbarrow-")]
    assert beside == []
