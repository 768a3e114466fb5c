"""A real Dask cluster on 127.0.0.1 for tests: ``dask scheduler`` and ``dask worker`` processes.

Each worker runs with an environment of its own (its own store, the remote
store's credentials, no package index) as a worker on another machine would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .net import free_port

START_TIMEOUT = 60.0
# What a worker on another machine would not have: any index is unreachable from here.
NO_INDEX = {
    "UV_INDEX_URL": "http://127.0.0.1:9/simple",
    "UV_DEFAULT_INDEX": "http://127.0.0.1:9/simple",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
}


def _dask(*args: str) -> list[str]:
    """The ``dask`` command of this interpreter's environment."""
    return [str(Path(sys.executable).with_name("dask")), *args]


@dataclass(slots=True)
class Worker:
    """One ``dask worker`` process: its name, store and log."""

    name: str
    store: Path
    log: Path
    process: subprocess.Popen[bytes]
    address: str = ""

    def kill(self) -> None:
        """Kill it at once (and its children: the builds it runs), as a machine that dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass(slots=True)
class LocalDaskCluster:
    """A running scheduler (``address`` is ``tcp://127.0.0.1:PORT``) and its workers."""

    address: str
    workers: list[Worker] = field(default_factory=list)

    def worker_of(self, address: str) -> Worker:
        """The worker whose Dask address starts ``address`` (a report's ``worker`` field)."""
        return next(w for w in self.workers if address.startswith(w.address))


def _wait_for_workers(address: str, count: int, logs: list[Path]) -> list[str]:
    """Until the scheduler knows ``count`` workers; their addresses, in the order of their names."""
    from distributed import Client

    deadline = time.monotonic() + START_TIMEOUT
    with Client(address, timeout=START_TIMEOUT, set_as_default=False) as client:
        while time.monotonic() < deadline:
            workers = client.scheduler_info()["workers"]
            if len(workers) >= count:
                by_name = {str(w["name"]): a for a, w in workers.items()}
                return [by_name[f"w{i}"] for i in range(count)]
            time.sleep(0.2)
    tails = "\n".join(p.read_text(errors="replace")[-1500:] for p in logs if p.exists())
    raise RuntimeError(f"the Dask workers did not join in {START_TIMEOUT}s:\n{tails}")


@contextlib.contextmanager
def run_dask_cluster(
    workdir: Path,
    *,
    workers: int = 2,
    threads: int = 1,
    resources: int | None = None,
    env: Mapping[str, str] = {},
) -> Iterator[LocalDaskCluster]:
    """A scheduler and ``workers`` worker processes on 127.0.0.1, stopped on exit.

    Each worker has ``threads`` threads and declares ``build=resources`` (``threads`` by
    default; 0 declares none), its own store ``workdir/w<N>/store`` and ``env`` over
    this process's environment without any package index.
    """
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WHEELBARROW_", "UV_"))}
    scheduler_log = workdir / "scheduler.log"
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = LocalDaskCluster(address=address)
    try:
        with scheduler_log.open("wb") as log:
            procs.append(
                subprocess.Popen(
                    _dask("scheduler", "--host", "127.0.0.1", "--port", str(port),
                          "--no-dashboard", "--no-show"),
                    stdout=log, stderr=subprocess.STDOUT, env=base, start_new_session=True,
                )
            )  # fmt: skip
        units = threads if resources is None else resources
        for i in range(workers):
            home = workdir / f"w{i}"
            home.mkdir(parents=True, exist_ok=True)
            own = {**base, **NO_INDEX, **env, "WHEELBARROW_STORE": str(home / "store")}
            args = ["worker", address, "--name", f"w{i}", "--nthreads", str(threads),
                    "--no-nanny", "--no-dashboard", "--memory-limit", "0",
                    "--local-directory", str(home / "dask")]  # fmt: skip
            if units:
                args += ["--resources", f"build={units}"]
            log_path = home / "worker.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    _dask(*args), stdout=log, stderr=subprocess.STDOUT, env=own,
                    start_new_session=True, cwd=home,
                )  # fmt: skip
            procs.append(process)
            cluster.workers.append(
                Worker(name=f"w{i}", store=home / "store", log=log_path, process=process)
            )
        found = _wait_for_workers(address, workers, [w.log for w in cluster.workers])
        for worker, worker_address in zip(cluster.workers, found, strict=True):
            worker.address = worker_address
        yield cluster
    finally:
        for process in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in procs:
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
