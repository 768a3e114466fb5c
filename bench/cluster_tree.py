"""Part 2 of bench_cluster.py: a tree of real sdists built on 1 and 2 Dask workers and locally.

Fifteen small C-extension packages built from their sdists with ``--no-binary :all:``, so
that their build backends (setuptools, flit-core, wheel, packaging) are built from source
first and give the graph its build-order edges. ``wheelbarrow build --cluster`` runs on a
``dask scheduler`` with one and with two ``dask worker`` processes, each pinned to its own
core with taskset, one thread, ``build=1``, its own empty store and no package index; one
local ``wheelbarrow build --build-jobs 1`` is pinned to core 0. Every run has a fresh head
store and a fresh prefix on the same remote store.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster_sim import critical_path, loadavg, ratio, secs
from harness import CommandFailed, clean_environ, fresh, log, run
from timeline_svg import Bar, timeline_svg, write_svg

# Small C-extension packages whose sdists need only cc and setuptools (wheel and packaging
# for some, which flit-core builds). Each was built here from its sdist first.
TREE = (
    "markupsafe==3.0.4", "simplejson==4.3.0", "msgpack==1.2.4", "bitarray==3.12.3",
    "wrapt==2.5.2", "mmh3==5.3.1", "crc32c==2.9.post0", "xxhash==4.1.0", "psutil==7.2.2",
    "immutables==0.21", "pyrsistent==0.20.0", "zope.interface==8.7", "setproctitle==1.3.8",
    "time-machine==3.6.0", "multidict==7.2.1",
)  # fmt: skip
# A machine that reaches no package index: every HTTP(S) request but 127.0.0.1's goes nowhere.
CLOSED = "http://127.0.0.1:9"
NO_INDEX = {
    **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"), CLOSED),
    **dict.fromkeys(("http_proxy", "https_proxy", "all_proxy"), CLOSED),
    **dict.fromkeys(("NO_PROXY", "no_proxy"), "127.0.0.1,localhost"),
    **dict.fromkeys(("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"), CLOSED + "/simple"),
}
BUCKET = "bench"
Cmd = list[str | Path]


def run_streamed(cmd: Cmd, env: Mapping[str, str]) -> tuple[float, str, list[tuple[float, str]]]:
    """Run a command; its wall time, stdout, and its stderr lines each with when it came."""
    args = [str(a) for a in cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stderr or ():
            lines.append((time.time(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        out = proc.stdout.read() if proc.stdout else ""
        proc.wait()
    except BaseException:  # interrupted: the command goes too
        proc.kill()
        proc.wait()
        raise
    reader.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        err = "\n".join(line for _, line in lines)[-6000:]
        raise CommandFailed(
            f"{shlex.join(args)} exited with {proc.returncode}\n{out[-3000:]}\n{err}"
        )
    return seconds, out, lines


@dataclass(slots=True)
class TreeRun:
    """One build of the tree: its times, each build's seconds, and what the timeline needs."""

    config: str
    wall: float
    phase: float  # first build's start to last build's end
    seconds: dict[str, float]  # label -> build seconds
    records: dict[str, dict[str, Any]]  # build key -> result.json, with "label" and "needs"
    bars: list[Bar] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)


BUILT_LINE = re.compile(r"^Built (\S+) (\S+) in (\S+): ")
LOCAL, ONE, TWO = "local", "1 worker", "2 workers"


def parse_duration(text: str) -> float:
    """Seconds from the build lines' ``7.2s``, ``3m05s``, ``1h02m``."""
    if text.endswith("s") and "m" not in text:
        return float(text[:-1])
    if "h" in text:
        hours, minutes = text.rstrip("m").split("h")
        return int(hours) * 3600 + int(minutes) * 60
    minutes, rest = text.split("m")
    return int(minutes) * 60 + int(rest.rstrip("s"))


def built_seconds(lines: Iterable[tuple[float, str]]) -> dict[str, float]:
    """Each build's seconds from its ``Built NAME VERSION in 3.2s: ...`` line, by label."""
    return {
        f"{m[1]} {m[2]}": parse_duration(m[3]) for _, line in lines if (m := BUILT_LINE.match(line))
    }


def store_records(stores: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """The builds the stores made (``built/*/result.json``), by build key, each with its label
    and the keys of the builds whose wheels its build environment held (its log says)."""
    records: dict[str, dict[str, Any]] = {}
    for store in stores:
        for result in (store / "built").glob("*/result.json"):
            record = json.loads(result.read_text(encoding="utf-8"))
            head = result.with_name("build.log").read_text(encoding="utf-8", errors="replace")
            if "not built here" in head.split("\n", 1)[0]:
                continue  # fetched from the remote store, built elsewhere
            env_line = next(x for x in head.splitlines() if x.startswith("# build environment:"))
            record["env"] = env_line.split(":", 1)[1].strip().split(", ")
            record["label"] = head.split("\n", 1)[0].removeprefix("# ").split(" from ")[0]
            records[record["key"]] = record
    by_wheel = {r["wheel"]: key for key, r in records.items()}
    for record in records.values():
        record["needs"] = sorted(by_wheel[w] for w in record.pop("env") if w in by_wheel)
    return records


def dependency_edges(records: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(need, key) for key, r in records.items() for need in r["needs"]]


@contextlib.contextmanager
def pinned_cluster(
    home: Path, tools: Path, cores: Sequence[int], env: Mapping[str, str]
) -> Iterator[str]:
    """A ``dask scheduler`` (on any core, as on a machine of its own: it places builds and runs
    none) and one ``dask worker`` per core, each pinned with
    taskset, one thread, ``build=1``, its own empty store ``home/w<N>/store``; the address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        core: int | None, args: Sequence[str | Path], log_path: Path, own: Mapping[str, str]
    ) -> None:
        with log_path.open("wb") as out:
            pin = [] if core is None else ["taskset", "-c", str(core)]
            cmd = [*pin, str(tools / "dask"), *map(str, args)]
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(own),
                                          start_new_session=True, cwd=log_path.parent))  # fmt: skip

    try:
        fresh(home)
        start(None, ["scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard",
                  "--no-show"], home / "scheduler.log", env)  # fmt: skip
        for i, core in enumerate(cores):
            w = fresh(home / f"w{i}")
            own = {**env, **NO_INDEX, "WHEELBARROW_STORE": str(w / "store")}
            own["UV_CACHE_DIR"] = str(w / "uv-cache")
            start(core, ["worker", address, "--name", f"w{i}", "--nthreads", "1", "--resources",
                         "build=1", "--no-nanny", "--no-dashboard", "--memory-limit", "0",
                         "--local-directory", w / "dask"], w / "worker.log", own)  # fmt: skip
        yield address
    finally:
        for proc in reversed(procs):  # only the processes started here, by their group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class TreeBench:
    """The tree built locally and on 1 and 2 workers, each with a fresh head store."""

    def __init__(self, work: Path, tools: Path, s3env: Mapping[str, str]) -> None:
        self.work, self.tools = work / "tree", tools
        self.app = self.work / "app"
        self.env = clean_environ() | dict(s3env) | {"UV_CACHE_DIR": str(self.work / "uv-cache")}
        self.runs: list[TreeRun] = []
        self.count = 0

    def build_cmd(self, store: Path, *extra: str | Path, pin: bool = True) -> Cmd:
        """``wheelbarrow build`` of the tree (on core 0) with a fresh remote prefix."""
        remote = f"s3://{BUCKET}/tree-{self.count}"  # fresh: nothing to reuse
        self.count += 1
        cmd: Cmd = [*(["taskset", "-c", "0"] if pin else []), self.tools / "wheelbarrow"]
        cmd += ["build", self.app, "--no-binary", ":all:", "--store", store]
        return [*cmd, "--remote", remote, *extra]

    def setup(self) -> None:
        """The app and its lock; one untimed build (both cores) warms uv's cache for the
        build requirements' locks and checks that every package builds here."""
        fresh(self.work)
        self.app.mkdir()
        (self.app / "requirements.txt").write_text("\n".join(TREE) + "\n", encoding="utf-8")
        version = ".".join(map(str, sys.version_info[:2]))
        (self.app / ".python-version").write_text(version + "\n", encoding="utf-8")
        run([self.tools / "wheelbarrow", "lock", self.app], self.env)
        log("untimed warm-up: the whole tree built once here")
        run(self.build_cmd(self.work / "warm-store", "--json", pin=False), self.env)

    def check(self, out: str, config: str) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(out)
        built = report["built"]
        fresh_builds = [b for b in built if b["reused"] is False]
        if report["status"] != "built" or len(fresh_builds) != len(TREE):
            raise CommandFailed(f"{config}: not every package was built now:\n{out}")
        return report

    def local(self) -> TreeRun:
        store = fresh(self.work / "head-local")
        wall, out, lines = run_streamed(
            self.build_cmd(store, "--build-jobs", "1", "--json"), self.env
        )
        self.check(out, LOCAL)
        starts = [t for t, line in lines if line.startswith("Building ")]
        ends = [t for t, line in lines if line.startswith("Built ")]
        return TreeRun(
            LOCAL, wall, max(ends) - min(starts), built_seconds(lines), store_records([store])
        )

    def cluster(self, cores: Sequence[int]) -> TreeRun:
        from distributed import Client, get_task_stream

        config = ONE if len(cores) == 1 else TWO
        home = self.work / f"cluster-{len(cores)}"
        head = fresh(self.work / f"head-{len(cores)}")
        with (
            pinned_cluster(home, self.tools, cores, self.env) as address,
            Client(address, timeout=60, set_as_default=False) as client,  # type: ignore[no-untyped-call]
        ):
            client.wait_for_workers(len(cores), timeout=60)
            names = {a: str(w["name"]) for a, w in client.scheduler_info()["workers"].items()}
            cmd = self.build_cmd(head, "--cluster", address, "--json")
            with get_task_stream(client=client) as stream:
                wall, out, lines = run_streamed(cmd, self.env)
            tasks = list(stream.data)
        report = self.check(out, config)
        records = store_records(home / f"w{i}" / "store" for i in range(len(cores)))
        run_ = TreeRun(config, wall, 0.0, {}, records, workers=sorted(names.values()))
        self.add_bars(run_, tasks, names, report)
        run_.phase = max(b.end for b in run_.bars) - min(b.start for b in run_.bars)
        run_.seconds = built_seconds(lines)
        return run_

    def add_bars(
        self, run_: TreeRun, tasks: list[dict[str, Any]], names: Mapping[str, str],
        report: Mapping[str, Any],
    ) -> None:  # fmt: skip
        """A bar per build: the app's packages from the report's ``built[].span`` and
        ``worker``, the build requirements' from Dask's task stream (the report lacks them)."""
        by_short = {key[:16]: key for key in run_.records}
        app = {b["name"]: b for b in report["built"]}
        for task in tasks:
            key = by_short.get(str(task["key"]).rsplit("-", 1)[-1])
            compute = [s for s in task["startstops"] if s["action"] == "compute"]
            if key is None or not compute:
                continue
            label = run_.records[key]["label"]
            name = label.split()[0]
            if name in app and app[name]["span"]:
                start, end = app[name]["span"]
                worker = next(a for a in names if app[name]["worker"].startswith(a))
                kind = "app"
            else:
                start, end, worker = compute[0]["start"], compute[-1]["stop"], task["worker"]
                kind = "requirement"
            row = run_.workers.index(names[worker])
            run_.bars.append(Bar(key, row, start, end, label, kind))

    def measure(self, repeat: int) -> None:
        for i in range(repeat):
            log(f"tree round {i + 1} of {repeat}; load average {loadavg()}")
            steps: list[Callable[[], TreeRun]] = [
                self.local,
                lambda: self.cluster([0]),
                lambda: self.cluster([0, 1]),
            ]
            for step in steps[i % 3 :] + steps[: i % 3]:  # a different one first each round
                done = step()
                self.runs.append(done)
                log(f"tree {done.config}: {done.wall:.1f} s (builds {done.phase:.1f} s)")

    def durations(self) -> dict[str, float]:
        """Each build's seconds in the local runs (medians), by package name."""
        local = [r.seconds for r in self.runs if r.config == LOCAL]
        return {k.split()[0]: statistics.median(s[k] for s in local) for k in local[0]}

    def report(self, repeat: int) -> str:
        by = {c: [r for r in self.runs if r.config == c] for c in (LOCAL, ONE, TWO)}
        wall = {c: statistics.median(r.wall for r in rs) for c, rs in by.items()}
        phase = {c: statistics.median(r.phase for r in rs) for c, rs in by.items()}
        local = by[LOCAL][-1].records
        needs = {k: r["needs"] for k, r in local.items()}
        seconds = {k: by[LOCAL][-1].seconds.get(r["label"], 0.0) for k, r in local.items()}
        apps = sum(1 for r in local.values() if r["label"].split()[0] in self.names())
        cores = {LOCAL: "1 (core 0)", ONE: "1 (core 0)", TWO: "2 (cores 0, 1)"}
        labels = {
            LOCAL: "`build --build-jobs 1`, here (taskset -c 0)",
            ONE: "`build --cluster`, 1 worker (taskset -c 0)",
            TWO: "`build --cluster`, 2 workers (taskset -c 0, -c 1)",
        }
        lines = [
            f"### A tree of {len(local)} sdists: {apps} app packages and "
            f"{len(local) - apps} build backends built from source first",
            "",
            f"{len(local)} builds, {len(dependency_edges(local))} build-order edges; "
            f"{secs(sum(seconds.values()))} of build time in the local run, critical path "
            f"{secs(critical_path(seconds, needs))}.",
            "",
            "| build | cores | wall time | builds (first start to last end) | speed-up (wall) "
            "| speed-up (builds) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for c, label in labels.items():
            lines.append(
                f"| {label} | {cores[c]} | {secs(wall[c])} | {secs(phase[c])} | "
                f"{ratio(wall[LOCAL], wall[c])} | {ratio(phase[LOCAL], phase[c])} |"
            )
        lines += ["", self.matches(by), "", self.notes(repeat)]
        return "\n".join(lines)

    def names(self) -> set[str]:
        return {p.split("==")[0].replace(".", "-").lower() for p in TREE}

    def matches(self, by: Mapping[str, list[TreeRun]]) -> str:
        local = {k: r["sha256"] for k, r in by[LOCAL][-1].records.items()}
        parts = []
        for c in (ONE, TWO):
            theirs = {k: r["sha256"] for k, r in by[c][-1].records.items()}
            same = sum(1 for k, sha in theirs.items() if local.get(k) == sha)
            parts.append(f"{c} {same} of {len(theirs)}")
        return (
            "Wheels with the same sha256 as the local build's, by build key: "
            + ", ".join(parts)
            + " (a package whose build is not reproducible differs; not a failure)."
        )

    def notes(self, repeat: int) -> str:
        return (
            f"n={repeat} per row, medians, interleaved (a different one first each round). Each "
            "run: a fresh head store and a fresh remote prefix on the "
            "same SeaweedFS server, the app's lock kept, uv's cache (for the build "
            "requirements' locks) warm from one untimed build, `--no-binary :all:`. The head "
            "(`wheelbarrow build`) runs on core 0 in every row, the scheduler on any core; "
            "each worker "
            "is `dask worker --nthreads 1 --resources build=1 --no-nanny` pinned to its core, "
            "with its own empty store and no package index (it takes sdists and build wheels "
            "from the remote store and pushes its wheels there). Wall time includes the head's "
            "discovery (unpacking sdists, locking build requirements, fetching) and, on the "
            "cluster, uploading each build's inputs. Builds: the local run's first `Building` "
            "line to its last `Built` line; the cluster's first task start to last task end "
            "(Dask's task stream)."
        )


def tree_timeline(run_: TreeRun, out: Path) -> Path:
    """The 2-worker build's schedule as ``out/cluster-2-workers.svg``."""
    edges = dependency_edges(run_.records)
    caption = [
        f"wheelbarrow build --cluster: {len(run_.bars)} builds on 2 one-thread Dask workers "
        f"(w0 on core 0, w1 on core 1), {len(edges)} build-order edges (from the end of a "
        "needed build to the start of its dependant).",
        "App packages (blue): the --json report's built[].worker and built[].span. Build "
        "backends (orange: setuptools, flit-core, wheel, packaging): Dask's task stream,",
        "since the report's built[] lists only the app's packages. Edges: each build log's "
        "build environment, from the workers' stores.",
    ]
    rows = [f"{w} (core {w[1:]})" for w in run_.workers]
    title = "A tree of sdists on 2 Dask workers"
    svg = timeline_svg(rows, run_.bars, edges, title=title, caption=caption)
    return write_svg(out / "cluster-2-workers.svg", svg)


def run_part(
    work: Path, tools: Path, s3env: Mapping[str, str], *, repeat: int, out: Path
) -> tuple[str, dict[str, float], dict[str, Any]]:
    """Run the tree part: its Markdown, the local builds' seconds by package, raw figures."""
    bench = TreeBench(work, tools, s3env)
    bench.setup()
    bench.measure(repeat)
    picture = tree_timeline(next(r for r in reversed(bench.runs) if r.config == TWO), out)
    raw = {
        "runs": [
            {
                "config": r.config,
                "wall": r.wall,
                "builds": r.phase,
                "seconds": r.seconds,
                "bars": [[b.label, r.workers[b.row], b.start, b.end, b.kind] for b in r.bars],
            }
            for r in bench.runs
        ],  # a cluster run's bars: label, worker, wall-clock start and end, kind
        "load": os.getloadavg(),
    }
    text = bench.report(repeat) + f"\n\nTimeline: `{picture}`"
    return text, bench.durations(), raw
