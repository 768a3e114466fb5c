"""The build graph: validation, order, cycles, and running builds in parallel in that order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping

import pytest

from wheelbarrow._core.errors import BuildCycleError, BuildGraphError, InputError
from wheelbarrow.build.buildgraph import BuildGraph, Node, Outcome, run_graph


def node(key: str, *needs: str, exclusive: bool = False) -> Node:
    return Node(key=key, label=f"{key} 1.0", needs=frozenset(needs), exclusive=exclusive)


def graph(needs: Mapping[str, Iterable[str]], exclusive: Iterable[str] = ()) -> BuildGraph:
    heavy = set(exclusive)
    return BuildGraph(node(key, *deps, exclusive=key in heavy) for key, deps in needs.items())


class Recorder:
    """A job and an event sink that remember what happened, with a behaviour per key."""

    def __init__(self, actions: Mapping[str, Callable[[], object]] | None = None) -> None:
        self.actions = dict(actions or {})
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.intervals: dict[str, tuple[float, float]] = {}
        self.running = 0
        self.peak = 0

    def job(self, key: str) -> None:
        start = time.perf_counter()
        with self.lock:
            self.calls.append(key)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.actions.get(key, lambda: None)()
        finally:
            with self.lock:
                self.running -= 1
            self.intervals[key] = (start, time.perf_counter())

    def event(self, key: str, what: str) -> None:
        self.events.append((key, what))

    def run(self, built: BuildGraph, *, workers: int) -> Outcome:
        return run_graph(built, self.job, workers=workers, on_event=self.event)


def sleep(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


def fail(message: str = "boom") -> Callable[[], None]:
    def action() -> None:
        raise RuntimeError(message)

    return action


class TestBuildGraph:
    def test_order_puts_needs_first(self) -> None:
        """Every key comes after all that it needs."""
        needs = {"scipy": ["numpy", "pybind11"], "numpy": ["cython"], "pybind11": [], "cython": []}
        order = graph(needs).order()
        assert sorted(order) == sorted(needs)
        for key, deps in needs.items():
            assert all(order.index(dep) < order.index(key) for dep in deps)

    def test_order_breaks_ties_by_key(self) -> None:
        """Among keys free at the same time the smallest comes first, whatever the input order."""
        needs = {"d": ["b"], "c": [], "b": [], "a": ["c"]}
        assert graph(needs).order() == ["b", "c", "a", "d"]
        assert graph(dict(reversed(needs.items()))).order() == ["b", "c", "a", "d"]

    def test_unknown_need_names_both(self) -> None:
        """A need that is no node is refused, naming the node and the missing key."""
        with pytest.raises(BuildGraphError, match=r"scipy 1\.0 \('scipy'\) needs 'numpy'"):
            graph({"scipy": ["numpy"]})

    def test_every_problem_is_reported(self) -> None:
        """Unknown needs and duplicate keys are all listed in one error."""
        nodes = [node("a", "x"), node("b", "y"), Node(key="a", label="a 2.0", needs=frozenset())]
        with pytest.raises(BuildGraphError) as caught:
            BuildGraph(nodes)
        assert str(caught.value).splitlines() == [
            "duplicate build 'a': 'a 1.0' and 'a 2.0'",
            "a 1.0 ('a') needs 'x', which is not in the build graph",
            "b 1.0 ('b') needs 'y', which is not in the build graph",
        ]
        assert isinstance(caught.value, InputError)

    def test_acyclic_graph_checks(self) -> None:
        """A graph without cycles has none and passes the check."""
        built = graph({"a": ["b"], "b": []})
        assert built.cycles() == []
        built.check()


class TestCycles:
    def test_two_cycle(self) -> None:
        """Two builds needing each other form one cycle."""
        assert graph({"a": ["b"], "b": ["a"]}).cycles() == [["a", "b"]]

    def test_three_cycle_in_need_order(self) -> None:
        """A cycle lists its members so that each needs the next."""
        assert graph({"a": ["c"], "b": ["a"], "c": ["b"]}).cycles() == [["a", "c", "b"]]

    def test_self_loop(self) -> None:
        """A build needing itself is a cycle of one."""
        assert graph({"a": ["a"], "b": ["a"]}).cycles() == [["a"]]

    def test_separate_cycles_are_all_reported(self) -> None:
        """Two unrelated cycles are both found, ordered by their first key."""
        needs = {"z": ["y"], "y": ["x"], "x": ["z"], "b": ["a"], "a": ["b"], "ok": ["a"]}
        assert graph(needs).cycles() == [["a", "b"], ["x", "z", "y"]]

    def test_tangled_component_visits_every_member(self) -> None:
        """A component of several loops gives one walk along needs through all its members."""
        cycle = graph({"a": ["b"], "b": ["a", "c"], "c": ["b"]}).cycles()
        assert cycle == [["a", "b", "c", "b"]]

    def test_message_names_every_cycle_with_labels(self) -> None:
        """The error shows each cycle as a closed chain of labels, and how to break it."""
        with pytest.raises(BuildCycleError) as caught:
            graph({"a": ["b"], "b": ["a"], "c": ["c"]}).check()
        error = caught.value
        assert str(error).splitlines()[1:] == ["  - a 1.0 -> b 1.0 -> a 1.0", "  - c 1.0 -> c 1.0"]
        assert error.cycles == (("a", "b"), ("c",))
        assert error.hint is not None
        assert "providing a wheel for one of its members" in error.hint
        assert "--no-binary" in error.hint

    def test_order_refuses_a_cycle(self) -> None:
        """There is no build order through a cycle."""
        with pytest.raises(BuildCycleError):
            graph({"a": ["b"], "b": ["a"]}).order()


class TestRunGraph:
    def test_builds_everything_in_order(self) -> None:
        """With one worker the jobs start in the graph's order and all are built."""
        built = graph({"scipy": ["numpy"], "numpy": ["cython"], "cython": [], "lxml": []})
        recorder = Recorder()
        outcome = recorder.run(built, workers=1)
        assert recorder.calls == built.order()
        assert outcome == Outcome(built=tuple(built.order()), failed={}, skipped={})
        assert outcome.ok

    def test_cycle_is_refused_before_any_job(self) -> None:
        """A cyclic graph raises the cycle error and runs nothing."""
        recorder = Recorder()
        with pytest.raises(BuildCycleError):
            recorder.run(graph({"a": ["b"], "b": ["a"], "c": []}), workers=2)
        assert recorder.calls == []

    def test_independent_jobs_overlap(self) -> None:
        """With two workers two independent jobs run at the same time."""
        barrier = threading.Barrier(2)

        def meet() -> None:
            barrier.wait(timeout=5)

        recorder = Recorder({"a": meet, "b": meet})
        outcome = recorder.run(graph({"a": [], "b": []}), workers=2)
        assert outcome.built == ("a", "b")

    def test_one_worker_runs_one_job_at_a_time(self) -> None:
        """With one worker the first job waits alone at the barrier until it breaks."""
        barrier = threading.Barrier(2)

        def meet() -> None:
            barrier.wait(timeout=0.2)

        recorder = Recorder({"a": meet, "b": meet})
        outcome = recorder.run(graph({"a": [], "b": []}), workers=1)
        assert isinstance(outcome.failed["a"], threading.BrokenBarrierError)
        assert ("a", "failed") in recorder.events
        # The broken barrier fails the second job at once, without overlapping the first.
        assert isinstance(outcome.failed["b"], threading.BrokenBarrierError)
        assert recorder.intervals["a"][1] <= recorder.intervals["b"][0]
        assert recorder.peak == 1

    def test_never_more_than_workers(self) -> None:
        """No more jobs run at once than there are workers."""
        recorder = Recorder({key: sleep(0.03) for key in "abcdefg"})
        outcome = recorder.run(graph({key: [] for key in "abcdefg"}), workers=3)
        assert len(outcome.built) == 7
        assert recorder.peak == 3

    def test_exclusive_job_runs_alone(self) -> None:
        """An exclusive job never overlaps another, before or after it."""
        keys = "abcdef"
        recorder = Recorder({key: sleep(0.02) for key in keys})
        outcome = recorder.run(graph({key: [] for key in keys}, exclusive="c"), workers=4)
        assert len(outcome.built) == len(keys)
        start, end = recorder.intervals["c"]
        for key in set(keys) - {"c"}:
            other_start, other_end = recorder.intervals[key]
            assert other_end <= start or end <= other_start, key
        assert recorder.peak > 1

    def test_exclusive_job_waits_for_running_jobs(self) -> None:
        """An exclusive job that becomes ready while another runs starts only after it ends."""
        recorder = Recorder({"a": sleep(0.01), "b": sleep(0.05)})
        built = graph({"a": [], "b": [], "x": ["a"]}, exclusive="x")
        recorder.run(built, workers=2)
        assert recorder.intervals["b"][1] <= recorder.intervals["x"][0]

    def test_failure_skips_exactly_its_dependants(self) -> None:
        """A failed job skips every node that needs it, directly or not, and nothing else."""
        needs = {
            "numpy": [],
            "scipy": ["numpy"],
            "sklearn": ["scipy"],
            "pandas": ["numpy", "cython"],
            "cython": [],
            "lxml": ["cython"],
            "pyyaml": [],
        }
        recorder = Recorder({"numpy": fail("compiler exploded")})
        outcome = recorder.run(graph(needs), workers=2)
        assert set(outcome.built) == {"cython", "lxml", "pyyaml"}
        assert list(outcome.failed) == ["numpy"]
        assert str(outcome.failed["numpy"]) == "compiler exploded"
        assert outcome.skipped == {"pandas": "numpy", "scipy": "numpy", "sklearn": "numpy"}
        assert set(recorder.calls) == {"numpy", "cython", "lxml", "pyyaml"}
        assert not outcome.ok

    def test_skip_names_the_first_failure(self) -> None:
        """A node behind two failures is skipped once, for the failure seen first."""
        recorder = Recorder({"a": fail(), "b": fail()})
        outcome = recorder.run(graph({"a": [], "b": [], "c": ["a", "b"]}), workers=1)
        assert outcome.skipped == {"c": "a"}
        assert recorder.events.count(("c", "skipped")) == 1

    def test_events_in_order(self) -> None:
        """Each node starts before it ends, and its dependants are skipped right after it fails."""
        recorder = Recorder({"b": fail()})
        recorder.run(graph({"a": [], "b": ["a"], "c": ["b"], "d": ["a"]}), workers=1)
        assert recorder.events == [
            ("a", "started"),
            ("a", "built"),
            ("b", "started"),
            ("b", "failed"),
            ("c", "skipped"),
            ("d", "started"),
            ("d", "built"),
        ]

    def test_every_node_gets_one_final_event(self) -> None:
        """In a parallel run every node ends exactly once, after it started if it ran."""
        needs = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": [], "f": ["e"]}
        recorder = Recorder({"e": fail(), "a": sleep(0.01)})
        recorder.run(graph(needs), workers=3)
        finals = [(key, what) for key, what in recorder.events if what != "started"]
        assert sorted(key for key, _ in finals) == sorted(needs)
        for key, what in finals:
            if what != "skipped":
                assert recorder.events.index((key, "started")) < recorder.events.index((key, what))

    def test_interrupt_stops_new_work_and_propagates(self) -> None:
        """KeyboardInterrupt in a job waits for the running jobs, starts no more, and re-raises."""
        finished = threading.Event()

        def slow() -> None:
            time.sleep(0.05)
            finished.set()

        def interrupt() -> None:
            raise KeyboardInterrupt

        recorder = Recorder({"a": interrupt, "b": slow})
        with pytest.raises(KeyboardInterrupt):
            recorder.run(graph({"a": [], "b": [], "c": [], "d": ["b"]}), workers=2)
        assert finished.is_set()
        assert sorted(recorder.calls) == ["a", "b"]
        assert ("b", "built") in recorder.events

    def test_workers_must_be_positive(self) -> None:
        """Zero workers is a caller error."""
        with pytest.raises(ValueError, match="at least 1"):
            run_graph(graph({"a": []}), lambda key: None, workers=0)
