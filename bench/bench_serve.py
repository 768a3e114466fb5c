"""Benchmark `wheelbarrow serve` under concurrent clients, beside `python -m http.server`.

Makes a wheelhouse of small wheels with `wheelbarrow build --no-index --find-links`
(no network), then serves it twice on 127.0.0.1: with `wheelbarrow serve` and, as the
peer, with `python -m http.server --directory WHEELHOUSE` (the same static `simple/`
pages and wheel files). Each server gets the same closed-loop load: CLIENTS clients at
once, each sending its next request as soon as the last one is answered, for a project
page (`/simple/NAME/`) and for a wheel file, with a new connection per request (as
curl or a script does) and with keep-alive (as pip and uv do). The load comes from
ApacheBench (`ab`, a C client) when it is on PATH, else from a thread pool of
http.client clients in this process (`--client python`; its own CPU use then inflates
both servers' figures). Prints a Markdown table of p50/p95/p99 latency and requests/s
per server, with the ratio wheelbarrow / http.server; progress goes to stderr.

    python bench/bench_serve.py [--clients 50] [--requests 4000] [--client auto|ab|python]
                                [--workdir DIR] [--json FILE]

Run it with the Python that has wheelbarrow installed (the project's virtual
environment); it needs no network.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness import CommandFailed, clean_environ, fresh, log, run

PROJECTS = 20
WHEEL_PAYLOAD = 64 * 1024  # bytes of incompressible data per wheel
SERVERS = ("wheelbarrow serve", "python -m http.server")
MODES = ("new connection", "keep-alive")


@dataclass(frozen=True, slots=True)
class Result:
    """One load run: latency percentiles in milliseconds, throughput, and failed requests."""

    p50: float
    p95: float
    p99: float
    rps: float
    failed: int


def make_wheel(directory: Path, name: str, version: str) -> Path:
    """A valid pure wheel (RECORD hashes and all) holding WHEEL_PAYLOAD random bytes."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{name}/payload.bin": os.urandom(WHEEL_PAYLOAD),
        f"{dist}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").encode(),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Return once ``url`` answers 200; fail if the server exits or takes over 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CommandFailed(f"the server for {url} exited with {proc.returncode}")
        parsed = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=2)
        try:
            connection.request("GET", parsed.path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    raise CommandFailed(f"{url} did not answer within 30 s")


@contextlib.contextmanager
def serving(args: Sequence[str | Path], url: str, env: Mapping[str, str]) -> Iterator[None]:
    """Run a server command for the duration of the block."""
    proc = subprocess.Popen(
        [str(a) for a in args],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(url, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_AB_PERCENT = re.compile(r"^\s*(50|95|99)%\s+(\d+)", re.MULTILINE)
_AB_RPS = re.compile(r"^Requests per second:\s+([\d.]+)", re.MULTILINE)
_AB_FAILED = re.compile(r"^(?:Failed requests|Non-2xx responses):\s+(\d+)", re.MULTILINE)


def load_ab(url: str, clients: int, requests: int, keep_alive: bool) -> Result:
    """ApacheBench's figures for ``requests`` requests, ``clients`` at a time."""
    args = ["ab", "-q", "-n", str(requests), "-c", str(clients), "-s", "30"]
    if keep_alive:
        args.append("-k")
    _, out, _ = run([*args, url], os.environ, expect="Requests per second")
    percent = {int(k): float(v) for k, v in _AB_PERCENT.findall(out)}
    rps = _AB_RPS.search(out)
    if set(percent) != {50, 95, 99} or rps is None:
        raise CommandFailed(f"cannot read ab's output:\n{out}")
    failed = sum(int(n) for n in _AB_FAILED.findall(out))
    return Result(percent[50], percent[95], percent[99], float(rps.group(1)), failed)


def load_python(url: str, clients: int, requests: int, keep_alive: bool) -> Result:
    """The same load from a pool of http.client clients in this process."""
    parsed = urllib.parse.urlsplit(url)
    host, port, path = parsed.hostname or "127.0.0.1", parsed.port or 80, parsed.path
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]
    latencies: list[float] = []
    failed = 0
    lock = threading.Lock()
    headers = {} if keep_alive else {"Connection": "close"}

    def client(count: int) -> None:
        nonlocal failed
        mine, bad = [], 0
        conn: http.client.HTTPConnection | None = None
        for _ in range(count):
            start = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request("GET", path, headers=headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    bad += 1
                if not keep_alive or answer.will_close:
                    conn.close()
                    conn = None
            except OSError:
                bad += 1
                if conn is not None:
                    conn.close()
                conn = None
            mine.append(time.perf_counter() - start)
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(mine)
            failed += bad

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, per_client))
    seconds = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(
        p50=cuts[49] * 1000,
        p95=cuts[94] * 1000,
        p99=cuts[98] * 1000,
        rps=len(latencies) / seconds,
        failed=failed,
    )


def make_wheelhouse(work: Path, env: Mapping[str, str]) -> Path:
    """An app of PROJECTS wheels built into a store; returns the app (its wheelhouse is built)."""
    wheels = fresh(work / "wheels")
    names = [f"benchpkg{i:02d}" for i in range(PROJECTS)]
    for name in names:
        make_wheel(wheels, name, "1.0")
    app = fresh(work / "app")
    (app / "requirements.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    log(f"building the wheelhouse of {PROJECTS} wheels")
    _, out, _ = run(
        [
            sys.executable,
            "-m",
            "wheelbarrow",
            "build",
            app,
            "--store",
            work / "store",
            "--no-index",
            "--find-links",
            wheels,
            "--json",
        ],
        env,
    )
    return Path(json.loads(out)["wheelhouse"])


def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, dict[str, Result]]]:
    """Figures by server, then request kind, then connection mode."""
    env = clean_environ(drop_prefixes=("PIP_", "UV_"))
    env["UV_CACHE_DIR"] = str(work / "uv-cache")
    wheelhouse = make_wheelhouse(work, env)
    wheel = sorted(wheelhouse.glob("*.whl"))[0].name
    paths = {"project page": "/simple/benchpkg00/", "wheel": f"/{wheel}"}
    load = load_ab if args.client == "ab" else load_python
    results: dict[str, dict[str, dict[str, Result]]] = {}
    for server in SERVERS:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if server == SERVERS[0]:
            command: list[str | Path] = [
                sys.executable,
                "-m",
                "wheelbarrow",
                "serve",
                work / "app",
                "--store",
                work / "store",
                "--port",
                str(port),
            ]
        else:
            command = [
                sys.executable,
                "-m",
                "http.server",
                str(port),
                "--bind",
                "127.0.0.1",
                "--directory",
                wheelhouse,
            ]
        with serving(command, base + paths["project page"], env):
            for kind, path in paths.items():
                for mode in MODES:
                    log(f"{server}: {kind}, {mode}, {args.clients} clients")
                    # A short warm-up, so thread start-up and first reads are not counted.
                    load(base + path, args.clients, args.clients * 2, mode == MODES[1])
                    result = load(base + path, args.clients, args.requests, mode == MODES[1])
                    results.setdefault(server, {}).setdefault(kind, {})[mode] = result
    return results


def table(results: Mapping[str, Mapping[str, Mapping[str, Result]]], clients: int) -> str:
    """The Markdown report: one row per server, request kind and connection mode."""
    lines = [
        f"{clients} concurrent clients; latency in ms; ratio = wheelbarrow serve / http.server",
        "",
        "| request | connection | server | p50 | p95 | p99 | requests/s | failed |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    ours, peer = SERVERS
    for kind in results[ours]:
        for mode in MODES:
            mine, theirs = results[ours][kind][mode], results[peer][kind][mode]
            for server, r in ((ours, mine), (peer, theirs)):
                lines.append(
                    f"| {kind} | {mode} | {server} | {r.p50:.0f} | {r.p95:.0f} | {r.p99:.0f} "
                    f"| {r.rps:.0f} | {r.failed} |"
                )
            lines.append(
                f"| {kind} | {mode} | ratio | {_ratio(mine.p50, theirs.p50)} "
                f"| {_ratio(mine.p95, theirs.p95)} | {_ratio(mine.p99, theirs.p99)} "
                f"| {_ratio(mine.rps, theirs.rps)} | |"
            )
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    # ab reports whole milliseconds, so a fast server can show 0.
    return f"{a / b:.2f}" if b else "-"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the loads and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=4000, help="per run (default 4000)")
    parser.add_argument("--client", choices=("auto", "ab", "python"), default="auto")
    parser.add_argument("--workdir", type=Path, help="keep the work files here")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.client == "auto":
        args.client = "ab" if shutil.which("ab") else "python"
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            results = measure(args, fresh(work))
        except CommandFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    out = io.StringIO()
    out.write(f"# wheelbarrow serve vs python -m http.server ({args.client} client)\n\n")
    out.write(table(results, args.clients) + "\n")
    print(out.getvalue(), end="")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "client": args.client,
                    "clients": args.clients,
                    "requests": args.requests,
                    "results": {
                        server: {
                            kind: {mode: _as_dict(r) for mode, r in m.items()}
                            for kind, m in kinds.items()
                        }
                        for server, kinds in results.items()
                    },
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


def _as_dict(result: Result) -> dict[str, float]:
    return {
        "p50_ms": result.p50,
        "p95_ms": result.p95,
        "p99_ms": result.p99,
        "requests_per_second": result.rps,
        "failed": result.failed,
    }


if __name__ == "__main__":
    sys.exit(main())
