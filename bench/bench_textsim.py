"""Benchmark wheelbarrow against pip and uv on the example app (examples/textsim).

Measures, in one run against the real package index, for numpy + scipy + scikit-learn +
flask + gunicorn: a cold build (lock + download, empty store and caches), a no-op build,
warm installs with and without bytecode, and a cold install (first environment of a
wheelhouse). Prints a Markdown table of medians on stdout; progress goes to stderr.

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
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import harness
from harness import REPO, CommandFailed, clean_environ, fresh, install_tools, log

APP_SOURCE = REPO / "examples" / "textsim"
IMPORT_CHECK = "import sklearn, scipy, numpy, flask"
COLD_BUILD, NOOP_BUILD, COLD_INSTALL = "cold build", "no-op build", "cold install"
WARM, WARM_NO_PYC = "warm install, bytecode", "warm install, no bytecode"
TOOLS = ("wheelbarrow", "pip", "uv")
Timings = dict[str, dict[str, list[float]]]
Cmd = list[str | Path]


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

    def record(self, row: str, tool: str, seconds: float) -> None:
        self.timings.setdefault(row, {}).setdefault(tool, []).append(seconds)
        log(f"{row}: {tool} {seconds:.3f} s")

    def setup(self) -> None:
        """A venv with wheelbarrow (non-editable, bytecode compiled) and pip; the app copied."""
        install_tools(self.work, self.env["uv"])
        shutil.rmtree(self.app, ignore_errors=True)
        shutil.copytree(APP_SOURCE, self.app, ignore=shutil.ignore_patterns("__pycache__"))
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
        self.record(row, "pip", run(cmd, self.env["pip"])[0])
        shutil.rmtree(dest)

    def uv_install(self, row: str, name: str, *extra: str, cache: Path | None = None) -> None:
        dest = self.new_venv(name)
        cmd: Cmd = [self.uv, "pip", "install", "--offline", *extra, "--python", dest / "bin/python"]
        cmd += ["--no-index", "--find-links", self.wheelhouse, "-r", self.requirements]
        env = self.env["uv"] | ({"UV_CACHE_DIR": str(cache)} if cache else {})
        seconds = run(cmd, env)[0]
        if row:
            self.record(row, "uv", seconds)
        shutil.rmtree(dest)

    def wb_install(self, row: str, name: str, expect: str) -> Path:
        dest = self.work / "envs" / name
        shutil.rmtree(dest, ignore_errors=True)
        cmd: Cmd = [self.wb, "install", self.app, "--into", dest]
        seconds = run(cmd, self.env["wheelbarrow"], expect)[0]
        if row:
            self.record(row, "wheelbarrow", seconds)
        return dest

    def builds(self, repeat: int, cold: int) -> None:
        downloads = self.work / "pip-download"
        pip_download: Cmd = [
            *self.pip,
            "download",
            "--only-binary",
            ":all:",
            "-r",
            self.requirements,
        ]
        pip_download += ["-d", downloads, "--no-cache-dir"]
        wb_build: Cmd = [self.wb, "build", self.app]
        for _ in range(cold):
            for path in (self.store, self.work / "wb-uv-cache"):
                shutil.rmtree(path, ignore_errors=True)
            (self.app / "pylock.toml").unlink(missing_ok=True)
            seconds = run(wb_build, self.env["wheelbarrow"], " built: ")[0]
            self.record(COLD_BUILD, "wheelbarrow", seconds)
            fresh(downloads)
            self.record(COLD_BUILD, "pip", run(pip_download, self.env["pip"])[0])
        for _ in range(repeat):
            seconds = run(wb_build, self.env["wheelbarrow"], "up to date")[0]
            self.record(NOOP_BUILD, "wheelbarrow", seconds)
            self.record(NOOP_BUILD, "pip", run(pip_download, self.env["pip"])[0])
        report = json.loads(run([self.wb, "build", "--json", self.app], self.env["wheelbarrow"])[1])
        self.wheelhouse = Path(report["wheelhouse"])
        wheels = sorted(self.wheelhouse.glob("*.whl"))
        size = sum(w.stat().st_size for w in wheels) / 1e6
        self.versions["wheelhouse"] = f"{len(wheels)} wheels, {size:.0f} MB"

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
        for i in range(cold):
            shutil.rmtree(self.store / "envs")
            made.append(self.wb_install(COLD_INSTALL, f"wb-cold-{i}", "built and installed"))
            self.pip_install(COLD_INSTALL, f"pip-cold-{i}")
            cache = fresh(self.work / f"uv-cold-cache-{i}")
            self.uv_install(COLD_INSTALL, f"uv-cold-{i}", "--compile-bytecode", cache=cache)
            shutil.rmtree(cache)
        return made[-1:] + made[repeat - 1 : repeat]


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g} s"


def ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None:
        return "n/a"
    r = num / den
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def report(bench: Bench, medians: dict[str, dict[str, float]], repeat: int, cold: int) -> str:
    labels = {
        COLD_BUILD: f"cold build: lock + fetch, empty store/caches (n={cold})",
        NOOP_BUILD: f"no-op build (n={repeat})",
        WARM: f"warm install, with bytecode (n={repeat})",
        WARM_NO_PYC: f"warm install, no bytecode (n={repeat}; wb = row above)",
        COLD_INSTALL: f"cold install, with bytecode (n={cold})",
    }
    nproc = len(os.sched_getaffinity(0))
    lines = [
        f"## textsim benchmark, {datetime.date.today().isoformat()}, Python "
        f"{sys.version.split()[0]}, nproc {nproc}: `{shlex.join(sys.orig_argv)}`",
        "",
        f"{bench.versions['wheelbarrow']}, {bench.versions['uv']}, "
        f"{bench.versions['pip'].split(' from ')[0]}; {bench.versions['wheelhouse']}; "
        "medians of wall time.",
        "",
        "| step | wheelbarrow | pip | uv | pip ÷ wb | uv ÷ wb |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row, label in labels.items():
        wb, pip, uv = (medians[row].get(tool) for tool in TOOLS)
        cells = [label, seconds(wb), seconds(pip), seconds(uv), ratio(pip, wb), ratio(uv, wb)]
        lines.append("| " + " | ".join(cells) + " |")
    warm_ok = medians[WARM]["wheelbarrow"] < medians[WARM]["uv"]
    noop_ok = medians[NOOP_BUILD]["wheelbarrow"] < 0.2
    lines += [
        "",
        "- cold build: `wheelbarrow build APP` (locks with uv, fetches the wheels) vs `pip "
        "download --only-binary :all: -r requirements.txt --no-cache-dir` into an empty dir; "
        "uv has no download command. No-op build: the same again (pip re-resolves online).",
        "- installs: each run into a new directory. pip and uv get a venv made beforehand "
        "(untimed) with `python -m venv --without-pip`; pip runs as `python -m pip --python "
        "NEWVENV/bin/python install --no-index -f WHEELHOUSE -r requirements.txt` (compiles "
        ".pyc; `--no-compile` for no bytecode); uv as `uv pip install --offline "
        "[--compile-bytecode] --no-index --find-links WHEELHOUSE`, warm cache (one untimed "
        "run first), or a new empty cache per run for the cold install.",
        "- wheelbarrow environments always carry bytecode, so its no-bytecode row repeats "
        "the warm row; its cold install deletes `$WHEELBARROW_STORE/envs` before each run.",
        f"- import check (`{IMPORT_CHECK}`) in the wheelbarrow environments: ok",
        "",
        "Targets: warm install with bytecode faster than uv --offline --compile-bytecode "
        f"(warm cache): {'met' if warm_ok else 'NOT met'} ({seconds(medians[WARM]['wheelbarrow'])}"
        f" vs {seconds(medians[WARM]['uv'])}); no-op build under 0.2 s: "
        f"{'met' if noop_ok else 'NOT met'} ({seconds(medians[NOOP_BUILD]['wheelbarrow'])}).",
    ]
    return "\n".join(lines)


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
    medians = {
        row: {tool: statistics.median(ts) for tool, ts in by_tool.items()}
        for row, by_tool in bench.timings.items()
    }
    print(report(bench, medians, args.repeat, cold))
    if args.json:
        now = datetime.datetime.now().isoformat(timespec="seconds")
        raw: dict[str, object] = {
            "command": sys.orig_argv,
            "date": now,
            "python": sys.version.split()[0],
        }
        raw |= {"nproc": len(os.sched_getaffinity(0)), "versions": bench.versions}
        raw |= {"runs": bench.timings, "medians": medians}
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
