"""The build graph as Dask tasks, on a real in-process Dask cluster (threads, no processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
from distributed import Client, LocalCluster

from wheelbarrow.app.config import BuildConfig, PackageSettings
from wheelbarrow.build.buildgraph import BuildGraph, Node
from wheelbarrow.build.remotebuild import ClusterError
from wheelbarrow.share.cluster import DaskCluster, outcome_of, pack, submit_graph, unpack


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two workers of two threads, each declaring two build units."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=2, processes=False, resources={"build": 2},
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


def _graph(*nodes: tuple[str, tuple[str, ...]], exclusive: str = "") -> BuildGraph:
    return BuildGraph(
        Node(key=k, label=k, needs=frozenset(needs), exclusive=k == exclusive) for k, needs in nodes
    )


_spans: dict[str, tuple[str, float, float]] = {}
_lock = threading.Lock()


def _work(key: str, seconds: float, *needed: str) -> str:
    """A task: sleeps, records when and where it ran, and fails for keys named ``bad*``."""
    from distributed import get_worker

    start = time.monotonic()
    time.sleep(seconds)
    with _lock:
        _spans[key] = (get_worker().address, start, time.monotonic())
    if key.startswith("bad"):
        raise ValueError(f"{key} failed")
    return f"{key}({','.join(needed)})"


class TestPack:
    def test_read_only_mappings_travel(self) -> None:
        """Settings hold read-only mappings, which plain pickle refuses: pack keeps them."""
        settings = PackageSettings(env=MappingProxyType({"CFLAGS": "-O2"}))
        config = BuildConfig(packages=MappingProxyType({"numpy": settings}))
        again = unpack(pack(config))
        assert again == config
        assert isinstance(again.packages, MappingProxyType)


class TestSubmitGraph:
    def test_each_task_gets_what_it_needs_and_runs_after_it(self, client: Client) -> None:
        """A diamond: d gets the results of b and c, each of which got a's."""
        graph = _graph(("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c")))
        futures = submit_graph(client, graph, lambda key: (_work, (key, 0.05)))
        built: dict[str, Any] = {}
        with client.as_current():
            outcome = outcome_of(graph, futures, on_built=built.__setitem__)
        assert outcome.ok and set(outcome.built) == {"a", "b", "c", "d"}
        assert built["d"] == "d(b(a()),c(a()))"
        assert _spans["b"][1] >= _spans["a"][2] and _spans["d"][1] >= _spans["c"][2]

    def test_a_failure_skips_its_dependants_and_nothing_else(self, client: Client) -> None:
        """bad fails; what needs it (directly or not) is skipped naming it; the rest is built."""
        graph = _graph(("bad", ()), ("mid", ("bad",)), ("top", ("mid",)), ("free", ()))
        futures = submit_graph(client, graph, lambda key: (_work, (key, 0.01)))
        with client.as_current():
            outcome = outcome_of(graph, futures)
        assert outcome.built == ("free",)
        assert list(outcome.failed) == ["bad"] and "bad failed" in str(outcome.failed["bad"])
        assert dict(outcome.skipped) == {"mid": "bad", "top": "bad"}

    def test_a_result_that_is_not_trusted_fails_its_build(self, client: Client) -> None:
        """When on_built raises (the wheel is not in the remote store), that build failed."""
        graph = _graph(("one", ()), ("two", ("one",)))
        futures = submit_graph(client, graph, lambda key: (_work, (key, 0.01)))

        def refuse(key: str, result: Any) -> None:
            if key == "one":
                raise ValueError("not trusted")

        with client.as_current():
            outcome = outcome_of(graph, futures, on_built=refuse)
        assert list(outcome.failed) == ["one"] and dict(outcome.skipped) == {"two": "one"}

    def test_an_exclusive_task_runs_alone_on_its_worker(self, client: Client) -> None:
        """The exclusive task asks for both build units: no other task shares its worker."""
        names = [f"t{i}" for i in range(6)]
        graph = _graph(("big", ()), *((n, ()) for n in names), exclusive="big")
        futures = submit_graph(client, graph, lambda key: (_work, (key, 0.3)), slots=2)
        with client.as_current():
            assert outcome_of(graph, futures).ok
        where, start, end = _spans["big"]
        for name in names:
            other, o_start, o_end = _spans[name]
            if other == where:
                assert o_end <= start or o_start >= end, f"{name} overlapped the exclusive task"


class TestDaskCluster:
    def test_workers_without_the_build_resource_are_an_error(self) -> None:
        """Tasks asking for a resource no worker has would wait for ever: refused at once."""
        with LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as bare:
            cluster = DaskCluster(bare.scheduler_address, remote_url="s3://b/p")
            with pytest.raises(ClusterError) as raised:
                cluster.run(_graph(("a", ())), {}, on_built=print, on_started=print)
        assert "1 worker(s) offering the resource 'build'" in raised.value.message
        assert "--resources build=N" in (raised.value.hint or "")

    def test_an_unreachable_scheduler_is_a_clear_error(self) -> None:
        """An address nothing listens on names the address and how to start a scheduler."""
        cluster = DaskCluster("tcp://127.0.0.1:9", remote_url="s3://b/p", connect_seconds=1)
        with pytest.raises(ClusterError) as raised:
            cluster.run(_graph(("a", ())), {}, on_built=print, on_started=print)
        assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in raised.value.message
        assert "dask scheduler" in (raised.value.hint or "")
