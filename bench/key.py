"""Benchmark `wheelbarrow key APP` as a whole command, against Python's and uv's own start-up.

A CI job runs `wheelbarrow key` before restoring its cache, so the whole command counts:
interpreter start, imports, reading the app and its lock, hashing. Each command runs N times
(after two warm-up runs), interleaved so that all see the same machine, as hyperfine would;
the table gives the minimum and the median wall time. `--baseline REV` adds the same command
at a git revision of src/ (from `git archive`), to compare with the code before a change.

    python bench/key.py [--app examples/textsim] [--repeat 20] [--baseline REV]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_warm_install import baseline_src
from harness import REPO, CommandFailed, clean_environ, log, run

WARM_UP = 2
NEEDED = "argparse, dataclasses, hashlib, json, tomllib, packaging.requirements, packaging.pylock"


def commands(args: argparse.Namespace, work: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each row's command line and environment."""
    env = clean_environ()
    python = sys.executable
    script = Path(python).parent / "wheelbarrow"
    app = str(args.app.absolute())
    rows: dict[str, tuple[list[str], dict[str, str]]] = {
        "wheelbarrow key": ([str(script), "key", app], env),
    }
    if args.baseline:
        src = baseline_src(args.baseline, work)
        # The console script's own two lines, with the old src/ first on the path.
        entry = "import sys; from wheelbarrow.cli import main; sys.exit(main())"
        old = env | {"PYTHONPATH": str(src)}
        rows[f"wheelbarrow key at {args.baseline}"] = ([python, "-c", entry, "key", app], old)
    rows["python -c pass"] = ([python, "-c", "pass"], env)
    # The floor: the standard library and packaging modules that reading an app and its lock
    # needs (argparse, dataclasses, TOML, PEP 508 and PEP 751), without wheelbarrow's own.
    rows["python -c 'import (what key needs)'"] = ([python, "-c", f"import {NEEDED}"], env)
    # The uv wheelbarrow itself runs (beside this Python), not a shim on PATH.
    beside = Path(python).parent / "uv"
    uv = str(beside) if beside.exists() else shutil.which("uv") or "uv"
    rows["uv --version"] = ([uv, "--version"], env)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, default=REPO / "examples" / "textsim")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--baseline", metavar="REV", help="a git revision to compare with")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wb-bench-key-"))
    rows = commands(args, work)
    keys = {
        name: run(cmd, env)[1].strip()
        for name, (cmd, env) in rows.items()
        if name.startswith("wheelbarrow")
    }
    if len(set(keys.values())) > 1:
        raise CommandFailed(f"the revisions print different keys: {keys}")
    times: dict[str, list[float]] = {name: [] for name in rows}
    for r in range(WARM_UP + args.repeat):
        for name, (cmd, env) in rows.items():
            seconds = run(cmd, env)[0]
            if r >= WARM_UP:
                times[name].append(seconds)
    log(f"key {next(iter(keys.values()))}, {args.repeat} runs each")
    shutil.rmtree(work, ignore_errors=True)
    print(f"Whole-command wall time, {args.repeat} runs each (after {WARM_UP} warm-up runs)\n")
    print("| command | min | median |")
    print("|---|---:|---:|")
    for name, seconds in times.items():
        low, middle = min(seconds) * 1000, statistics.median(seconds) * 1000
        print(f"| `{name}` | {low:.1f} ms | {middle:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
