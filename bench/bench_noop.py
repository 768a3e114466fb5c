"""Benchmark the no-op build and the Heroku buildpack's warm compiles, as whole processes.

Rows (examples/textsim: numpy + scipy + scikit-learn + flask + gunicorn):

- ``wheelbarrow build APP`` with nothing changed (its wheelhouse in the store), against
  ``python -I -S -c pass`` (a bare interpreter start) and against the same build at a git
  revision of src/ (``--baseline REV``, from ``git archive``: today's code before a change);
- the classic buildpack's ``bin/compile`` (as committed at ``--buildpack REV``, default
  HEAD) of the unchanged app with a warm build cache (a fresh BUILD_DIR each time, as on
  the platform), the stack's Python being the one running this (its directory first on
  PATH: a binary, as on Heroku's stacks, not a version manager's shim);
- ``bin/compile`` after one changed pin (flask 3.1.2 -> 3.1.1), each run from a copy of the
  cache as the unchanged app left it, all copies made before the first run: it locks,
  fetches one wheel and derives the environment every time.

Each command runs N times after warm-up runs (the no-op rows interleaved), and the table
gives the median and the minimum wall time, the median CPU time (user + system, every
process waited for included) and the peak memory (``ru_maxrss`` of ``wait4``: the largest
process of the command), with the load average at the start and at the end. Progress goes
to stderr.

    python bench/bench_noop.py [--only noop,heroku] [--repeat N] [--baseline REV]
                               [--workdir DIR] [--json FILE]

wheelbarrow is timed as users run it: installed from this checkout as a wheel with its
bytecode. The first build and the first compile (tool install, downloads) are not timed.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench_textsim import Sample, load_average, measure
from bench_warm_install import baseline_src
from harness import REPO, clean_environ, install_tools, log

APP_SOURCE = REPO / "examples" / "textsim"
# The revision before the no-op build's shortcut: today's no-op build, for the ratio.
DEFAULT_BASELINE = "ad1c109~1"
PIN, CHANGED_PIN = "flask==3.1.2", "flask==3.1.1"
NOOP, BASELINE, BARE = "no-op build", "no-op build at the baseline", "python -I -S -c pass"
UNCHANGED, CHANGED = "Heroku: second compile, unchanged", "Heroku: compile after a changed pin"
TARGETS = {NOOP: 0.1, UNCHANGED: 1.5, CHANGED: 3.0}  # seconds
RATIO_TARGET = 0.5  # the no-op build against the baseline's
Cmd = list[str | Path]


class Runs:
    """The samples gathered, by row, and each row's command for the table."""

    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = {}
        self.commands: dict[str, str] = {}

    def add(self, row: str, cmd: Sequence[str | Path], sample: Sample) -> None:
        self.samples.setdefault(row, []).append(sample)
        self.commands[row] = shlex.join(str(c) for c in cmd)
        log(f"{row}: {sample.seconds:.3f} s, peak {sample.peak_mb:.0f} MB")

    def median(self, row: str) -> float | None:
        got = self.samples.get(row)
        return statistics.median(s.seconds for s in got) if got else None

    def peak(self, row: str) -> float | None:
        got = self.samples.get(row)
        return max(s.peak_mb for s in got) if got else None

    def cpu(self, row: str) -> float | None:
        """The median CPU seconds (user + system, children included), where the samples
        have them: a figure the machine's load changes less than the wall time."""
        got = [getattr(s, "cpu", None) for s in self.samples.get(row, [])]
        known = [c for c in got if isinstance(c, float)]
        return statistics.median(known) if known and len(known) == len(got) else None


def noop_rows(work: Path, tools: Path, args: argparse.Namespace, runs: Runs) -> None:
    """The no-op build now, at the baseline, and a bare interpreter start, interleaved."""
    app, env = work / "app", clean_environ() | {"WHEELBARROW_STORE": str(work / "store")}
    env |= {"UV_CACHE_DIR": str(work / "uv-cache")}
    shutil.rmtree(app, ignore_errors=True)
    shutil.copytree(APP_SOURCE, app, ignore=shutil.ignore_patterns("__pycache__"))
    python = tools / "python"
    rows: dict[str, tuple[Cmd, dict[str, str], str]] = {
        NOOP: ([tools / "wheelbarrow", "build", app], env, "is up to date"),
        BARE: ([python, "-I", "-S", "-c", "pass"], env, ""),
    }
    if args.baseline:
        src = baseline_src(args.baseline, work)
        # The console script's own two lines, with the old src/ first on the path.
        entry = "import sys; from wheelbarrow.cli import main; sys.exit(main())"
        old = env | {"PYTHONPATH": str(src)}
        rows[BASELINE] = ([python, "-c", entry, "build", app], old, "is up to date")
    log("first build of the app (fetches the wheelhouse; not timed)")
    measure([tools / "wheelbarrow", "build", app], env)
    for r in range(args.warm_up + args.repeat):
        for row, (cmd, row_env, expect) in rows.items():
            sample = measure(cmd, row_env, expect)
            if r >= args.warm_up:
                runs.add(row, cmd, sample)


def heroku_rows(work: Path, args: argparse.Namespace, runs: Runs) -> None:
    """bin/compile of the unchanged app with a warm cache, then after one changed pin."""
    base = clean_environ() | {"STACK": "heroku-24", "WHEELBARROW_SLUG_HOME": str(work / "slug")}
    # The stack's python3.X is a binary on Heroku, not a version manager's shell shim that
    # starts another program each time it runs: this Python's own directory comes first.
    stack_bin = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable))).parent
    base["PATH"] = f"{stack_bin}{os.pathsep}{base.get('PATH', '')}"
    env_dir, cache, build = work / "env-dir", work / "cache", work / "build"
    env_dir.mkdir(parents=True, exist_ok=True)
    # The buildpack as committed at REV: edits to the checkout meanwhile would change the
    # tool's stamp, and every compile would install it again.
    buildpack = buildpack_at(args.buildpack, work)
    compile_cmd: Cmd = [buildpack / "bin" / "compile", build, cache, env_dir]

    def fresh_build(pin: str) -> None:  # a new BUILD_DIR, as each build on the platform
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(APP_SOURCE, build, ignore=shutil.ignore_patterns("__pycache__"))
        requirements = build / "requirements.txt"
        requirements.write_text(requirements.read_text().replace(PIN, pin))

    log("first compile (installs the tool, fills the cache; not timed)")
    shutil.rmtree(cache, ignore_errors=True)
    fresh_build(PIN)
    measure(compile_cmd, base)
    for r in range(args.warm_up + args.repeat):
        fresh_build(PIN)
        sample = measure(compile_cmd, base, "reusing the environment from the cache")
        if r >= args.warm_up:
            runs.add(UNCHANGED, compile_cmd, sample)
    # Each changed-pin compile gets a copy of the cache as the unchanged app left it, all made
    # before the first and renamed into place (the cache's path stays the one its store
    # records): on the platform the cache is unpacked onto a new disk just before the
    # compile, with nothing deleted, while deleting thousands of files just before a run (the
    # last run's cache) makes ext4 slower at creating them (it steps over recently freed
    # inodes), and the runs grew slower one after the other (2.4 s to 4.3 s).
    log(f"copying the warm cache {args.repeat} times (not timed)")
    copies = [work / f"cache-changed-{r}" for r in range(args.repeat)]
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(cache, copy, symlinks=True)
    used = []
    for r, copy in enumerate(copies):
        used.append(cache.rename(work / f"cache-used-{r}"))
        copy.rename(cache)
        fresh_build(CHANGED_PIN)
        sample = measure(compile_cmd, base, "changed: flask 3.1.2 -> 3.1.1")
        runs.add(CHANGED, compile_cmd, sample)
    for old in used:
        shutil.rmtree(old)


def buildpack_at(rev: str, work: Path) -> Path:
    """The repository at ``rev``, unpacked from ``git archive`` (the buildpack's directory)."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True
    ).stdout
    target = work / "buildpack"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        archive.extractall(target, filter="data")
    return target


def speed_rows(runs: Runs, baseline: str | None) -> list[dict[str, object]]:
    """The rows bench_speed.py puts in its table (its Row's fields)."""
    rows: list[dict[str, object]] = []

    def row(
        figure: str, wb: str, peer: str, peer_row: str | None, target: str, met: bool | None
    ) -> None:
        rows.append(
            {
                "figure": figure,
                "wb": runs.median(wb),
                "peer": peer,
                "peer_value": runs.median(peer_row) if peer_row else None,
                "target": target,
                "met": met,
                "wb_peak": runs.peak(wb),
                "peer_peak": runs.peak(peer_row) if peer_row else None,
                "wb_cpu": runs.cpu(wb),
                "peer_cpu": runs.cpu(peer_row) if peer_row else None,
            }
        )

    def within(name: str) -> bool | None:
        median = runs.median(name)
        return None if median is None else median <= TARGETS[name]

    if NOOP in runs.samples:
        row("no-op build, whole process", NOOP, f"`{BARE}`", BARE, "≤ 0.1 s", within(NOOP))
        now, before = runs.median(NOOP), runs.median(BASELINE)
        if now is not None and before is not None:
            met = now <= RATIO_TARGET * before
            row("no-op build against today's", NOOP, f"at {baseline}", BASELINE, "≤ 0.5x", met)
    for figure in (UNCHANGED, CHANGED):
        if figure in runs.samples:
            row(figure, figure, "", None, f"≤ {TARGETS[figure]:g} s", within(figure))
    return rows


def table(runs: Runs, header: str) -> str:
    lines = [header, "", "| row | median | min | CPU | peak RSS | command |"]
    lines.append("|---|---:|---:|---:|---:|---|")
    for row, samples in runs.samples.items():
        times = [s.seconds for s in samples]
        median, low, cpu = statistics.median(times), min(times), runs.cpu(row)
        lines.append(
            f"| {row} (n={len(times)}) | {_time(median)} | {_time(low)} | "
            f"{_time(cpu) if cpu is not None else 'n/a'} | {runs.peak(row):.0f} MB | "
            f"`{runs.commands[row]}` |"
        )
    bare, now, before = runs.median(BARE), runs.median(NOOP), runs.median(BASELINE)
    notes = []
    if now is not None and bare:
        notes.append(f"no-op build = {now / bare:.1f}x `{BARE}`")
    if now is not None and before:
        notes.append(f"{now / before:.2f}x the baseline's")
    for row, limit in TARGETS.items():
        if (got := runs.median(row)) is not None:
            notes.append(f"{row} {'within' if got <= limit else 'over'} {limit:g} s")
    return "\n".join(lines) + ("\n\n" + "; ".join(notes) + "." if notes else "")


def _time(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="noop,heroku", help="rows: noop, heroku (both)")
    parser.add_argument("--repeat", type=int, default=10, metavar="N", help="runs per row")
    parser.add_argument("--warm-up", type=int, default=2, metavar="N", help="untimed runs first")
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        metavar="REV",
        help=f"the revision whose no-op build is today's (default {DEFAULT_BASELINE}; '' none)",
    )
    parser.add_argument(
        "--buildpack",
        default="HEAD",
        metavar="REV",
        help="the revision whose bin/compile is timed (default HEAD, as committed)",
    )
    parser.add_argument("--workdir", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows and runs")
    args = parser.parse_args(argv)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    if not only or only - {"noop", "heroku"}:
        parser.error("--only takes noop, heroku or both")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    work = args.workdir.absolute() if args.workdir else Path(tempfile.mkdtemp(prefix="wb-noop-"))
    work.mkdir(parents=True, exist_ok=True)
    load_at_start = load_average()
    runs = Runs()
    try:
        if "noop" in only:
            tools = install_tools(work, clean_environ() | {"UV_CACHE_DIR": str(work / "uv")})
            noop_rows(work, tools, args, runs)
        if "heroku" in only:
            heroku_rows(work, args, runs)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    header = (
        f"No-op build and Heroku warm compiles, {datetime.date.today().isoformat()}, Python "
        f"{sys.version.split()[0]}, load average {load_at_start} at the start and "
        f"{load_average()} at the end: `{shlex.join(sys.orig_argv)}`"
    )
    print(table(runs, header))
    if args.json:
        raw = {
            "command": sys.orig_argv,
            "load": [load_at_start, load_average()],
            "speed_rows": speed_rows(runs, args.baseline or None),
            "runs": {
                row: [[s.seconds, s.peak_mb, getattr(s, "cpu", None)] for s in xs]
                for row, xs in runs.samples.items()
            },
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
