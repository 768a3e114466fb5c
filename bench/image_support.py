"""What bench/bench_image.py runs with: timed commands with their peak memory, HTTP, layouts."""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness import CommandFailed

REF_NAME = "org.opencontainers.image.ref.name"


def run(args: Sequence[str | Path], env: Mapping[str, str], expect: str = "") -> tuple[float, str]:
    """:func:`harness.run`, keeping wall time and stdout + stderr (buildah logs to both)."""
    seconds, out, err = harness.run(args, env, expect)
    return seconds, out + err


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed command: wall time, peak RSS of its largest process, the load at its start."""

    seconds: float
    peak: int
    load: float
    stdout: str
    stderr: str


def measure(args: Sequence[str | Path], env: Mapping[str, str]) -> Sample:
    """Run a command with its output captured; its wall time and ``ru_maxrss`` from ``wait4``.

    ``wait4``'s usage covers the command and every process it waited for (uv, compile
    workers), and ``ru_maxrss`` is the largest of them: the peak of one process.
    """
    cmd = [str(a) for a in args]
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise CommandFailed(
            f"{shlex.join(cmd)} exited with {proc.returncode}\n--- stdout\n{stdout[-3000:]}"
            f"\n--- stderr\n{stderr[-6000:]}"
        )
    return Sample(seconds, usage.ru_maxrss * 1024, load, stdout, stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def layout_manifest(layout: Path, ref: str) -> dict[str, Any]:
    """The image manifest tagged ``ref`` in an OCI layout."""
    index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(REF_NAME) == ref:
            blob = layout / "blobs" / "sha256" / entry["digest"].split(":", 1)[1]
            manifest: dict[str, Any] = json.loads(blob.read_text(encoding="utf-8"))
            return manifest
    raise CommandFailed(f"{layout} has no image tagged {ref!r}")


def layer_sizes(layout: Path, ref: str) -> list[int]:
    return [int(layer["size"]) for layer in layout_manifest(layout, ref)["layers"]]


def request(port: int, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One HTTP request to 127.0.0.1; the status and the JSON answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()
