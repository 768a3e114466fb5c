"""Benchmark parallel source builds: wheelbarrow with 1 and 2 build workers, and pip wheel.

Builds four independent C-extension packages from their sdists (no build dependencies
between them, only a C compiler and setuptools from PyPI needed) in one run against the
real package index: ``wheelbarrow build --no-binary ... --build-jobs 1`` and
``--build-jobs 2``, and ``pip wheel --no-binary ...`` on the same sdists. Downloads are
not measured: an untimed warm-up puts the sdists, the build requirements' wheels and the
build environment in wheelbarrow's store, and the same files in a local directory that
pip reads with ``--no-index --find-links``. Each timed run rebuilds every package.
Prints a Markdown table of medians on stdout; progress goes to stderr.

    python bench/bench_source_builds.py [--repeat N] [--workdir DIR] [--json FILE]

It needs the package index for the set-up and takes a few minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import CommandFailed, clean_environ, fresh, install_tools, log, run

# Small packages with C extensions whose sdists need only cc and setuptools (no C++, no
# system libraries beyond libc). ujson was left out: its sdist compiles C++.
PACKAGES = ("markupsafe==3.0.2", "simplejson==3.20.1", "msgpack==1.1.0", "bitarray==3.4.2")
NAMES = tuple(p.split("==")[0] for p in PACKAGES)
# What pip and wheelbarrow assume for an sdist without a [build-system] table (PEP 517);
# wheel too, which old setuptools asked for at build time.
LEGACY_REQUIRES = ("setuptools>=40.8.0", "wheel")
WB1, WB2, PIP = "wheelbarrow, 1 worker", "wheelbarrow, 2 workers", "pip wheel"
ROWS = (WB1, WB2, PIP)
Timings = dict[str, list[float]]
Cmd = list[str | Path]


def build_requires(sdist: Path) -> list[str]:
    """The ``[build-system] requires`` of an sdist (the legacy default when it has none)."""
    with tarfile.open(sdist) as tar:
        member = next(
            (
                m
                for m in tar.getmembers()
                if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")
            ),
            None,
        )
        if member is None:
            return list(LEGACY_REQUIRES)
        raw = tar.extractfile(member)
        data: dict[str, Any] = tomllib.loads(raw.read().decode()) if raw else {}
    requires = data.get("build-system", {}).get("requires")
    return [str(r) for r in requires] if isinstance(requires, list) else list(LEGACY_REQUIRES)


class Bench:
    """The work directory, the tools set up in it, and the timings gathered."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.app = work / "app"
        self.store = work / "wb-store"
        self.links = work / "pip-links"  # sdists + build requirements' wheels, for pip
        self.out = work / "pip-out"
        self.timings: Timings = {row: [] for row in ROWS}
        self.wb_seconds: Timings = {WB1: [], WB2: []}  # wheelbarrow's own "seconds"
        base = clean_environ(drop_prefixes=("PIP_", "UV_"))
        self.env = {
            "wheelbarrow": base | {"UV_CACHE_DIR": str(work / "wb-uv-cache")},
            "pip": base | {"PIP_CACHE_DIR": str(work / "pip-cache")},
            "setup": base | {"UV_CACHE_DIR": str(work / "setup-uv-cache")},
        }
        tools = work / "tools" / "bin"
        self.wb = tools / "wheelbarrow"
        self.pip: Cmd = [tools / "python", "-m", "pip"]
        self.requirements = self.app / "requirements.txt"
        self.versions: dict[str, str] = {}
        self.load: list[float] = []  # 1-minute load average before and after the timed runs
        no_binary = [arg for name in NAMES for arg in ("--no-binary", name)]
        self.wb_build: Cmd = [self.wb, "build", self.app, *no_binary, "--store", self.store]
        self.pip_wheel: Cmd = [
            *self.pip,
            "wheel",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            self.links,
            "--no-cache-dir",
            "--no-binary",
            ",".join(NAMES),
            "--no-deps",
            "-r",
            self.requirements,
            "-w",
            self.out,
        ]

    def record(self, row: str, seconds: float) -> None:
        self.timings[row].append(seconds)
        log(f"{row}: {seconds:.2f} s")

    def setup(self) -> None:
        """A venv with wheelbarrow (non-editable, bytecode compiled) and pip; the app."""
        install_tools(self.work, self.env["setup"])
        fresh(self.app)
        self.requirements.write_text("\n".join(PACKAGES) + "\n", encoding="utf-8")
        version = ".".join(map(str, sys.version_info[:2]))
        (self.app / ".python-version").write_text(version + "\n", encoding="utf-8")
        self.versions["wheelbarrow"] = run([self.wb, "--version"], self.env["wheelbarrow"])[1]
        self.versions["pip"] = run([*self.pip, "--version"], self.env["pip"])[1]
        self.versions["cc"] = run(["cc", "--version"], self.env["pip"])[1]
        self.versions = {k: v.split("\n")[0].split(" from ")[0] for k, v in self.versions.items()}

    def warm_up(self) -> None:
        """Untimed: fill the store, then pip's find-links directory, and build once each."""
        log("untimed warm-up: wheelbarrow build (lock, sdists, build requirements, build env)")
        self.wb_run(None)
        log("untimed warm-up: pip download of the sdists and of their build requirements")
        fresh(self.links)
        sdists = [*self.pip, "download", "--disable-pip-version-check", "--no-deps"]
        sdists += ["--no-binary", ",".join(NAMES), "-r", self.requirements, "-d", self.links]
        run(sdists, self.env["pip"])
        found = sorted(self.links.glob("*.tar.gz"))
        if len(found) != len(NAMES):
            raise CommandFailed(f"pip download gave {[p.name for p in found]}, not {NAMES} sdists")
        requires = sorted({r for sdist in found for r in build_requires(sdist)})
        log(f"build requirements: {', '.join(requires)}")
        wheels = [*self.pip, "download", "--disable-pip-version-check", "--only-binary", ":all:"]
        run([*wheels, "-d", self.links, *requires], self.env["pip"])
        have = sorted(p.name for p in self.links.glob("*.whl"))
        self.versions["pip-links"] = ", ".join(have)
        log(f"pip's find-links directory: {len(found)} sdists, wheels {', '.join(have)}")
        log("untimed warm-up: pip wheel (offline)")
        self.pip_run(record=False)
        envs = sorted(self.store.glob("envs/build-*/lib/python*/site-packages/*.dist-info"))
        self.versions["wb-build-env"] = ", ".join(p.name.removesuffix(".dist-info") for p in envs)

    def wb_run(self, jobs: int | None) -> None:
        """One wheelbarrow build; timed (and checked to rebuild all) when ``jobs`` is given."""
        cmd = [*self.wb_build, "--json"]
        if jobs is not None:
            cmd += ["--build-jobs", str(jobs)]
            # Only the built-wheel cache and the wheelhouses go: sdists, build-requirement
            # locks and wheels, and the build environment stay in the store.
            for sub in ("built", "wheelhouses"):
                shutil.rmtree(self.store / sub, ignore_errors=True)
        seconds, out, err = run(cmd, self.env["wheelbarrow"])
        report = json.loads(out)
        built = {b["name"]: b for b in report["built"]}
        if report["status"] != "built" or set(built) != set(NAMES):
            raise CommandFailed(f"wheelbarrow built {sorted(built)}, not {NAMES}:\n{out}")
        if jobs is None:
            return
        problems = [f"{n} was reused" for n, b in built.items() if b["reused"] is not False]
        problems += [f"fetched {f}" for f in report["fetched"]]
        problems += ["locked again"] if "locking" in err.lower() else []
        if problems:
            raise CommandFailed(f"wheelbarrow --build-jobs {jobs}: {'; '.join(problems)}:\n{out}")
        row = WB1 if jobs == 1 else WB2
        self.record(row, seconds)
        self.wb_seconds[row].append(float(report["seconds"]))
        self.versions["wb-repair"] = "; ".join(sorted({b["repair"] for b in built.values()}))

    def pip_run(self, *, record: bool = True) -> None:
        """One pip wheel into an empty directory; checks that every package was built."""
        fresh(self.out)
        seconds, out, _ = run(self.pip_wheel, self.env["pip"])
        made = sorted(p.name for p in self.out.glob("*.whl"))
        names = {w.split("-")[0].lower() for w in made if not w.endswith("-none-any.whl")}
        created = out.count("Created wheel for ")
        if names != set(NAMES) or created != len(NAMES):
            raise CommandFailed(f"pip wheel made {made} ({created} built), not {NAMES}:\n{out}")
        if record:
            self.record(PIP, seconds)
        self.versions["pip-wheels"] = ", ".join(made)

    def measure(self, repeat: int) -> None:
        self.load.append(os.getloadavg()[0])
        for i in range(repeat):
            log(f"timed run {i + 1} of {repeat}")
            # Alternate which worker count goes first, so drift favours neither.
            for jobs in (1, 2) if i % 2 == 0 else (2, 1):
                self.wb_run(jobs)
            self.pip_run()
        self.load.append(os.getloadavg()[0])


def secs(value: float) -> str:
    return f"{value:.2f} s"


def report(bench: Bench, medians: Mapping[str, float], repeat: int) -> str:
    nproc = len(os.sched_getaffinity(0))
    labels = {
        WB1: f"wheelbarrow, 1 worker (`--build-jobs 1`, n={repeat})",
        WB2: f"wheelbarrow, 2 workers (`--build-jobs 2`, n={repeat})",
        PIP: f"pip wheel, sequential (n={repeat})",
    }
    base = medians[WB2]
    speedup = medians[WB1] / medians[WB2]
    met = medians[WB2] < medians[WB1]
    lines = [
        f"## source builds benchmark, {datetime.date.today().isoformat()}, Python "
        f"{sys.version.split()[0]}, nproc {nproc}: `{shlex.join(sys.orig_argv)}`",
        "",
        f"{bench.versions['wheelbarrow']}, {bench.versions['pip']}, {bench.versions['cc']}; "
        f"{len(PACKAGES)} independent sdists built from source: {', '.join(PACKAGES)}; "
        "medians of wall time.",
        "",
        "| build | median wall time | range | ÷ wb 2 workers |",
        "|---|---:|---:|---:|",
    ]
    for row in ROWS:
        runs = bench.timings[row]
        spread = f"{min(runs):.2f}-{max(runs):.2f} s"
        lines.append(
            f"| {labels[row]} | {secs(medians[row])} | {spread} | {medians[row] / base:.2f}x |"
        )
    lines += [
        "",
        f"2 workers vs 1: {speedup:.2f}x faster",
        "",
        "- wheelbarrow: `wheelbarrow build APP --no-binary NAME... --store STORE --json "
        "--build-jobs N`. An untimed warm-up build filled the store with the lock, the sdists, "
        "the build requirements' locks and wheels, and the build environment "
        f"({bench.versions.get('wb-build-env') or '?'}), which every timed run reuses. Before "
        "each timed run `STORE/built/` (the built-wheel cache) and `STORE/wheelhouses/` were "
        "deleted; each run's `--json` showed all four packages built (`reused: false`), "
        "nothing fetched and no locking. Its times include planning, unpacking and "
        f"auditwheel repair ({bench.versions.get('wb-repair', '?')}).",
        "- pip: `python -m pip wheel --disable-pip-version-check --no-index --find-links "
        "LINKS --no-cache-dir --no-binary " + ",".join(NAMES) + " --no-deps -r requirements.txt "
        "-w OUT` into an empty OUT. LINKS holds the four sdists and the build requirements' "
        f"wheels ({bench.versions.get('pip-links', '?')}), downloaded untimed, so pip never "
        "reaches the network while timed; `--no-cache-dir` means pip's cache held nothing "
        "and no built wheel was reused: every run built all four (checked: four `Created "
        "wheel` lines, four binary wheels). pip builds one package after another and makes "
        "a new isolated build environment (setuptools installed from LINKS) for each; it "
        "does not repair wheels (it makes `linux_x86_64` ones). One untimed pip run came "
        "first.",
        "- Each repeat ran wheelbarrow with 1 and 2 workers (alternating which first), then "
        "pip, on one machine, one after another. Load average (1 min) before and after the "
        f"timed runs: {' and '.join(f'{x:.2f}' for x in bench.load)} (anything else running "
        "competes for the same cores).",
    ]
    if nproc < 2:
        lines.append(f"- this machine has {nproc} core(s): 2 workers cannot run at once")
    lines += [
        "",
        f"Target (2 workers faster than 1): {'met' if met else 'NOT met'} "
        f"({secs(medians[WB2])} vs {secs(medians[WB1])}).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark wheelbarrow's parallel source builds (1 vs 2 workers) and pip."
    )
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per row (3)")
    parser.add_argument("--workdir", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write all raw timings")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    work = args.workdir.absolute() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work)
    try:
        bench.setup()
        bench.warm_up()
        bench.measure(args.repeat)
    except CommandFailed as exc:
        print(f"bench: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    medians = {row: statistics.median(ts) for row, ts in bench.timings.items()}
    print(report(bench, medians, args.repeat))
    if args.json:
        now = datetime.datetime.now().isoformat(timespec="seconds")
        raw: dict[str, object] = {
            "command": sys.orig_argv,
            "date": now,
            "python": sys.version.split()[0],
            "nproc": len(os.sched_getaffinity(0)),
            "packages": list(PACKAGES),
            "versions": bench.versions,
            "commands": {
                "wheelbarrow": [str(a) for a in bench.wb_build] + ["--json", "--build-jobs", "N"],
                "pip": [str(a) for a in bench.pip_wheel],
            },
            "runs": bench.timings,
            "wheelbarrow_reported_seconds": bench.wb_seconds,
            "loadavg_before_after": bench.load,
            "medians": medians,
            "speedup_2_vs_1": medians[WB1] / medians[WB2],
            "target_met": medians[WB2] < medians[WB1],
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
