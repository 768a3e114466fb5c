"""The worker processes that unpack wheels: each answers one task (a JSON line) at a time."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, cast

from wheelbarrow._core.errors import InstallError

WORKER = Path(__file__).with_name("unpack_worker.py")
# The worker's file run as __main__, without its directory on sys.path (where this
# package's site.py would be found first on a Python before 3.11, whose -I keeps it).
_BOOTSTRAP = (
    "import sys; p = sys.argv[1]; "
    "exec(compile(open(p, 'rb').read(), p, 'exec'), {'__name__': '__main__'})"
)


def accelerator() -> list[str]:
    """The directory holding wheelbarrow's ISA-L bindings (isal), for workers whose Python can
    load them (the same version and ABI as this one: they try); none when it is missing."""
    import importlib.util

    spec = importlib.util.find_spec("isal")
    if spec is None or spec.origin is None:
        return []
    return [str(Path(spec.origin).parent.parent)]


class Workers:
    """Worker processes of one interpreter, each answering one task at a time, in the order
    the tasks are submitted; after an error, no further task is handed out."""

    def __init__(self, python: Path, count: int) -> None:
        self._python = python
        self._procs: list[tuple[subprocess.Popen[str], IO[bytes]]] = []
        self._queue: queue.SimpleQueue[tuple[int, str] | None] = queue.SimpleQueue()
        self._answers: dict[int, dict[str, Any]] = {}
        self._died: list[InstallError] = []
        self._submitted = 0
        self.failed = False  # an error answer, or a worker gone: stop submitting
        try:
            for _ in range(count):
                self._procs.append(self._start())
        except OSError as exc:
            self.close()
            raise InstallError(f"could not start {python} to unpack wheels: {exc}") from exc
        self._threads = [
            threading.Thread(target=self._serve, args=proc_log, daemon=True)
            for proc_log in self._procs
        ]
        for thread in self._threads:
            thread.start()

    def _start(self) -> tuple[subprocess.Popen[str], IO[bytes]]:
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            # The worker's file, this process's pid (to die with it), where isal is.
            args = [str(self._python), "-I", "-S", "-c", _BOOTSTRAP, str(WORKER), str(os.getpid())]
            proc = subprocess.Popen(
                [*args, *accelerator()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
            )
        except OSError:
            log.close()
            raise
        return proc, log

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None:
            self.failed = True  # the tasks queued are not run
        self.close()

    def submit(self, task: str) -> None:
        """Queue one task (a JSON line) for the next free worker."""
        self._queue.put((self._submitted, task))
        self._submitted += 1

    def answers(self) -> list[dict[str, Any]]:
        """The answer to each task submitted, in order, once all are done (or skipped after
        an error: ``{"error": "skipped"}``); raises when a worker died and none answered
        an error."""
        self._stop()
        if self._died and not any("error" in a for a in self._answers.values()):
            raise self._died[0]
        skipped = {"error": "skipped"}
        return [self._answers.get(i, skipped) for i in range(self._submitted)]

    def _serve(self, proc: subprocess.Popen[str], log: IO[bytes]) -> None:
        stdin, stdout = cast("IO[str]", proc.stdin), cast("IO[str]", proc.stdout)
        while (item := self._queue.get()) is not None:
            if self.failed:
                continue  # drain: the rest are skipped
            index, task = item
            try:
                stdin.write(task + "\n")
                stdin.flush()
                line = stdout.readline()
            except OSError:
                line = ""
            if not line:
                self._died.append(self._gone(proc, log))
                self.failed = True
                continue
            answer = json.loads(line)
            self._answers[index] = answer
            if "error" in answer:
                self.failed = True

    def _gone(self, proc: subprocess.Popen[str], log: IO[bytes]) -> InstallError:
        code = proc.wait()
        log.seek(0)
        tail = log.read().decode("utf-8", "replace").strip().splitlines()[-10:]
        return InstallError(
            f"could not unpack the wheels: {self._python} exited with {code}"
            + (":\n" + "\n".join(tail) if tail else ""),
            hint="check that this interpreter runs, and that the disk is not full",
        )

    def _stop(self) -> None:
        """Let every thread take the tasks left, then end."""
        for _ in getattr(self, "_threads", ()):
            self._queue.put(None)
        for thread in getattr(self, "_threads", ()):
            thread.join()
        self._threads = []

    def close(self) -> None:
        """Let the workers finish (their input closed), then release them."""
        self._stop()
        for proc, log in self._procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):  # a worker that died
                    proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            log.close()
        self._procs = []
