"""Benchmark ``wheelbarrow image`` against buildah building the generated Dockerfile (textsim).

Measures, in one run, for examples/textsim (numpy + scipy + scikit-learn + flask +
gunicorn) on a debootstrapped Debian bookworm base with Python 3.11:

- wheelbarrow: a cold build (``wheelbarrow build``: lock + fetch into an empty store),
  then a cold ``wheelbarrow image`` (the store's environment, both layers, the OCI
  layout); the image again with the environment layer cached, and with it rebuilt; and
  the image after an edit of ``app.py`` (environment layer reused).
- buildah: ``buildah build --layers`` of the Dockerfile from ``wheelbarrow dockerfile``,
  cold (on a copy of the base with a label of its own, so no cached layer matches, and
  with empty cache mounts), with nothing changed, and after the same
  edit of ``app.py`` (the builder and venv layers come from the cache).
- both images: layers, compressed and unpacked sizes, and one ``POST /similarity``
  answered by each image run with podman on 127.0.0.1.

Every wheel both tools fetch comes from one index served on 127.0.0.1 by
``wheelbarrow.share.serve`` (wheelbarrow's own wheel, its dependencies and the textsim
wheelhouse, fetched once from the real index during the set-up), so no container needs
the public index and both fetch over loopback. The builder stage still needs Debian's
archive for its toolchain (apt-get). Prints a Markdown table of medians on stdout;
progress goes to stderr.

    python bench/bench_image.py [--repeat N] [--cold N] [--workdir DIR] [--json FILE]
        [--podman-root DIR]

Needs podman, buildah, skopeo, runc and debootstrap (root). The first run with a new
podman storage debootstraps the base (about 75 s); the whole run takes 10+ minutes.
In a storage kept with ``--podman-root``, this run's images stay (the two tagged ones for
inspection); the next run removes them (they carry the label ``io.wheelbarrow.bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import REPO, CommandFailed, clean_environ, fresh, install_tools, log

from wheelbarrow.share.serve import make_server
from wheelbarrow.wheelhouse.index import index_files_in, write_index

# The Podman configuration and the debootstrapped base image of the test suite.
sys.path.insert(0, str(REPO / "tests"))
from support.containers import Podman, base_image

APP_SOURCE = REPO / "examples" / "textsim"
WB_TAG = "localhost/textsim:bench"
DF_TAG = "localhost/textsim-df:bench"
TEXTS = ["the cat sat on the mat", "the cat sat on the mat", "stock prices fell sharply today"]
EXPECTED = [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
REF_NAME = "org.opencontainers.image.ref.name"
# Carried by the isolated bases and so by every image buildah builds on them here: the
# leftovers of an earlier run are found by it and removed.
BENCH_LABEL = "io.wheelbarrow.bench"
ISOLATED_BASE = "localhost/textsim-bench-base"

WB, DF = "wheelbarrow", "buildah"
COLD_BUILD, COLD_IMAGE, COLD_TOTAL = "cold build", "cold image", "cold total"
NO_CHANGE, ENV_REBUILT, APP_ONLY = "no change", "env layer rebuilt", "app-only"
LAYERS, COMPRESSED, ADDED, UNPACKED = "layers", "compressed", "added", "unpacked"
Timings = dict[str, dict[str, list[float]]]
Cmd = list[str | Path]


def run(args: Sequence[str | Path], env: Mapping[str, str], expect: str = "") -> tuple[float, str]:
    """:func:`harness.run`, keeping wall time and stdout + stderr (buildah logs to both)."""
    seconds, out, err = harness.run(args, env, expect)
    return seconds, out + err


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


@dataclass
class Bench:
    """The work directory, the tools and apps set up in it, and what was measured."""

    work: Path
    podman: Podman
    timings: Timings = field(default_factory=dict)
    sizes: dict[str, dict[str, float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    downloads: dict[str, int] = field(default_factory=dict)
    index_log: list[str] = field(default_factory=list)
    index_url: str = ""
    base: str = ""
    bench_base: str = ""
    edits: int = 0
    run_id: str = field(default_factory=lambda: f"{int(time.time())}-{os.getpid()}")

    def __post_init__(self) -> None:
        work = self.work
        self.store = work / "wb-store"
        self.setup_store = work / "setup-store"
        self.app_wb, self.app_df = work / "app-wb", work / "app-df"
        self.served = work / "served"
        self.base_oci = work / "base-oci"
        self.out = work / "wb-oci"
        self.df_oci = work / "df-oci"
        self.wb: Path = work / "tools" / "bin" / "wheelbarrow"
        base = clean_environ()
        self.wb_env = base | {
            "WHEELBARROW_STORE": str(self.store),
            "UV_CACHE_DIR": str(work / "wb-uv-cache"),
        }
        self.setup_env = base | {
            "WHEELBARROW_STORE": str(self.setup_store),
            "UV_CACHE_DIR": str(work / "setup-uv-cache"),
        }
        self.pod_env = base | {
            "CONTAINERS_CONF": str(self.podman.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.podman.root / "storage.conf"),
        }
        self.pylock = (APP_SOURCE / "pylock.toml").read_bytes()

    def record(self, row: str, tool: str, seconds: float) -> None:
        self.timings.setdefault(row, {}).setdefault(tool, []).append(seconds)
        log(f"{row}: {tool} {seconds:.2f} s")

    # --- set-up, untimed -------------------------------------------------------------

    def setup(self) -> None:
        """Tools, the base (podman storage and an OCI layout of it), the apps, the index."""
        log(f"podman storage in {self.podman.root}")
        self.base = base_image(self.podman, self.work)
        install_tools(self.work, self.wb_env)
        tools: list[tuple[str, Cmd]] = [
            ("wheelbarrow", [self.wb, "--version"]),
            ("buildah", ["buildah", "--version"]),
            ("podman", ["podman", "--version"]),
            ("skopeo", ["skopeo", "--version"]),
        ]
        for name, cmd in tools:
            self.versions[name] = run(cmd, self.pod_env)[1].splitlines()[0]
        probe = ["podman", "run", "--rm", "--network=none", self.base, "python3", "--version"]
        self.versions["base"] = f"{self.base} ({run(probe, self.pod_env)[1].strip()})"
        self.remove_leftovers()
        # Both tools build on this copy of the base (see isolated_base).
        self.bench_base = self.isolated_base(f"{self.run_id}-0")
        shutil.rmtree(self.base_oci, ignore_errors=True)
        copy = ["skopeo", "copy", f"containers-storage:{self.bench_base}"]
        copy += [f"oci:{self.base_oci}:base"]
        run(copy, self.pod_env)
        for app in (self.app_wb, self.app_df):
            shutil.rmtree(app, ignore_errors=True)
            shutil.copytree(APP_SOURCE, app, ignore=shutil.ignore_patterns("__pycache__"))
        self.fill_index()

    def fill_index(self) -> None:
        """wheelbarrow as a wheel, its dependencies' wheels and the textsim wheelhouse."""
        fresh(self.served)
        uv = shutil.which("uv")
        if uv is None:
            raise CommandFailed("uv is needed on PATH to build wheelbarrow's wheel")
        log("building wheelbarrow's wheel and fetching the wheels the index serves")
        run([uv, "build", "--wheel", "--out-dir", self.served, REPO], self.setup_env)
        project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
        tool = fresh(self.work / "tool-app")
        (tool / "requirements.txt").write_text("\n".join(project["project"]["dependencies"]))
        (tool / ".python-version").write_text(f"{sys.version_info[0]}.{sys.version_info[1]}\n")
        textsim = self.work / "app-setup"
        shutil.rmtree(textsim, ignore_errors=True)
        shutil.copytree(APP_SOURCE, textsim, ignore=shutil.ignore_patterns("__pycache__"))
        for app, wheels in ((tool, "tool-wheels"), (textsim, "textsim-wheels")):
            out = self.work / wheels
            shutil.rmtree(out, ignore_errors=True)
            run([self.wb, "build", app, "--output", out], self.setup_env)
            for wheel in out.glob("*.whl"):
                shutil.copyfile(wheel, self.served / wheel.name)
        app_wheels = sorted((self.work / "textsim-wheels").glob("*.whl"))
        size = sum(w.stat().st_size for w in app_wheels) / 1e6
        self.versions["wheelhouse"] = f"{len(app_wheels)} wheels, {size:.0f} MB"
        write_index(index_files_in(self.served), self.served / "simple")

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """The index on 127.0.0.1 (a thread of this process) while the benchmark runs."""

        def record(method: str, path: str) -> None:
            if method == "GET" and path.endswith(".whl"):
                self.index_log.append(path.rsplit("/", 1)[-1])

        with make_server(self.served, "127.0.0.1", 0, request_log=record) as handle:
            self.index_url = handle.simple_url
            log(f"index on {self.index_url}")
            yield

    def downloads_of(self, phase: str, before: int) -> None:
        self.downloads[phase] = len(self.index_log) - before
        if self.downloads[phase] == 0:
            raise CommandFailed(f"{phase}: nothing was fetched from the local index")

    def edit_app(self, app: Path) -> None:
        """A code-only change: one more comment line at the end of app.py."""
        self.edits += 1
        with (app / "app.py").open("a", encoding="utf-8") as f:
            f.write(f"# bench edit {self.edits}\n")

    # --- wheelbarrow -----------------------------------------------------------------

    def wheelbarrow(self, repeat: int, cold: int) -> None:
        image_base: Cmd = [self.wb, "image", self.app_wb, "--base", f"oci:{self.base_oci}:base"]
        image_base += ["--tag", WB_TAG, "--oci", self.out, "--json"]

        def image(reused: bool) -> tuple[float, dict[str, Any]]:
            shutil.rmtree(self.out, ignore_errors=True)
            seconds, out, _ = harness.run(image_base, self.wb_env)
            report: dict[str, Any] = json.loads(out)
            if report["env_layer"]["reused"] is not reused:
                raise CommandFailed(
                    f"wheelbarrow image: env_layer.reused is {report['env_layer']['reused']}, "
                    f"expected {reused}"
                )
            return seconds, report

        for _ in range(cold):
            for path in (self.store, self.work / "wb-uv-cache"):
                shutil.rmtree(path, ignore_errors=True)
            (self.app_wb / "pylock.toml").write_bytes(self.pylock)
            before = len(self.index_log)
            build: Cmd = [self.wb, "build", self.app_wb, "--index-url", self.index_url]
            build_s, out = run(build, self.wb_env)
            if "Locking" not in out:
                raise CommandFailed(f"cold wheelbarrow build did not lock:\n{out[-4000:]}")
            self.downloads_of("wheelbarrow build", before)
            image_s = image(reused=False)[0]
            self.record(COLD_BUILD, WB, build_s)
            self.record(COLD_IMAGE, WB, image_s)
            self.record(COLD_TOTAL, WB, build_s + image_s)
        for _ in range(repeat):
            self.record(NO_CHANGE, WB, image(reused=True)[0])
        for _ in range(repeat):
            shutil.rmtree(self.store / "oci" / "env-layers")
            self.record(ENV_REBUILT, WB, image(reused=False)[0])
        env_digest = ""
        app_digests = set()
        for _ in range(repeat):
            self.edit_app(self.app_wb)
            seconds, report = image(reused=True)
            env_digest = env_digest or report["env_layer"]["digest"]
            if report["env_layer"]["digest"] != env_digest:
                raise CommandFailed("wheelbarrow image: an app edit changed the env layer")
            app_digests.add(report["app_layer"]["digest"])
            self.record(APP_ONLY, WB, seconds)
        if len(app_digests) != repeat:
            raise CommandFailed("wheelbarrow image: an app edit left the app layer as it was")

    # --- buildah ---------------------------------------------------------------------

    def remove_leftovers(self) -> None:
        """This benchmark's images from earlier runs in the podman storage (by label and tag)."""
        images = ["podman", "images", "-a", "-q", "--filter", f"label={BENCH_LABEL}"]
        old = set(harness.run(images, self.pod_env)[1].split())
        exists = ["podman", "image", "exists", WB_TAG]
        if subprocess.run(exists, env=self.pod_env, check=False).returncode == 0:
            old.add(WB_TAG)
        if old:
            log(f"removing {len(old)} image(s) left by earlier runs")
            run(["podman", "rmi", "-f", *sorted(old)], self.pod_env)

    def isolated_base(self, name: str) -> str:
        """The base plus one tiny layer of its own (a file naming the run), and a label.

        buildah's ``--layers`` cache matches a step by its parent's layers and the step's
        text, so on the plain base a build finds the layers of the tests and of earlier
        runs that share the podman storage (a label alone, with the same layer, is not
        enough). On a base of its own it is cold, and then finds only this run's layers.
        """
        context = fresh(self.work / "isolated-base")
        (context / "bench-run").write_text(f"{name}\n", encoding="utf-8")
        containerfile = context / "Containerfile"
        containerfile.write_text(
            f"FROM {self.base}\nCOPY bench-run /etc/textsim-bench-run\n", encoding="utf-8"
        )
        tag = f"{ISOLATED_BASE}:{name}"
        build: Cmd = ["buildah", "build", "--isolation=oci", "--network=none"]
        build += ["--label", f"{BENCH_LABEL}={name}", "-f", containerfile, "-t", tag, context]
        run(build, self.pod_env)
        return tag

    def dockerfile(self, base: str) -> None:
        cmd: Cmd = [self.wb, "dockerfile", self.app_df, "--base", base]
        cmd += ["--builder-base", base, "--wheelbarrow", "wheelbarrow"]
        cmd += ["--index-url", self.index_url, "--output", self.app_df / "Dockerfile"]
        run(cmd, self.wb_env, "Wrote")

    def buildah(self, repeat: int, cold: int) -> None:
        build: Cmd = ["buildah", "build", "--isolation=oci", "--network=host", "--layers"]
        build += ["-f", self.app_df / "Dockerfile", "-t", DF_TAG, self.app_df]
        env: dict[str, str] = {}
        for i in range(cold):
            # A base of its own: no cached layer to reuse; a new TMPDIR gives empty
            # cache mounts (the builder's wheelbarrow store and uv cache).
            base = self.isolated_base(f"{self.run_id}-{i}") if i else self.bench_base
            self.dockerfile(base)
            tmp = fresh(self.work / f"buildah-tmp-{i}")
            env = self.pod_env | {"TMPDIR": str(tmp)}
            (self.app_df / "pylock.toml").write_bytes(self.pylock)
            before = len(self.index_log)
            seconds, out = run(build, env)
            self.downloads_of("buildah builder stage", before)
            for word in ("Locking", "Successfully installed"):
                if word not in out:
                    raise CommandFailed(f"cold buildah build: no {word!r} in its log")
            self.record(COLD_TOTAL, DF, seconds)
        for _ in range(repeat):
            self.record(NO_CHANGE, DF, self.cached_build(build, env))
        for _ in range(repeat):
            self.edit_app(self.app_df)
            self.record(APP_ONLY, DF, self.cached_build(build, env))

    def cached_build(self, build: Cmd, env: Mapping[str, str]) -> float:
        """A build that must take the builder and venv layers from buildah's cache."""
        before = len(self.index_log)
        seconds, out = run(build, env)
        for word in ("Locking", "Successfully installed"):
            if word in out:
                raise CommandFailed(f"cached buildah build ran {word!r}:\n{out[-4000:]}")
        if len(self.index_log) != before:
            raise CommandFailed("cached buildah build fetched from the index")
        return seconds

    # --- the images ------------------------------------------------------------------

    def measure_images(self) -> None:
        """Layers and sizes of both images, both loaded into the podman storage."""
        shutil.rmtree(self.df_oci, ignore_errors=True)
        run(
            ["skopeo", "copy", f"oci:{self.out}:latest", f"containers-storage:{WB_TAG}"],
            self.pod_env,
        )
        run(
            ["skopeo", "copy", f"containers-storage:{DF_TAG}", f"oci:{self.df_oci}:df"],
            self.pod_env,
        )
        base = sum(layer_sizes(self.base_oci, "base"))
        for tool, tag, layout, ref in (
            (WB, WB_TAG, self.out, "latest"),
            (DF, DF_TAG, self.df_oci, "df"),
        ):
            sizes = layer_sizes(layout, ref)
            fmt = ["podman", "image", "inspect", "--format", "{{.Size}}", tag]
            unpacked = int(run(fmt, self.pod_env)[1].split()[0])
            self.sizes[tool] = {
                LAYERS: len(sizes),
                COMPRESSED: sum(sizes),
                ADDED: sum(sizes) - base,
                UNPACKED: unpacked,
            }
            log(f"{tool}: {len(sizes)} layers, {sum(sizes) / 1e6:.0f} MB compressed")

    def answers(self, tag: str) -> None:
        """Run ``tag`` on 127.0.0.1 and POST /similarity once; fail loudly if it is wrong."""
        port = free_port()
        name = f"textsim-bench-{port}"
        start = ["podman", "run", "-d", "--name", name, "--network=host"]
        start += ["-e", f"PORT={port}", "-e", "BIND_ADDRESS=127.0.0.1", tag]
        run(start, self.pod_env)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    request(port, "GET", "/")
                    break
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    state = run(
                        ["podman", "inspect", "--format", "{{.State.Status}}", name], self.pod_env
                    )[1].strip()
                    if state != "running" or time.monotonic() > deadline:
                        logs = run(["podman", "logs", name], self.pod_env)[1]
                        raise CommandFailed(
                            f"{tag} never answered ({state}, {exc}):\n{logs}"
                        ) from exc
                    time.sleep(0.5)
            status, answer = request(port, "POST", "/similarity", {"texts": TEXTS})
            if status != 200 or answer != {"similarity": EXPECTED}:
                raise CommandFailed(f"{tag}: POST /similarity -> {status} {answer}")
            log(f"{tag}: POST /similarity -> {status} {answer}")
        finally:
            harness.run(["podman", "rm", "-f", "-t", "2", name], self.pod_env)


# --- the report ------------------------------------------------------------------------


def secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g} s"


def megabytes(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e6:.0f} MB"


def ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den == 0:
        return "—"
    r = num / den
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def report(bench: Bench, medians: dict[str, dict[str, float]], repeat: int, cold: int) -> str:
    rows = {
        COLD_BUILD: f"cold: `wheelbarrow build` (lock + fetch, empty store) (n={cold})",
        COLD_IMAGE: f"cold: `wheelbarrow image` (environment + layers) (n={cold})",
        COLD_TOTAL: f"**cold total** (wb: build + image) (n={cold})",
        NO_CHANGE: f"nothing changed (wb: env layer cached) (n={repeat})",
        ENV_REBUILT: f"wb: env layer rebuilt (store's environment kept) (n={repeat})",
        APP_ONLY: f"**app-only rebuild** (app.py edited) (n={repeat})",
    }
    nproc = len(os.sched_getaffinity(0))
    v = bench.versions
    lines = [
        f"## textsim image benchmark, {datetime.date.today().isoformat()}, Python "
        f"{sys.version.split()[0]}, nproc {nproc}: `{shlex.join(sys.orig_argv)}`",
        "",
        f"{v['wheelbarrow']}, {v['buildah']}, {v['podman']}, {v['skopeo']}; base "
        f"{v['base']}; {v['wheelhouse']}; medians of wall time.",
        "",
        "| step | wheelbarrow image | buildah (generated Dockerfile) | buildah ÷ wb |",
        "|---|---:|---:|---:|",
    ]
    for row, label in rows.items():
        wb, df = medians.get(row, {}).get(WB), medians.get(row, {}).get(DF)
        lines.append(f"| {label} | {secs(wb)} | {secs(df)} | {ratio(df, wb)} |")
    wbs, dfs = bench.sizes[WB], bench.sizes[DF]
    lines.append(
        f"| layers | {wbs[LAYERS]:.0f} | {dfs[LAYERS]:.0f} | {ratio(dfs[LAYERS], wbs[LAYERS])} |"
    )
    for key, label in (
        (COMPRESSED, "size, compressed (sum of layers)"),
        (ADDED, "size, compressed, on top of the base"),
        (UNPACKED, "size, unpacked (`podman image inspect`)"),
    ):
        lines.append(
            f"| {label} | {megabytes(wbs[key])} | {megabytes(dfs[key])} "
            f"| {ratio(dfs[key], wbs[key])} |"
        )
    dl = bench.downloads
    lines += [
        "",
        "- Both tools fetch from the same index on 127.0.0.1 (wheelbarrow.share.serve: this repo's "
        "wheel, its dependencies, the textsim wheels), passed as `--index-url`, so both lock "
        "again (the committed pylock.toml is restored before each cold run) and fetch over "
        f"loopback: {dl.get('wheelbarrow build', 0)} wheels for `wheelbarrow build`, "
        f"{dl.get('buildah builder stage', 0)} for the buildah builder stage (wheelbarrow, its "
        "dependencies, then the app's wheels); uv's lock downloads each app wheel whole to "
        "read its metadata (the index has no PEP 658 metadata files and answers no Range "
        "requests), then the build fetches it again. The cold buildah build also runs apt-get for "
        "the builder's toolchain (build-essential, gfortran, pkg-config) from Debian's "
        "archive; wheelbarrow needs no compiler and no container.",
        "- wheelbarrow: `wheelbarrow image APP --base oci:BASE:base --tag "
        f"{WB_TAG} --oci OUT --json`, OUT deleted before each run. Cold: empty store and uv "
        "cache; `build` and `image` are timed apart and summed. *Nothing changed* deletes "
        "only OUT (the environment layer comes from `STORE/oci/env-layers`); *env layer "
        "rebuilt* also deletes `STORE/oci/env-layers`, so the layer is tarred and gzipped "
        "again from the store's environment (which stays: the environment is made once per "
        "wheelhouse and interpreter, so only a new lock would make it again). Both are "
        "reported, since which one a user sees depends on whether the store survives between "
        "builds. The JSON report is checked: `env_layer.reused` as expected, same env layer "
        "digest and a new app layer digest after each app edit.",
        "- buildah: `buildah build --isolation=oci --network=host --layers -f Dockerfile -t "
        f"{DF_TAG} APP` of `wheelbarrow dockerfile APP --base BASE --builder-base BASE "
        "--wheelbarrow wheelbarrow --index-url LOCAL_INDEX`. A new TMPDIR per cold run "
        "empties the `RUN --mount=type=cache` (the builder's wheelbarrow store and uv cache). "
        "The cached builds are checked to lock, install and fetch nothing.",
        "- The base of both images is the debootstrapped base plus a tiny layer of this run "
        "(one file) and a label; each further cold buildah run gets another. buildah's "
        "`--layers` cache matches a step by its parent's layers and its text, so on the plain "
        "base it reuses layers that the tests or earlier runs left in the shared podman "
        "storage: the cold build is not cold (`--no-cache` does not help, as the later builds "
        "can pick those layers again), and the venv step can even come from another app's "
        "build, since buildah keys `RUN --mount=type=bind,from=builder` by its text only.",
        "- app-only: one comment line appended to app.py (a copy of the app for each tool) "
        "before each run.",
        "- Sizes: compressed = the layers' sizes in the manifest: wheelbarrow's OCI layout as "
        "written, buildah's image after `skopeo copy containers-storage:… oci:…` (gzip, "
        "what a push sends). *On top of the base* subtracts the base's layer(s). Unpacked = "
        "`podman image inspect --format '{{.Size}}'`, wheelbarrow's image after `skopeo "
        f"copy oci:OUT:latest containers-storage:{WB_TAG}`.",
        f"- Both images answered `POST /similarity` {json.dumps({'texts': TEXTS})} with "
        f"{json.dumps({'similarity': EXPECTED})}, run by podman on 127.0.0.1 "
        "(`--network=host -e PORT=… -e BIND_ADDRESS=127.0.0.1`).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark `wheelbarrow image` vs buildah and the generated Dockerfile."
    )
    parser.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="runs per warm/app-only row (3)"
    )
    parser.add_argument("--cold", type=int, default=1, metavar="N", help="cold runs (1)")
    parser.add_argument("--workdir", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write all raw timings")
    parser.add_argument(
        "--podman-root",
        type=Path,
        metavar="DIR",
        help="podman storage and configuration to reuse between runs, with its base image "
        "(default: in the work directory)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.cold < 1:
        parser.error("--repeat and --cold must be at least 1")
    wanted = (APP_SOURCE / ".python-version").read_text(encoding="utf-8").strip()
    if ".".join(map(str, sys.version_info[:2])) != wanted:
        parser.error(f"run this with Python {wanted}, the version the app targets (and the base's)")
    missing = [
        t for t in ("podman", "buildah", "skopeo", "runc", "debootstrap") if not shutil.which(t)
    ]
    if missing:
        parser.error(
            f"needs {', '.join(missing)} (apt-get install podman buildah skopeo runc debootstrap)"
        )
    work = (
        args.workdir.absolute() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-image-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    podman_root = (args.podman_root or work / "podman").absolute()
    bench = Bench(work, Podman(podman_root).setup())
    try:
        bench.setup()
        with bench.serving():
            bench.wheelbarrow(args.repeat, args.cold)
            bench.buildah(args.repeat, args.cold)
        bench.measure_images()
        for tag in (WB_TAG, DF_TAG):
            bench.answers(tag)
    except CommandFailed as exc:
        print(f"bench: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    medians = {
        row: {tool: statistics.median(ts) for tool, ts in by_tool.items()}
        for row, by_tool in bench.timings.items()
    }
    print(report(bench, medians, args.repeat, args.cold))
    if args.json:
        raw: dict[str, object] = {
            "command": sys.orig_argv,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "nproc": len(os.sched_getaffinity(0)),
            "versions": bench.versions,
            "runs": bench.timings,
            "medians": medians,
            "sizes": bench.sizes,
            "index_downloads": bench.downloads,
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
