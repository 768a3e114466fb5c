"""Benchmark a warm install against the number of packages: the shared layout's constant time.

For apps of 15, 60 and 150 synthetic wheels (and the textsim example: its wheelhouse from
the store given by --textsim-store, by default the user's, else built from the package
index when the example has no lock yet), each built into one store and
installed once (the stored environment made, the install's record written), times as whole
processes, each into a new directory, interleaved, in the same run:

- ``python -I -S -c pass``: a bare interpreter start, the floor of any Python command;
- ``wheelbarrow install APP --into DIR``: the default, shared layout;
- ``wheelbarrow install APP --into DIR --link-mode hardlink``: a clone of the stored environment;
- ``cp -al`` of the stored environment: the floor of any per-file clone;
- ``uv pip install --offline`` of the same wheels into a venv made beforehand (not timed), with
  uv's cache warm and no bytecode: uv's fastest install.

Prints a Markdown table of medians (and the peak RSS of the largest process of the shared
install, from wait4) on stdout, with the load average seen; progress goes to stderr. ``--json
FILE`` also writes the raw timings and the rows of bench_speed.py's table (``speed_rows``).

    python bench/bench_install_scaling.py [--packages 15,60,150] [--modules 40] [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_textsim import measure
from bench_warm_install import make_wheel
from harness import REPO, clean_environ, fresh, install_tools, log, run

TEXTSIM = REPO / "examples" / "textsim"
COLUMNS = ("bare", "shared", "hardlink", "cp -al", "uv")


class App:
    """One app of the benchmark: its directory, its stored environment, its find-links."""

    def __init__(self, label: str, root: Path, links: Path) -> None:
        self.label = label
        self.root = root
        self.links = links  # wheels for uv's --find-links
        self.stored = Path()
        self.files = 0
        self.times: dict[str, list[float]] = {c: [] for c in COLUMNS}
        self.peaks: list[float] = []
        self.cpu: list[float] = []  # CPU seconds of the shared install, user + system
        self.bare_cpu: list[float] = []
        self.loads: list[float] = []

    def median(self, column: str) -> float:
        return statistics.median(self.times[column])


def synthetic(work: Path, packages: int, modules: int) -> App:
    """An app of ``packages`` pure wheels of ``modules`` modules each (and as many .pyc)."""
    dists = fresh(work / f"dists-{packages}")
    for i in range(packages):
        make_wheel(dists, f"pkg{i:03d}", modules)
    root = fresh(work / f"app-{packages}")
    (root / "requirements.txt").write_text("".join(f"pkg{i:03d}==1.0\n" for i in range(packages)))
    (root / ".python-version").write_text(f"{sys.version_info[0]}.{sys.version_info[1]}\n")
    return App(f"{packages}", root, dists)


def textsim(work: Path, store: Path, other: Path, bin_dir: Path, env: dict[str, str]) -> App | None:
    """The textsim example: its wheelhouse from ``other`` (a store) linked into ``store``, else,
    when the example has no lock yet (a fresh clone: pylock.toml is not committed), locked
    and built into ``store`` from the package index (untimed)."""
    root = work / "textsim"
    if not root.exists():
        shutil.copytree(TEXTSIM, root, ignore=shutil.ignore_patterns("__pycache__"))
    if not (root / "pylock.toml").is_file():
        log("textsim: no lock yet; locking and building it from the package index")
        run([bin_dir / "wheelbarrow", "build", root, "-q"], env)
    key = run([bin_dir / "wheelbarrow", "key", root], env)[1].strip()
    target = store / "wheelhouses" / key
    house = other / "wheelhouses" / key
    if not (target / "wheelhouse.json").is_file():
        if not (house / "wheelhouse.json").is_file():
            log(f"textsim: no wheelhouse {key} in {other}; its row is left out")
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-al", house, target], env)
    wheels = fresh(work / "textsim-wheels")
    for wheel in target.glob("*.whl"):
        os.link(wheel, wheels / wheel.name)
    return App("textsim", root, wheels)


def prepare(app: App, bench: Bench) -> None:
    """Build (offline), install once, and warm uv's cache: nothing of this is timed."""
    wb, env = bench.bin / "wheelbarrow", bench.env
    if app.label != "textsim":
        run([wb, "build", app.root, "--no-index", "-f", app.links, "-q"], env)
    first = bench.work / "envs" / f"first-{app.label}"
    shutil.rmtree(first, ignore_errors=True)
    run([wb, "install", app.root, "--into", first, "-q"], env)
    marker = (first / ".wheelbarrow-env.json").read_text()
    app.stored = bench.store / "envs" / marker.split('"env_key": "')[1].split('"')[0]
    app.files = sum(len(files) for _, _, files in os.walk(app.stored))
    bench.uv_install(app, "warm-up")


class Bench:
    """The work directory, the tools and the store shared by every app."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.store = work / "store"
        self.env = clean_environ() | {
            "WHEELBARROW_STORE": str(self.store),
            "UV_CACHE_DIR": str(work / "uv-cache"),
        }
        self.bin = work / "tools" / "bin"

    def venv(self, name: str) -> Path:
        dest = self.work / "envs" / name
        shutil.rmtree(dest, ignore_errors=True)
        run([sys.executable, "-m", "venv", "--without-pip", dest], self.env)
        return dest

    def uv_install(self, app: App, name: str) -> float:
        dest = self.venv(f"uv-{app.label}-{name}")
        cmd = [self.bin / "uv", "pip", "install", "--offline", "--python", dest / "bin" / "python"]
        cmd += ["--no-index", "--find-links", app.links, "-r", app.root / "requirements.txt"]
        seconds = measure(cmd, self.env).seconds
        shutil.rmtree(dest)
        return seconds

    def round(self, app: App, r: int) -> None:
        """One timed run of each command, into new directories (removed after, untimed)."""
        wb = self.bin / "wheelbarrow"
        envs = self.work / "envs"
        app.loads.append(os.getloadavg()[0])
        bare = measure([self.bin / "python", "-I", "-S", "-c", "pass"], self.env)
        app.times["bare"].append(bare.seconds)
        app.bare_cpu.append(bare.cpu)
        into = envs / f"shared-{app.label}-{r}"
        sample = measure([wb, "install", app.root, "--into", into], self.env, "installed from")
        app.times["shared"].append(sample.seconds)
        app.peaks.append(sample.peak_mb)
        app.cpu.append(sample.cpu)
        clone = envs / f"clone-{app.label}-{r}"
        cmd = [wb, "install", app.root, "--into", clone, "--link-mode", "hardlink"]
        app.times["hardlink"].append(measure(cmd, self.env, "installed from").seconds)
        copy = envs / f"cpal-{app.label}-{r}"
        app.times["cp -al"].append(measure(["cp", "-al", app.stored, copy], self.env).seconds)
        app.times["uv"].append(self.uv_install(app, str(r)))
        for path in (into, clone, copy):
            shutil.rmtree(path, ignore_errors=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(apps: list[App], repeat: int) -> str:
    lines = [
        f"Warm install against the number of packages, medians of {repeat} runs "
        "(whole processes, each into a new directory)\n",
        "| packages | files stored | `python -I -S -c pass` | wheelbarrow install (shared) "
        "| beyond bare | CPU: shared / bare | `--link-mode hardlink` | `cp -al` stored env "
        "| `uv pip install --offline` (no bytecode) | shared: peak MB | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for app in apps:
        med = {c: statistics.median(app.times[c]) for c in COLUMNS}
        cells = [
            app.label,
            f"{app.files:,}",
            ms(med["bare"]),
            ms(med["shared"]),
            ms(med["shared"] - med["bare"]),
            f"{ms(statistics.median(app.cpu))} / {ms(statistics.median(app.bare_cpu))}",
            ms(med["hardlink"]),
            ms(med["cp -al"]),
            ms(med["uv"]),
            f"{statistics.median(app.peaks):.0f}",
            f"{min(app.loads):.1f}-{max(app.loads):.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_rows(apps: list[App]) -> list[dict[str, object]]:
    """The rows bench_speed.py puts in its table (its Row's fields): the warm install beyond a
    bare interpreter at each size, the target being 50 ms."""
    rows: list[dict[str, object]] = []
    for app in apps:
        bare, shared = app.median("bare"), app.median("shared")
        size = "textsim" if app.label == "textsim" else f"{app.label} packages"
        rows.append(
            {
                "figure": f"warm install beyond `python -I -S -c pass`, {size} "
                f"({app.files:,} files stored; n={len(app.times['shared'])})",
                "wb": shared - bare,
                "peer": "`python -I -S -c pass`",
                "peer_value": bare,
                "target": "≤ 0.05 s beyond",
                "met": shared - bare <= 0.05,
                "wb_peak": max(app.peaks),
                "wb_cpu": statistics.median(app.cpu),
                "note": f"whole process {ms(shared)}; `--link-mode hardlink` "
                f"{ms(app.median('hardlink'))}, `cp -al` {ms(app.median('cp -al'))}, `uv pip "
                f"install --offline` (no bytecode) {ms(app.median('uv'))}",
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", default="15,60,150", help="comma-separated package counts")
    parser.add_argument("--modules", type=int, default=40, help="modules in each synthetic wheel")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the raw timings")
    parser.add_argument(
        "--textsim-store",
        type=Path,
        default=Path.home() / ".cache" / "wheelbarrow",
        help="a store holding the textsim wheelhouse (default: the user's)",
    )
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wb-bench-scaling-"))
    bench = Bench(work)
    if not (bench.bin / "wheelbarrow").exists():
        install_tools(work, bench.env)
    apps = [synthetic(work, int(n), args.modules) for n in args.packages.split(",")]
    found = textsim(work, bench.store, args.textsim_store, bench.bin, bench.env)
    apps += [found] if found else []
    for app in apps:
        log(f"{app.label}: building, installing once, warming uv's cache")
        prepare(app, bench)
    for r in range(args.repeat):
        for app in apps:
            bench.round(app, r)
        log(f"run {r + 1}/{args.repeat}")
    print(table(apps, args.repeat))
    if args.json:
        raw = {
            "command": sys.orig_argv,
            "load": [min(min(a.loads) for a in apps), max(max(a.loads) for a in apps)],
            "speed_rows": speed_rows(apps),
            "runs": {a.label: {"files": a.files, **a.times, "peak_mb": a.peaks} for a in apps},
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
