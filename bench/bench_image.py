"""Benchmark ``wheelbarrow image`` against buildah building the generated Dockerfile (textsim).

Measures, in one run, for examples/textsim (numpy + scipy + scikit-learn + flask +
gunicorn) on a debootstrapped Debian bookworm base with Python 3.11:

- wheelbarrow, with gzip layers (the default) and with zstd layers (``--compression
  zstd``): a cold build (``wheelbarrow build``: lock + fetch into an empty store and uv
  cache), then a cold ``wheelbarrow image`` (the store's environment, both layers, the
  OCI layout); the image again with the environment layer cached, and with it rebuilt;
  and the image after an edit of ``app.py`` (environment layer reused).
- buildah: ``buildah build --layers`` of the Dockerfile from ``wheelbarrow dockerfile``,
  cold (on a copy of the base with a label of its own, so no cached layer matches, and
  with empty cache mounts), with nothing changed, and after the same
  edit of ``app.py`` (the builder and venv layers come from the cache).
- the two compressions take turns in every row (gzip, zstd, gzip, ...), so both see the
  same machine;
- both images: layers, compressed and unpacked sizes, and one ``POST /similarity``
  answered by each image run with podman on 127.0.0.1.

Each command's peak memory is the ``ru_maxrss`` of ``os.wait4``: its largest single
process. The 1-minute load average is read at the start of every timed command.

Every wheel both tools fetch comes from one index served on 127.0.0.1 by
``wheelbarrow.share.serve`` (wheelbarrow's own wheel, its dependencies and the textsim
wheelhouse, fetched once from the real index during the set-up), so no container needs
the public index and both fetch over loopback. The builder stage still needs Debian's
archive for its toolchain (apt-get). Prints a Markdown table of medians (bench/image_report.py)
on stdout; progress goes to stderr.

    python bench/bench_image.py [--repeat N] [--cold N] [--workdir DIR] [--json FILE]
        [--podman-root DIR]

(defaults: 3 cold runs of each tool and compression, 3 of each warm row).

Needs podman, buildah, skopeo, runc and debootstrap (root). The first run with a new
podman storage debootstraps the base (about 75 s); the whole run takes 15+ minutes.
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
import shutil
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
from image_report import (
    ADDED,
    APP_ONLY,
    COLD_BUILD,
    COLD_IMAGE,
    COLD_TOTAL,
    COMPRESSED,
    COMPRESSIONS,
    DF,
    ENV_REBUILT,
    EXPECTED,
    LAYERS,
    NO_CHANGE,
    TEXTS,
    UNPACKED,
    WB,
    Measured,
    column,
    report,
)
from image_support import Sample, free_port, layer_sizes, measure, request, run

from wheelbarrow.share.serve import make_server
from wheelbarrow.wheelhouse.index import index_files_in, write_index

# The Podman configuration and the debootstrapped base image of the test suite.
sys.path.insert(0, str(REPO / "tests"))
from support.containers import Podman, base_image

APP_SOURCE = REPO / "examples" / "textsim"
WB_TAG = "localhost/textsim:bench"
DF_TAG = "localhost/textsim-df:bench"
# Carried by the isolated bases and so by every image buildah builds on them here: the
# leftovers of an earlier run are found by it and removed.
BENCH_LABEL = "io.wheelbarrow.bench"
ISOLATED_BASE = "localhost/textsim-bench-base"

Cmd = list[str | Path]


@dataclass
class Bench:
    """The work directory, the tools and apps set up in it, and what was measured."""

    work: Path
    podman: Podman
    measured: Measured = field(default_factory=Measured)
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
        self.outs = {c: work / f"wb-oci-{c}" for c in COMPRESSIONS}
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
        # The app's lock from the real index, made in the set-up (examples/*/pylock.toml is
        # not committed): restored before every cold run, so each starts from the same lock.
        self.pylock = b""

    @property
    def versions(self) -> dict[str, str]:
        return self.measured.versions

    def record(self, row: str, series: str, sample: Sample) -> None:
        self.measured.add(row, series, sample.seconds, sample.peak, sample.load)
        log(
            f"{row}: {series} {sample.seconds:.2f} s, peak {sample.peak / 1e6:.0f} MB, "
            f"load {sample.load:.1f}"
        )

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
        libraries = "from wheelbarrow.ship.oci.compression import layer_compression as c; "
        libraries += "print(c('gzip').describe()); print(c('zstd').describe())"
        python = self.wb.parent / "python"
        gzip, zstd = run([python, "-c", libraries], self.wb_env)[1].splitlines()[:2]
        self.versions["gzip"], self.versions["zstd"] = gzip, zstd
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
        self.pylock = (textsim / "pylock.toml").read_bytes()
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
        self.measured.downloads[phase] = len(self.index_log) - before
        if self.measured.downloads[phase] == 0:
            raise CommandFailed(f"{phase}: nothing was fetched from the local index")

    def edit_app(self, app: Path) -> None:
        """A code-only change: one more comment line at the end of app.py."""
        self.edits += 1
        with (app / "app.py").open("a", encoding="utf-8") as f:
            f.write(f"# bench edit {self.edits}\n")

    # --- wheelbarrow -----------------------------------------------------------------

    def wheelbarrow(self, repeat: int, cold: int) -> None:
        """Every row, the two compressions taking turns in each (gzip, zstd, gzip, ...): cold
        runs from an empty store, then the warm rows.

        Taking turns, rather than all of one compression's rows and then the other's, gives
        both the same machine: deleting the store or the layer cache makes ext4 slower at
        creating files for a while (it steps over recently freed inodes), and zstd, whose
        rows all came after gzip's cold runs and rebuilt layers, looked 80 ms slower at an
        unchanged image than gzip, against none in paired runs.
        """
        digests: dict[str, set[str]] = {c: set() for c in COMPRESSIONS}
        for _ in range(cold):
            for compression in COMPRESSIONS:
                digests[compression].add(self.cold_image(compression))
        for compression, seen in digests.items():
            if len(seen) != 1:
                raise CommandFailed(f"wheelbarrow image: cold {compression} runs gave {seen}")
        self.prime()
        for _ in range(repeat):
            for compression in COMPRESSIONS:
                self.record(NO_CHANGE, column(WB, compression), self.image(compression, True)[0])
        for _ in range(repeat):
            for compression in COMPRESSIONS:
                shutil.rmtree(self.store / "oci" / "env-layers")
                sample = self.image(compression, reused=False)[0]
                self.record(ENV_REBUILT, column(WB, compression), sample)
        self.prime()
        env_digests: dict[str, str] = {}
        app_digests: dict[str, set[str]] = {c: set() for c in COMPRESSIONS}
        for _ in range(repeat):
            for compression in COMPRESSIONS:
                self.edit_app(self.app_wb)
                sample, result = self.image(compression, reused=True)
                env = env_digests.setdefault(compression, result["env_layer"]["digest"])
                if result["env_layer"]["digest"] != env:
                    raise CommandFailed("wheelbarrow image: an app edit changed the env layer")
                app_digests[compression].add(result["app_layer"]["digest"])
                self.record(APP_ONLY, column(WB, compression), sample)
        if any(len(seen) != repeat for seen in app_digests.values()):
            raise CommandFailed("wheelbarrow image: an app edit left the app layer as it was")

    def image(self, compression: str, reused: bool) -> tuple[Sample, dict[str, Any]]:
        """``wheelbarrow image`` into a new layout; checks the report says what is expected."""
        out = self.outs[compression]
        shutil.rmtree(out, ignore_errors=True)
        cmd: Cmd = [self.wb, "image", self.app_wb, "--base", f"oci:{self.base_oci}:base"]
        cmd += ["--tag", WB_TAG, "--oci", out, "--json", "--compression", compression]
        sample = measure(cmd, self.wb_env)
        result: dict[str, Any] = json.loads(sample.stdout)
        if result["env_layer"]["reused"] is not reused:
            raise CommandFailed(
                f"wheelbarrow image: env_layer.reused is {result['env_layer']['reused']}, "
                f"expected {reused}"
            )
        if not result["compression"]["media_type"].endswith(f"+{compression}"):
            raise CommandFailed(f"wheelbarrow image: {result['compression']} is not {compression}")
        return sample, result

    def cold_image(self, compression: str) -> str:
        """One cold run (empty store and uv cache): build, then image; the image's digest."""
        series = column(WB, compression)
        for path in (self.store, self.work / "wb-uv-cache"):
            shutil.rmtree(path, ignore_errors=True)
        (self.app_wb / "pylock.toml").write_bytes(self.pylock)
        before = len(self.index_log)
        build = measure([self.wb, "build", self.app_wb, "--index-url", self.index_url], self.wb_env)
        if "Locking" not in build.stdout + build.stderr:
            raise CommandFailed(f"cold wheelbarrow build did not lock:\n{build.stderr[-4000:]}")
        self.downloads_of("wheelbarrow build", before)
        image, result = self.image(compression, reused=False)
        self.record(COLD_BUILD, series, build)
        self.record(COLD_IMAGE, series, image)
        seconds, peak = build.seconds + image.seconds, max(build.peak, image.peak)
        self.record(COLD_TOTAL, series, Sample(seconds, peak, build.load, "", ""))
        return str(result["digest"])

    def prime(self) -> None:
        """Make each compression's environment layer where it is missing (not timed): the
        rows after it reuse them."""
        for compression in COMPRESSIONS:
            out = self.outs[compression]
            shutil.rmtree(out, ignore_errors=True)
            cmd: Cmd = [self.wb, "image", self.app_wb, "--base", f"oci:{self.base_oci}:base"]
            cmd += ["--tag", WB_TAG, "--oci", out, "--json", "--compression", compression]
            measure(cmd, self.wb_env)

    # --- buildah ---------------------------------------------------------------------

    def remove_leftovers(self) -> None:
        """This benchmark's images from earlier runs in the podman storage (by label and tag)."""
        images = ["podman", "images", "-a", "-q", "--filter", f"label={BENCH_LABEL}"]
        old = set(harness.run(images, self.pod_env)[1].split())
        for tag in (WB_TAG, *(f"{WB_TAG}-{c}" for c in COMPRESSIONS)):
            exists = ["podman", "image", "exists", tag]
            if subprocess.run(exists, env=self.pod_env, check=False).returncode == 0:
                old.add(tag)
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
            sample = measure(build, env)
            self.downloads_of("buildah builder stage", before)
            for word in ("Locking", "Successfully installed"):
                if word not in sample.stdout + sample.stderr:
                    raise CommandFailed(f"cold buildah build: no {word!r} in its log")
            self.record(COLD_TOTAL, DF, sample)
        for _ in range(repeat):
            self.record(NO_CHANGE, DF, self.cached_build(build, env))
        for _ in range(repeat):
            self.edit_app(self.app_df)
            self.record(APP_ONLY, DF, self.cached_build(build, env))

    def cached_build(self, build: Cmd, env: Mapping[str, str]) -> Sample:
        """A build that must take the builder and venv layers from buildah's cache."""
        before = len(self.index_log)
        sample = measure(build, env)
        for word in ("Locking", "Successfully installed"):
            if word in sample.stdout + sample.stderr:
                raise CommandFailed(f"cached buildah build ran {word!r}:\n{sample.stderr[-4000:]}")
        if len(self.index_log) != before:
            raise CommandFailed("cached buildah build fetched from the index")
        return sample

    # --- the images ------------------------------------------------------------------

    def measure_images(self) -> list[str]:
        """Layers and sizes of the three images, each loaded into the podman storage; the tags."""
        shutil.rmtree(self.df_oci, ignore_errors=True)
        tags = {column(WB, c): f"{WB_TAG}-{c}" for c in COMPRESSIONS} | {DF: DF_TAG}
        for compression in COMPRESSIONS:
            source = f"oci:{self.outs[compression]}:latest"
            run(
                ["skopeo", "copy", source, f"containers-storage:{WB_TAG}-{compression}"],
                self.pod_env,
            )
        run(
            ["skopeo", "copy", f"containers-storage:{DF_TAG}", f"oci:{self.df_oci}:df"],
            self.pod_env,
        )
        base = sum(layer_sizes(self.base_oci, "base"))
        layouts = {column(WB, c): (self.outs[c], "latest") for c in COMPRESSIONS}
        layouts[DF] = (self.df_oci, "df")
        for series, (layout, ref) in layouts.items():
            sizes = layer_sizes(layout, ref)
            fmt = ["podman", "image", "inspect", "--format", "{{.Size}}", tags[series]]
            unpacked = int(run(fmt, self.pod_env)[1].split()[0])
            self.measured.sizes[series] = {
                LAYERS: len(sizes),
                COMPRESSED: sum(sizes),
                ADDED: sum(sizes) - base,
                UNPACKED: unpacked,
            }
            log(f"{series}: {len(sizes)} layers, {sum(sizes) / 1e6:.0f} MB compressed")
        return list(tags.values())

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
            # Cleaning up is not a measurement: a failed removal is said, and the run goes on.
            rm = ["podman", "rm", "-f", "-t", "2", name]
            done = subprocess.run(rm, env=self.pod_env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                log(f"podman rm {name} exited with {done.returncode}: {done.stderr.strip()[-500:]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark `wheelbarrow image` vs buildah and the generated Dockerfile."
    )
    parser.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="runs per warm/app-only row (3)"
    )
    parser.add_argument(
        "--cold",
        type=int,
        default=3,
        metavar="N",
        help="cold runs of each tool and compression (3)",
    )
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
    unchecked = ""  # why the images could not be checked, once every timing is in
    try:
        bench.setup()
        with bench.serving():
            bench.wheelbarrow(args.repeat, args.cold)
            bench.buildah(args.repeat, args.cold)
        try:
            for tag in bench.measure_images():
                bench.answers(tag)
        except CommandFailed as exc:  # the timings stand: the table and --json are written
            unchecked = str(exc)
    except CommandFailed as exc:
        print(f"bench: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(report(bench.measured, cold=args.cold, repeat=args.repeat, wb_tag=WB_TAG, df_tag=DF_TAG))
    if args.json:
        raw: dict[str, object] = {
            "command": sys.orig_argv,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "nproc": len(os.sched_getaffinity(0)),
            "images_checked": not unchecked,
            **bench.measured.to_json(),
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    if unchecked:
        print(f"bench: the images were measured but not checked: {unchecked}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
