"""Build order: which source builds wait for which, and running them in parallel in that order."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import MappingProxyType

from wheelbarrow._core.errors import BuildCycleError, BuildGraphError

EventSink = Callable[[str, str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One source build.

    ``needs`` are the keys of the builds that must succeed before this one can
    start (its build requirements that are themselves built from source). An
    ``exclusive`` build is memory-heavy: it runs with no other build beside it.
    """

    key: str
    label: str
    needs: frozenset[str]
    exclusive: bool = False


class BuildGraph:
    """A validated set of builds and the needs between them.

    Construction refuses duplicate keys and needs that name no node (every
    problem at once); cycles are allowed here and reported by ``check``, so a
    caller can show them all.
    """

    def __init__(self, nodes: Iterable[Node]) -> None:
        by_key: dict[str, Node] = {}
        problems: list[str] = []
        for node in nodes:
            if node.key in by_key:
                problems.append(
                    f"duplicate build {node.key!r}: {by_key[node.key].label!r} and {node.label!r}"
                )
            else:
                by_key[node.key] = node
        for key in sorted(by_key):
            node = by_key[key]
            problems.extend(
                f"{node.label} ({key!r}) needs {need!r}, which is not in the build graph"
                for need in sorted(node.needs - by_key.keys())
            )
        if problems:
            raise BuildGraphError(
                "\n".join(problems),
                hint="every build requirement built from source must be a node of the graph",
            )
        self._nodes: Mapping[str, Node] = MappingProxyType(dict(sorted(by_key.items())))
        dependants: dict[str, list[str]] = {key: [] for key in self._nodes}
        for key, node in self._nodes.items():
            for need in node.needs:
                dependants[need].append(key)
        self._dependants: Mapping[str, tuple[str, ...]] = {
            key: tuple(sorted(keys)) for key, keys in dependants.items()
        }
        self._order = self._topological_order()
        self._cycles = self._find_cycles() if len(self._order) < len(self._nodes) else []

    @property
    def nodes(self) -> Mapping[str, Node]:
        """Every node by key, in key order."""
        return self._nodes

    def dependants(self, key: str) -> tuple[str, ...]:
        """The keys of the nodes that directly need ``key``, in key order."""
        return self._dependants[key]

    def order(self) -> list[str]:
        """Every key after all that it needs; among keys free at once, the smallest first.

        Raises ``BuildCycleError`` when there is no such order.
        """
        self.check()
        return list(self._order)

    def cycles(self) -> list[list[str]]:
        """Every cycle, each a list of keys where one needs the next and the last the first.

        One entry per strongly connected component with more than one member
        or a node that needs itself. It starts at the component's smallest
        key and visits every member; when a component is not one simple loop
        a member can appear more than once. Entries are sorted by first key.
        """
        return [list(cycle) for cycle in self._cycles]

    def check(self) -> None:
        """Raise ``BuildCycleError`` naming every cycle (with labels) if there is one."""
        if self._cycles:
            labels = {key: node.label for key, node in self._nodes.items()}
            raise BuildCycleError(self._cycles, labels=labels)

    def _topological_order(self) -> list[str]:
        """Kahn's algorithm with ties by key; leaves out every node on or after a cycle."""
        waiting = {key: len(node.needs) for key, node in self._nodes.items()}
        free = [key for key, count in waiting.items() if count == 0]
        heapq.heapify(free)
        order: list[str] = []
        while free:
            key = heapq.heappop(free)
            order.append(key)
            for dependant in self._dependants[key]:
                waiting[dependant] -= 1
                if waiting[dependant] == 0:
                    heapq.heappush(free, dependant)
        return order

    def _find_cycles(self) -> list[list[str]]:
        cycles = [
            self._tour(component)
            for component in self._components()
            if len(component) > 1 or component <= self._nodes[min(component)].needs
        ]
        return sorted(cycles)

    def _components(self) -> list[set[str]]:
        """Strongly connected components (Tarjan's algorithm, without recursion)."""
        index: dict[str, int] = {}
        lowlink: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        components: list[set[str]] = []
        # The explicit call stack: a node and the needs it has still to look at.
        work: list[tuple[str, list[str]]] = []

        def visit(key: str) -> None:
            index[key] = lowlink[key] = len(index)
            stack.append(key)
            on_stack.add(key)
            work.append((key, sorted(self._nodes[key].needs, reverse=True)))

        for root in self._nodes:
            if root in index:
                continue
            visit(root)
            while work:
                key, pending = work[-1]
                if pending:
                    need = pending.pop()
                    if need not in index:
                        visit(need)
                    elif need in on_stack:
                        lowlink[key] = min(lowlink[key], index[need])
                    continue
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[key])
                if lowlink[key] == index[key]:
                    component: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == key:
                            break
                    components.append(component)
        return components

    def _tour(self, component: set[str]) -> list[str]:
        """A closed walk along needs from the smallest member through every member."""
        start = min(component)
        walk = [start]
        seen = {start}
        here = start
        while len(seen) < len(component):
            path = self._path(here, lambda key: key not in seen, component)
            walk.extend(path)
            seen.update(path)
            here = path[-1]
        back = self._path(here, lambda key: key == start, component)
        walk.extend(back[:-1])
        return walk

    def _path(self, origin: str, goal: Callable[[str], bool], within: set[str]) -> list[str]:
        """The shortest path of one step or more from ``origin`` to a goal (ties by key).

        The path leaves out ``origin`` and ends at the goal; inside a strongly
        connected component one always exists.
        """
        came_from: dict[str, str] = {}
        queue = deque([origin])
        while queue:
            key = queue.popleft()
            for need in sorted(self._nodes[key].needs & within):
                if need in came_from:
                    continue
                came_from[need] = key
                if goal(need):
                    path = [need]
                    while came_from[path[-1]] != origin:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                queue.append(need)
        raise AssertionError(f"no path from {origin!r} inside {sorted(within)}")  # pragma: no cover


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What a run of the graph did: every node is in exactly one of the three.

    ``built`` is in build order (the graph's topological order); ``failed``
    maps a key to the exception its job raised; ``skipped`` maps a key to the
    failed key that made it impossible (directly or through other skipped nodes).
    """

    built: tuple[str, ...]
    failed: Mapping[str, Exception]
    skipped: Mapping[str, str]

    @property
    def ok(self) -> bool:
        """True when every node was built."""
        return not self.failed and not self.skipped


def run_graph(
    graph: BuildGraph,
    job: Callable[[str], None],
    *,
    workers: int,
    on_event: EventSink | None = None,
) -> Outcome:
    """Run ``job(key)`` for every node once all that it needs was built, ``workers`` at a time.

    Jobs run in threads (they spend their time waiting on subprocesses). Among
    the ready nodes the first in ``graph.order()`` starts first; an exclusive
    node waits until nothing runs, and nothing starts while it runs (a ready
    exclusive node also holds back the ready nodes after it, so it is not starved).

    A job that raises an ``Exception`` fails its node: every node that needs it,
    directly or not, is skipped, and everything else goes on. A job raising
    anything else (``KeyboardInterrupt``, ``SystemExit``) stops the run: no new
    job starts, the running ones are waited for, then it is re-raised; the same
    holds for a ``KeyboardInterrupt`` in the calling thread.

    ``on_event(key, what)`` is told "started", "built", "failed" or "skipped";
    it is called from the calling thread only, so calls never overlap. Each
    node gets one of the last three, and "started" comes before "built" or
    "failed". Raises ``BuildCycleError`` before running anything if the graph
    has a cycle.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    graph.check()
    run = _Run(graph, on_event or _ignore)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wheelbarrow-build") as pool:
        while run.running or (run.ready and run.stop is None):
            run.start_ready(pool, job, workers)
            done, _ = wait(run.running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: run.position[run.running[f]]):
                run.finish(future)
    if run.stop is not None:
        raise run.stop
    return run.outcome()


class _Run:
    """The state of one :func:`run_graph`: what waits, is ready, runs, was built, failed or
    was skipped. Used from the calling thread only."""

    def __init__(self, graph: BuildGraph, emit: EventSink) -> None:
        self.graph = graph
        self.emit = emit
        self.order = graph.order()
        self.position = {key: place for place, key in enumerate(self.order)}
        self.waiting = {key: len(graph.nodes[key].needs) for key in self.order}
        self.ready = [self.position[key] for key in self.order if self.waiting[key] == 0]
        self.built: set[str] = set()
        self.failed: dict[str, Exception] = {}
        self.skipped: dict[str, str] = {}
        self.running: dict[Future[None], str] = {}
        self.stop: BaseException | None = None

    def start_ready(
        self, pool: ThreadPoolExecutor, job: Callable[[str], None], workers: int
    ) -> None:
        """Start the ready nodes in order while workers are free and exclusivity allows."""
        while self.stop is None and self.ready and len(self.running) < workers:
            node = self.graph.nodes[self.order[self.ready[0]]]
            if self.running and (
                node.exclusive or _any_exclusive(self.graph, self.running.values())
            ):
                break
            heapq.heappop(self.ready)
            self.emit(node.key, "started")
            self.running[pool.submit(job, node.key)] = node.key

    def finish(self, future: Future[None]) -> None:
        """Account for a finished job: its dependants get ready, or are skipped if it failed;
        anything but an ``Exception`` stops the run."""
        key = self.running.pop(future)
        error = future.exception()
        if error is None:
            self.built.add(key)
            self.emit(key, "built")
            for dependant in self.graph.dependants(key):
                self.waiting[dependant] -= 1
                if self.waiting[dependant] == 0:
                    heapq.heappush(self.ready, self.position[dependant])
        elif isinstance(error, Exception):
            self.failed[key] = error
            self.emit(key, "failed")
            for lost in sorted(
                _dependants_of(self.graph, key) - self.skipped.keys(),
                key=self.position.__getitem__,
            ):
                self.skipped[lost] = key
                self.emit(lost, "skipped")
        elif self.stop is None:
            self.stop = error

    def outcome(self) -> Outcome:
        """What the run did, each part in build order."""
        order = self.order
        return Outcome(
            built=tuple(key for key in order if key in self.built),
            failed=MappingProxyType({key: self.failed[key] for key in order if key in self.failed}),
            skipped=MappingProxyType(
                {key: self.skipped[key] for key in order if key in self.skipped}
            ),
        )


def _ignore(key: str, what: str) -> None:
    """The event sink used when the caller gives none."""


def _any_exclusive(graph: BuildGraph, keys: Iterable[str]) -> bool:
    return any(graph.nodes[key].exclusive for key in keys)


def _dependants_of(graph: BuildGraph, key: str) -> set[str]:
    """Every key that needs ``key``, directly or through others."""
    found: set[str] = set()
    queue = deque(graph.dependants(key))
    while queue:
        dependant = queue.popleft()
        if dependant not in found:
            found.add(dependant)
            queue.extend(graph.dependants(dependant))
    return found
