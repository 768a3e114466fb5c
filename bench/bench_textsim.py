"""Benchmark wheelbarrow against pip and uv on the example app (examples/textsim).

Measures, in one run against the real package index, for numpy + scipy + scikit-learn +
flask + gunicorn: a cold build (lock + download, empty store and caches), a no-op build,
warm installs with and without bytecode, and a cold install (first environment of a
wheelhouse), each with the peak memory of its largest process (the command or any process
it waited for: uv, compile workers). Prints a Markdown table of medians on stdout;
progress goes to stderr. bench/bench_speed.py reuses its rows.

    python bench/bench_textsim.py [--repeat N] [--workdir DIR] [--json FILE]

Run it with the Python the app targets (its .python-version). It takes a few minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import harness
from harness import REPO, CommandFailed, clean_environ, fresh, install_tools, log

APP_SOURCE = REPO / "examples" / "textsim"
IMPORT_CHECK = "import sklearn, scipy, numpy, flask"
COLD_BUILD, NOOP_BUILD, COLD_INSTALL = "cold build", "no-op build", "cold install"
COLD_BUILD_LOCKED = "cold build, lock current"
WARM, WARM_NO_PYC = "warm install, bytecode", "warm install, no bytecode"
TOOLS = ("wheelbarrow", "pip", "uv")
Timings = dict[str, dict[str, list[float]]]
Cmd = list[str | Path]


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured command: wall time, the peak RSS of its largest process, its stdout, and
    its CPU time (user + system, its own and that of every process it waited for)."""

    seconds: float
    peak_mb: float
    stdout: str
    cpu: float = 0.0


def measure(args: Sequence[str | Path], env: Mapping[str, str], expect: str = "") -> Sample:
    """Run a command as :func:`harness.run` does, also taking its peak memory.

    The peak is ``ru_maxrss`` from ``wait4``: the largest resident set of the
    command and of every process it waited for (uv, compile workers), so the
    largest single process of the tree.
    """
    cmd = [str(a) for a in args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0 or expect not in stdout:
        why = f"exited with {proc.returncode}" if proc.returncode else f"did not print {expect!r}"
        raise CommandFailed(
            f"{shlex.join(cmd)} {why}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-6000:]}"
        )
    return Sample(seconds, usage.ru_maxrss / 1024, stdout, usage.ru_utime + usage.ru_stime)


def run(args: Sequence[str | Path], env: Mapping[str, str], expect: str = "") -> tuple[float, str]:
    """:func:`harness.run`, keeping wall time and stdout."""
    seconds, out, _ = harness.run(args, env, expect)
    return seconds, out


class Bench:
    """The work directory, the tools set up in it, and the timings gathered."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.app = work / "app"
        self.store = work / "wb-store"
        self.timings: Timings = {}
        self.peaks: Timings = {}  # MB, as the timings
        self.cpu: Timings = {}  # seconds of CPU, as the timings
        base = clean_environ()
        wb_env = {"WHEELBARROW_STORE": str(self.store), "UV_CACHE_DIR": str(work / "wb-uv-cache")}
        self.env = {
            "wheelbarrow": base | wb_env,
            "pip": base | {"PIP_CACHE_DIR": str(work / "pip-cache")},
            "uv": base | {"UV_CACHE_DIR": str(work / "uv-cache")},
        }
        tools = work / "tools" / "bin"
        self.wb, self.uv = tools / "wheelbarrow", tools / "uv"
        self.pip: Cmd = [tools / "python", "-m", "pip"]
        self.requirements = self.app / "requirements.txt"
        self.wheelhouse = Path()
        self.versions: dict[str, str] = {}

    def record(self, row: str, tool: str, sample: Sample) -> None:
        self.timings.setdefault(row, {}).setdefault(tool, []).append(sample.seconds)
        self.peaks.setdefault(row, {}).setdefault(tool, []).append(sample.peak_mb)
        self.cpu.setdefault(row, {}).setdefault(tool, []).append(sample.cpu)
        log(
            f"{row}: {tool} {sample.seconds:.3f} s, CPU {sample.cpu:.2f} s, "
            f"peak {sample.peak_mb:.0f} MB, load {os.getloadavg()[0]:.1f}"
        )

    def setup(self) -> None:
        """A venv with wheelbarrow (non-editable, bytecode compiled) and pip; the app copied."""
        install_tools(self.work, self.env["uv"])
        shutil.rmtree(self.app, ignore_errors=True)
        # Without a lock of this checkout's: the first cold build locks afresh.
        ignore = shutil.ignore_patterns("__pycache__", "pylock*.toml")
        shutil.copytree(APP_SOURCE, self.app, ignore=ignore)
        for tool, cmd in (("wheelbarrow", [self.wb]), ("uv", [self.uv]), ("pip", self.pip)):
            self.versions[tool] = run([*cmd, "--version"], self.env[tool])[1].split("\n")[0]

    def new_venv(self, name: str) -> Path:
        """An empty venv (no pip), made before the timed command."""
        dest = self.work / "envs" / name
        shutil.rmtree(dest, ignore_errors=True)
        run([sys.executable, "-m", "venv", "--without-pip", dest], self.env["pip"])
        return dest

    def pip_install(self, row: str, name: str, *extra: str) -> None:
        dest = self.new_venv(name)
        cmd = [*self.pip, "--python", dest / "bin/python", "install", "--no-index", *extra]
        cmd += ["-f", self.wheelhouse, "-r", self.requirements]
        self.record(row, "pip", measure(cmd, self.env["pip"]))
        shutil.rmtree(dest)

    def uv_install(self, row: str, name: str, *extra: str, cache: Path | None = None) -> None:
        dest = self.new_venv(name)
        cmd: Cmd = [self.uv, "pip", "install", "--offline", *extra, "--python", dest / "bin/python"]
        cmd += ["--no-index", "--find-links", self.wheelhouse, "-r", self.requirements]
        env = self.env["uv"] | ({"UV_CACHE_DIR": str(cache)} if cache else {})
        sample = measure(cmd, env)
        if row:
            self.record(row, "uv", sample)
        shutil.rmtree(dest)

    def wb_install(self, row: str, name: str, expect: str) -> Path:
        dest = self.work / "envs" / name
        shutil.rmtree(dest, ignore_errors=True)
        cmd: Cmd = [self.wb, "install", self.app, "--into", dest]
        sample = measure(cmd, self.env["wheelbarrow"], expect)
        if row:
            self.record(row, "wheelbarrow", sample)
        return dest

    def builds(self, repeat: int, cold: int) -> None:
        """Rows 1 to 3 (cold builds locking afresh, then with the lock they wrote), then the
        wheelhouse the installs use."""
        for _ in range(cold):
            self.cold_build(locked=False)
        for _ in range(cold):
            self.cold_build(locked=True)
        for _ in range(repeat):
            self.noop_build()
        self.take_wheelhouse()

    def pip_download(self, locked: bool) -> Cmd:
        """pip's peer of a cold build: the requirements (pip resolves), or the lock's pins
        with their hashes and no dependencies (the same files as the lock)."""
        cmd: Cmd = [*self.pip, "download", "--only-binary", ":all:", "--no-cache-dir"]
        cmd += ["-d", self.work / "pip-download"]
        if locked:
            return [*cmd, "--no-deps", "--require-hashes", "-r", self.pins()]
        return [*cmd, "-r", self.requirements]

    def pins(self) -> Path:
        """The app's pylock.toml as pip requirements: every package pinned, with the sha256
        of each of its wheels."""
        import tomllib

        lock = tomllib.loads((self.app / "pylock.toml").read_text(encoding="utf-8"))
        lines = []
        for package in lock["packages"]:
            hashes = [w["hashes"]["sha256"] for w in package.get("wheels", [])]
            lines.append(
                f"{package['name']}=={package['version']}"
                + "".join(f" --hash=sha256:{h}" for h in hashes)
            )
        path = self.work / "pins.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def cold_build(self, *, locked: bool, row: str | None = None) -> None:
        """One cold build of each (empty store and caches): with the app's current lock
        kept (``locked``: fetch only), or with no lock (lock, then fetch)."""
        row = row or (COLD_BUILD_LOCKED if locked else COLD_BUILD)
        for path in (self.store, self.work / "wb-uv-cache"):
            shutil.rmtree(path, ignore_errors=True)
        if not locked:
            (self.app / "pylock.toml").unlink(missing_ok=True)
        elif not (self.app / "pylock.toml").is_file():
            raise CommandFailed("a locked cold build needs the app's lock: build it once first")
        self.record(
            row,
            "wheelbarrow",
            measure([self.wb, "build", self.app], self.env["wheelbarrow"], " built: "),
        )
        peer = self.pip_download(locked)
        fresh(self.work / "pip-download")
        self.record(row, "pip", measure(peer, self.env["pip"]))

    def noop_build(self) -> None:
        """One no-op build (nothing changed) and pip's download of the same, again."""
        wb = measure([self.wb, "build", self.app], self.env["wheelbarrow"], "up to date")
        self.record(NOOP_BUILD, "wheelbarrow", wb)
        fresh(self.work / "pip-download")
        self.record(NOOP_BUILD, "pip", measure(self.pip_download(False), self.env["pip"]))

    def take_wheelhouse(self) -> None:
        """The built wheelhouse, for the installs (the app built, if it was not)."""
        report = json.loads(run([self.wb, "build", "--json", self.app], self.env["wheelbarrow"])[1])
        self.wheelhouse = Path(report["wheelhouse"])
        wheels = sorted(self.wheelhouse.glob("*.whl"))
        size = sum(w.stat().st_size for w in wheels) / 1e6
        self.versions["wheelhouse"] = f"{len(wheels)} wheels, {size:.0f} MB"

    def cold_install(self, i: int, *, pip: bool = True) -> Path:
        """One cold install of each: wheelbarrow with no stored environment, pip, and uv with
        a new empty cache, all with bytecode.

        Each tool runs right after its own last output is deleted (wheelbarrow's stored
        environment, uv's cache), and the two take turns at going first: creating files
        just after thousands were deleted costs several times the kernel time on ext4 (its
        inode allocator steps over recently freed inodes), so whoever always ran second,
        after both deletions, would pay for both.
        """
        made = Path()

        def wheelbarrow() -> None:
            nonlocal made
            shutil.rmtree(self.store / "envs", ignore_errors=True)
            made = self.wb_install(COLD_INSTALL, f"wb-cold-{i}", "built and installed")

        def uv() -> None:
            for old in self.work.glob("uv-cold-cache-*"):
                shutil.rmtree(old)
            cache = fresh(self.work / f"uv-cold-cache-{i}")
            self.uv_install(COLD_INSTALL, f"uv-cold-{i}", "--compile-bytecode", cache=cache)

        for tool in (wheelbarrow, uv) if i % 2 == 0 else (uv, wheelbarrow):
            tool()
        if pip:
            self.pip_install(COLD_INSTALL, f"pip-cold-{i}")
        return made

    def installs(self, repeat: int, cold: int) -> list[Path]:
        """Rows 3 to 5; returns the wheelbarrow environments to check."""
        log("untimed warm-up: the store's environment and uv's cache")
        self.wb_install("", "wb-warmup", "built and installed")
        self.uv_install("", "uv-warmup", "--compile-bytecode")
        made = []
        for i in range(repeat):
            made.append(self.wb_install(WARM, f"wb-warm-{i}", "installed from the store"))
            self.pip_install(WARM, f"pip-warm-{i}")
            self.uv_install(WARM, f"uv-warm-{i}", "--compile-bytecode")
        for i in range(repeat):
            self.pip_install(WARM_NO_PYC, f"pip-nopyc-{i}", "--no-compile")
            self.uv_install(WARM_NO_PYC, f"uv-nopyc-{i}")
        self.timings[WARM_NO_PYC]["wheelbarrow"] = list(self.timings[WARM]["wheelbarrow"])
        self.peaks[WARM_NO_PYC]["wheelbarrow"] = list(self.peaks[WARM]["wheelbarrow"])
        self.cpu[WARM_NO_PYC]["wheelbarrow"] = list(self.cpu[WARM]["wheelbarrow"])
        made += [self.cold_install(i) for i in range(cold)]
        return made[-1:] + made[repeat - 1 : repeat]


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g} s"


def ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None:
        return "n/a"
    r = num / den
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def cpu_seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def megabytes(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def medians_of(runs: Timings) -> dict[str, dict[str, float]]:
    """The median of each row's runs, by tool."""
    return {
        row: {tool: statistics.median(xs) for tool, xs in by_tool.items()}
        for row, by_tool in runs.items()
    }


def report(bench: Bench, repeat: int, cold: int, load: str) -> str:
    medians, peaks, cpu = medians_of(bench.timings), medians_of(bench.peaks), medians_of(bench.cpu)
    labels = {
        COLD_BUILD: f"cold build: lock + fetch, empty store/caches (n={cold})",
        COLD_BUILD_LOCKED: f"cold build, lock current: fetch, empty store/caches (n={cold})",
        NOOP_BUILD: f"no-op build (n={repeat})",
        WARM: f"warm install, with bytecode (n={repeat})",
        WARM_NO_PYC: f"warm install, no bytecode (n={repeat}; wb = row above)",
        COLD_INSTALL: f"cold install, with bytecode (n={cold})",
    }
    nproc = len(os.sched_getaffinity(0))
    lines = [
        f"## textsim benchmark, {datetime.date.today().isoformat()}, Python "
        f"{sys.version.split()[0]}, nproc {nproc}, load average {load}: "
        f"`{shlex.join(sys.orig_argv)}`",
        "",
        f"{bench.versions['wheelbarrow']}, {bench.versions['uv']}, "
        f"{bench.versions['pip'].split(' from ')[0]}; {bench.versions['wheelhouse']}; "
        "medians of wall time; CPU seconds (user + system, the processes waited for "
        "included) and peak memory of the largest process, MB, as wb / pip / uv.",
        "",
        "| step | wheelbarrow | pip | uv | pip ÷ wb | uv ÷ wb | CPU s | peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, label in labels.items():
        wb, pip, uv = (medians[row].get(tool) for tool in TOOLS)
        peak = " / ".join(megabytes(peaks.get(row, {}).get(tool)) for tool in TOOLS)
        used = " / ".join(cpu_seconds(cpu.get(row, {}).get(tool)) for tool in TOOLS)
        cells = [label, seconds(wb), seconds(pip), seconds(uv), ratio(pip, wb), ratio(uv, wb)]
        lines.append("| " + " | ".join([*cells, used, peak]) + " |")
    lines += [
        "",
        "- cold build: `wheelbarrow build APP` (locks with uv, fetches the wheels) vs `pip "
        "download --only-binary :all: -r requirements.txt --no-cache-dir` into an empty dir; "
        "uv has no download command. With the lock current, wheelbarrow only fetches, and "
        "pip downloads the lock's pins (`--no-deps --require-hashes -r PINS`, every package "
        "`==` its locked version with the sha256 of its wheels). No-op build: the same again "
        "(pip re-resolves online).",
        "- installs: each run into a new directory. pip and uv get a venv made beforehand "
        "(untimed) with `python -m venv --without-pip`; pip runs as `python -m pip --python "
        "NEWVENV/bin/python install --no-index -f WHEELHOUSE -r requirements.txt` (compiles "
        ".pyc; `--no-compile` for no bytecode); uv as `uv pip install --offline "
        "[--compile-bytecode] --no-index --find-links WHEELHOUSE`, warm cache (one untimed "
        "run first), or a new empty cache per run for the cold install.",
        "- wheelbarrow environments always carry bytecode, so its no-bytecode row repeats "
        "the warm row; its cold install deletes `$WHEELBARROW_STORE/envs` before each run.",
        "- peak memory: `ru_maxrss` of `wait4` on the command, which covers every process "
        "it waited for (uv under wheelbarrow, compile workers).",
        f"- import check (`{IMPORT_CHECK}`) in the wheelbarrow environments: ok",
    ]
    return "\n".join(lines)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages now."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark wheelbarrow vs pip and uv on textsim.")
    parser.add_argument("--repeat", type=int, default=5, metavar="N", help="runs per row (5)")
    parser.add_argument("--workdir", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write all raw timings")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    wanted = (APP_SOURCE / ".python-version").read_text(encoding="utf-8").strip()
    if ".".join(map(str, sys.version_info[:2])) != wanted:
        parser.error(f"run this with Python {wanted}, the version the app targets")
    cold = min(3, args.repeat)
    work = args.workdir.absolute() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work)
    load_at_start = load_average()
    try:
        bench.setup()
        bench.builds(args.repeat, cold)
        envs = bench.installs(args.repeat, cold)
        for env in envs:
            run([env / "bin/python", "-c", IMPORT_CHECK], bench.env["wheelbarrow"])
            log(f"import check ok in {env}")
    except CommandFailed as exc:
        print(f"bench: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        report(
            bench, args.repeat, cold, f"{load_at_start} at the start, {load_average()} at the end"
        )
    )
    if args.json:
        now = datetime.datetime.now().isoformat(timespec="seconds")
        raw: dict[str, object] = {
            "command": sys.orig_argv,
            "date": now,
            "python": sys.version.split()[0],
        }
        raw |= {"nproc": len(os.sched_getaffinity(0)), "versions": bench.versions}
        raw |= {"runs": bench.timings, "medians": medians_of(bench.timings)}
        raw |= {"peak_mb": bench.peaks, "peak_mb_medians": medians_of(bench.peaks)}
        raw |= {"cpu_s": bench.cpu, "cpu_s_medians": medians_of(bench.cpu)}
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
