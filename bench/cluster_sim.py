"""Part 3 of bench_cluster.py: Dask's own scheduler on a synthetic graph of 1,000 builds.

The graph is a :class:`wheelbarrow.build.buildgraph.BuildGraph`, submitted and waited for
with the same ``submit_graph`` and ``outcome_of`` (wheelbarrow.share.cluster) as real
cluster builds, on ``distributed.LocalCluster(processes=False)`` workers of one thread and
``build=1`` each; every task sleeps for a real build's duration, scaled down.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import random
import statistics
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import CommandFailed, log
from timeline_svg import Bar, timeline_svg, write_svg

if TYPE_CHECKING:
    from wheelbarrow.build.buildgraph import BuildGraph

# Seconds per build of TREE (cluster_tree.py) in one `wheelbarrow build --no-binary :all:
# --build-jobs 1` pinned to one core (taskset -c 0) on a shared 2-core machine (Python 3.11,
# gcc 12, load average about 3.5), from its `Built NAME VERSION in 3.2s` lines: the
# simulation's durations when the tree part does not run in the same invocation.
RECORDED = {
    "flit-core": 0.6, "wheel": 0.4, "packaging": 0.3, "setuptools": 3.5, "multidict": 12.5,
    "setproctitle": 2.3, "time-machine": 2.5, "crc32c": 2.8, "markupsafe": 1.9, "psutil": 3.9,
    "bitarray": 4.5, "xxhash": 6.4, "msgpack": 6.6, "pyrsistent": 3.1, "mmh3": 2.7,
    "zope-interface": 1.5, "simplejson": 2.2, "immutables": 2.7, "wrapt": 3.7,
}  # fmt: skip
LAYERS, EXCLUSIVE, FURTHER_BACK = 25, 0.03, 0.2


def secs(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def ratio(num: float, den: float) -> str:
    return f"{num / den:.2f}x" if den > 0 else "n/a"


def loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def critical_path(durations: Mapping[str, float], needs: Mapping[str, Iterable[str]]) -> float:
    """The longest chain of builds by summed duration (``needs`` of each key, a DAG)."""
    finish: dict[str, float] = {}
    for key in _order(needs):
        finish[key] = durations[key] + max((finish[n] for n in needs[key]), default=0.0)
    return max(finish.values(), default=0.0)


def _order(needs: Mapping[str, Iterable[str]]) -> list[str]:
    """Every key after those it needs (depth first, without recursion)."""
    done: set[str] = set()
    order: list[str] = []
    for root in needs:
        stack = [(root, iter(needs[root]))]
        while stack:
            key, pending = stack[-1]
            need = next((n for n in pending if n not in done), None)
            if need is not None:
                stack.append((need, iter(needs[need])))
            else:
                stack.pop()
                if key not in done:
                    done.add(key)
                    order.append(key)
    return order


def synthetic_graph(nodes: int, *, seed: int) -> BuildGraph:
    """A layered random DAG: each node after the first layer needs 1-3 nodes of the layer
    before and, one time in five, one further back; a few percent are exclusive."""
    from wheelbarrow.build.buildgraph import BuildGraph, Node

    rng = random.Random(seed)  # noqa: S311 -- a benchmark's fixed seed, not a secret
    layers = min(LAYERS, nodes)
    by_layer: dict[int, list[str]] = {}
    made = []
    for i in range(nodes):
        key, layer = f"n{i:04d}", i * layers // nodes
        by_layer.setdefault(layer, []).append(key)
        needs: set[str] = set()
        if layer > 0:
            before = by_layer[layer - 1]
            needs.update(rng.sample(before, k=min(rng.randint(1, 3), len(before))))
            if layer > 1 and rng.random() < FURTHER_BACK:
                needs.add(rng.choice(by_layer[rng.randrange(layer - 1)]))
        exclusive = rng.random() < EXCLUSIVE
        made.append(Node(key=key, label=key, needs=frozenset(needs), exclusive=exclusive))
    return BuildGraph(made)


def sleep_task(seconds: float, *needed: object) -> tuple[int, float, float]:
    """A simulated build on a Dask worker: sleep; (the worker's name, start, end), wall-clock."""
    from distributed import get_worker

    start = time.time()
    time.sleep(seconds)
    return int(get_worker().name), start, time.time()


@contextlib.contextmanager
def _quiet_ports() -> Iterator[None]:
    """Without the warning that the dashboard's usual port is taken (it is not used here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        yield


@dataclass(slots=True)
class SimRun:
    """One run of the graph: the makespan, the CPU this process spent, each build's
    (worker, start, end), and whether every build started after those it needs ended."""

    workers: int
    makespan: float
    cpu: float
    spans: dict[str, tuple[int, float, float]]
    order_ok: bool


def simulate(
    nodes: int, seed: int, durations: Mapping[str, float], workers: int, *, gather: bool = False
) -> SimRun:
    """:func:`simulate_here` in a new process, so that no run inherits what an earlier one
    left in this one (closed clusters' event-loop state made a later 128-worker run stall)."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        job = pool.submit(simulate_here, nodes, seed, dict(durations), workers, gather=gather)
        return job.result()


def simulate_here(
    nodes: int, seed: int, durations: Mapping[str, float], workers: int, *, gather: bool = False
) -> SimRun:
    """The graph of ``synthetic_graph(nodes, seed=seed)`` on a LocalCluster of ``workers``
    one-thread workers with ``build=1`` each, submitted with ``submit_graph`` and waited for
    with ``outcome_of`` (or, for Dask's own time, ``client.gather``); the makespan runs from
    the first submit to the last task's end, the CPU time is this process's."""
    from distributed import Client, LocalCluster

    from wheelbarrow.share.cluster import RESOURCE, outcome_of, submit_graph

    graph = synthetic_graph(nodes, seed=seed)
    with (
        _quiet_ports(),
        LocalCluster(  # type: ignore[no-untyped-call]
            processes=False,
            n_workers=workers,
            threads_per_worker=1,
            resources={RESOURCE: 1},
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        client.wait_for_workers(workers)
        spans: dict[str, tuple[int, float, float]] = {}
        start, cpu = time.time(), time.process_time()
        futures = submit_graph(client, graph, lambda key: (sleep_task, (durations[key],)))
        if gather:
            spans.update(zip(futures, client.gather(list(futures.values())), strict=True))
        else:
            with client.as_current():
                outcome = outcome_of(graph, futures, on_built=spans.__setitem__)
            if not outcome.ok:
                raise CommandFailed(f"the simulation failed: {dict(outcome.failed)}")
        cpu = time.process_time() - cpu
    order_ok = all(
        spans[key][1] >= spans[need][2] - 1e-6
        for key, node in graph.nodes.items()
        for need in node.needs
    )
    makespan = max(e for _, _, e in spans.values()) - start
    return SimRun(workers, makespan, cpu, spans, order_ok)


class SimBench:
    """The synthetic graph, its sampled durations, and the runs for each worker count."""

    def __init__(
        self,
        pool: Mapping[str, float],
        source: str,
        *,
        nodes: int,
        work_seconds: float,
        workers: Sequence[int],
        seed: int = 12,
    ) -> None:
        self.nodes, self.seed = nodes, seed
        self.graph = synthetic_graph(nodes, seed=seed)
        rng = random.Random(seed + 1)  # noqa: S311 -- a benchmark's fixed seed, not a secret
        values = sorted(pool.values())
        raw = {key: rng.choice(values) for key in self.graph.nodes}
        self.scale = work_seconds / sum(raw.values())
        self.durations = {key: value * self.scale for key, value in raw.items()}
        self.pool, self.source, self.workers = dict(pool), source, list(workers)
        needs = {k: n.needs for k, n in self.graph.nodes.items()}
        self.critical = critical_path(self.durations, needs)
        self.work = sum(self.durations.values())
        # By worker count: through outcome_of, through client.gather, 0 s tasks (outcome_of).
        self.runs: dict[int, SimRun] = {}
        self.gathered: dict[int, SimRun] = {}
        self.empty: dict[int, SimRun] = {}

    def measure(self) -> None:
        zero = dict.fromkeys(self.durations, 0.0)
        for n in self.workers:
            log(f"simulation: {n} workers; load average {loadavg()}")
            graph = (self.nodes, self.seed)
            self.runs[n] = simulate(*graph, self.durations, n)
            self.gathered[n] = simulate(*graph, self.durations, n, gather=True)
            self.empty[n] = simulate(*graph, zero, n)
            log(
                f"simulation: {n} workers: {self.runs[n].makespan:.2f} s through outcome_of, "
                f"{self.gathered[n].makespan:.2f} s through gather"
            )

    def bound(self, workers: int) -> float:
        return max(self.critical, self.work / workers)

    def report(self) -> str:
        nodes = self.graph.nodes
        edges = sum(len(n.needs) for n in nodes.values())
        exclusive = sum(1 for n in nodes.values() if n.exclusive)
        lines = [
            f"### Simulation: Dask's scheduler, {len(nodes):,} builds, {edges:,} edges, "
            f"{exclusive} exclusive",
            "",
            "| workers | critical path | work / N | lower bound | makespan (outcome_of) "
            "| ÷ bound | makespan (client.gather) | ÷ bound | 0 s tasks (outcome_of) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n in self.workers:
            run, gathered, empty, bound = (
                self.runs[n],
                self.gathered[n],
                self.empty[n],
                self.bound(n),
            )
            lines.append(
                f"| {n} | {secs(self.critical)} | {secs(self.work / n)} | {secs(bound)} | "
                f"{secs(run.makespan)} | {run.makespan / bound:.2f} | "
                f"{secs(gathered.makespan)} | {gathered.makespan / bound:.2f} | "
                f"{secs(empty.makespan)}, {len(nodes) / empty.makespan:.0f} tasks/s |"
            )
        lines += ["", self.notes(), "", self.overhead()]
        return "\n".join(lines)

    def notes(self) -> str:
        median = statistics.median(self.pool.values())
        kept = all(r.order_ok for d in (self.runs, self.gathered, self.empty) for r in d.values())
        return (
            f"Durations: each build's drawn (seed fixed) from {len(self.pool)} real build times "
            f"({self.source}; median {median:.1f} s), scaled by {self.scale:.4f} so that the "
            f"work sums to {secs(self.work)}. The graph: {LAYERS} layers, each build needing 1-3 "
            "of the layer before and, one time in five, one further back; "
            f"{EXCLUSIVE:.0%} exclusive (alone on its one-thread worker). `submit_graph` "
            "(wheelbarrow.share.cluster) submits it to a new `distributed.LocalCluster("
            "processes=False, threads_per_worker=1, resources={'build': 1})` for each run; a "
            "task sleeps, and the makespan runs from the first submit to the last task's end. "
            "`outcome_of` is how `build --cluster` waits; `client.gather` waits for the same "
            "futures with Dask alone. Every build started after those it needs ended: "
            f"{'yes' if kept else 'NO'}."
        )

    def overhead(self) -> str:
        nodes = len(self.graph.nodes)
        cpu = "; ".join(
            f"{n} workers {self.runs[n].cpu:.1f} s vs {self.gathered[n].cpu:.1f} s "
            f"({(self.runs[n].cpu - self.gathered[n].cpu) / nodes * 1000:+.1f} ms per build)"
            for n in self.workers
        )
        return (
            "CPU time of this process (scheduler, workers and client share it) during each "
            f"run, outcome_of vs client.gather: {cpu}. `outcome_of` takes each finished "
            "build from Dask's `as_completed` (polled every 20 ms, so that progress lines "
            "come from the calling thread), a constant cost per build; with 128 in-process "
            "workers on 2 cores the scheduler's own event loop is what the makespan measures."
        )


def sim_timeline(sim: SimBench, out: Path) -> Path:
    """The smallest worker count's run through ``outcome_of`` as
    ``out/simulation-<N>-workers.svg``."""
    first = sim.runs[min(sim.workers)]
    bars = [
        Bar(key, w, s, e, key, "exclusive" if sim.graph.nodes[key].exclusive else "build")
        for key, (w, s, e) in first.spans.items()
    ]
    edges = [(need, key) for key, node in sim.graph.nodes.items() for need in node.needs]
    caption = [
        f"The simulation's {first.workers}-worker run: {len(bars)} builds sleeping their "
        f"scaled durations (red: exclusive), {len(edges)} build-order edges (faint lines), "
        f"makespan {first.makespan:.2f} s against a lower bound of "
        f"{sim.bound(first.workers):.2f} s."
    ]
    rows = [f"worker {i}" for i in range(first.workers)]
    title = f"Simulation: {len(bars)} builds on {first.workers} Dask workers"
    svg = timeline_svg(rows, bars, edges, title=title, caption=caption)
    return write_svg(out / f"simulation-{first.workers}-workers.svg", svg)


def run_part(
    pool: Mapping[str, float], source: str, *, nodes: int, work: float, workers: Sequence[int],
    out: Path,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """Run the simulation; its Markdown and raw figures."""
    sim = SimBench(pool, source, nodes=nodes, work_seconds=work, workers=workers)
    sim.measure()
    picture = sim_timeline(sim, out)
    raw = {
        "critical": sim.critical, "work": sim.work, "scale": sim.scale, "pool": sim.pool,
        "makespans": {n: r.makespan for n, r in sim.runs.items()},
        "gathered": {n: r.makespan for n, r in sim.gathered.items()},
        "empty": {n: r.makespan for n, r in sim.empty.items()},
        "cpu": {n: [sim.runs[n].cpu, sim.gathered[n].cpu] for n in sim.workers},
        "load": os.getloadavg(),
    }  # fmt: skip
    return sim.report() + f"\n\nTimeline: `{picture}`", raw
