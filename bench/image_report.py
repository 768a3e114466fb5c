"""The Markdown report of bench/bench_image.py: medians, ratios to buildah, peaks, sizes, load."""

from __future__ import annotations

import datetime
import json
import os
import shlex
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

WB, DF = "wheelbarrow", "buildah"
COMPRESSIONS = ("gzip", "zstd")
COLD_BUILD, COLD_IMAGE, COLD_TOTAL = "cold build", "cold image", "cold total"
NO_CHANGE, ENV_REBUILT, APP_ONLY = "no change", "env layer rebuilt", "app-only"
LAYERS, COMPRESSED, ADDED, UNPACKED = "layers", "compressed", "added", "unpacked"
TEXTS = ["the cat sat on the mat", "the cat sat on the mat", "stock prices fell sharply today"]
EXPECTED = [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def column(tool: str, compression: str | None = None) -> str:
    """The name of a measured series: ``wheelbarrow gzip``, ``buildah``."""
    return f"{tool} {compression}" if compression else tool


@dataclass
class Measured:
    """Every run's wall time, peak RSS and the load average seen at its start, by row and series."""

    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    peaks: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    loads: dict[str, list[float]] = field(default_factory=dict)
    sizes: dict[str, dict[str, float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    downloads: dict[str, int] = field(default_factory=dict)

    def add(self, row: str, series: str, seconds: float, peak: int, load: float) -> None:
        self.seconds.setdefault(row, {}).setdefault(series, []).append(seconds)
        self.peaks.setdefault(row, {}).setdefault(series, []).append(peak)
        self.loads.setdefault(row, []).append(load)

    def median(self, row: str, series: str) -> float | None:
        values = self.seconds.get(row, {}).get(series)
        return statistics.median(values) if values else None

    def peak(self, row: str, series: str) -> int | None:
        values = self.peaks.get(row, {}).get(series)
        return max(values) if values else None

    def to_json(self) -> dict[str, object]:
        return {
            "seconds": self.seconds,
            "peak_rss_bytes": self.peaks,
            "load_1min": self.loads,
            "sizes": self.sizes,
            "versions": self.versions,
            "index_downloads": self.downloads,
        }


def secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g} s"


def megabytes(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e6:.0f} MB"


def share(num: float | None, den: float | None) -> str:
    """``num / den`` to two places, or a dash."""
    return "—" if num is None or den is None or den == 0 else f"{num / den:.2f}"


def load_range(loads: Sequence[float]) -> str:
    return "—" if not loads else f"{min(loads):.1f} to {max(loads):.1f}"


def timing_rows(measured: Measured, cold: int, repeat: int) -> list[str]:
    """One line per timed step: each series, wb ÷ buildah for each compression, the load."""
    labels = {
        COLD_BUILD: f"cold: `wheelbarrow build` (lock + fetch, empty store) (n={cold})",
        COLD_IMAGE: f"cold: `wheelbarrow image` (environment + layers) (n={cold})",
        COLD_TOTAL: f"**cold total** (wb: build + image; target: wb ≤ 0.3 of buildah) (n={cold})",
        NO_CHANGE: f"nothing changed (wb: env layer cached) (n={repeat})",
        ENV_REBUILT: f"wb: env layer rebuilt (store's environment kept) (n={repeat})",
        APP_ONLY: f"**app-only rebuild** (app.py edited; target: wb ≤ 0.2) (n={repeat})",
    }
    lines = []
    for row, label in labels.items():
        df = measured.median(row, DF)
        wbs = [measured.median(row, column(WB, c)) for c in COMPRESSIONS]
        ratios = [share(wb, df) for wb in wbs]
        lines.append(
            f"| {label} | {' | '.join(secs(wb) for wb in wbs)} | {secs(df)} "
            f"| {' | '.join(ratios)} | {load_range(measured.loads.get(row, []))} |"
        )
    return lines


def peak_rows(measured: Measured) -> list[str]:
    """Peak RSS of the largest process (the command or any it waited for), per step."""
    lines = []
    for row in (COLD_BUILD, COLD_IMAGE, COLD_TOTAL, APP_ONLY):
        wbs = [measured.peak(row, column(WB, c)) for c in COMPRESSIONS]
        df = measured.peak(row, DF)
        lines.append(
            f"| peak RSS, {row} (largest process, max of runs) "
            f"| {' | '.join(megabytes(p) for p in wbs)} | {megabytes(df)} | | | |"
        )
    return lines


def size_rows(measured: Measured) -> list[str]:
    sizes = measured.sizes
    wbs = [sizes.get(column(WB, c), {}) for c in COMPRESSIONS]
    df = sizes.get(DF, {})
    lines = [
        f"| layers | {' | '.join(str(int(s.get(LAYERS, 0))) for s in wbs)} "
        f"| {int(df.get(LAYERS, 0))} | | | |"
    ]
    for key, label in (
        (COMPRESSED, "size, compressed (sum of layers)"),
        (ADDED, "size, compressed, on top of the base"),
        (UNPACKED, "size, unpacked (`podman image inspect`)"),
    ):
        ratios = " | ".join(share(s.get(key), df.get(key)) for s in wbs)
        lines.append(
            f"| {label} | {' | '.join(megabytes(s.get(key)) for s in wbs)} "
            f"| {megabytes(df.get(key))} | {ratios} | |"
        )
    return lines


def report(measured: Measured, *, cold: int, repeat: int, wb_tag: str, df_tag: str) -> str:
    v = measured.versions
    nproc = len(os.sched_getaffinity(0))
    every_load = [load for loads in measured.loads.values() for load in loads]
    lines = [
        f"## textsim image benchmark, {datetime.date.today().isoformat()}, Python "
        f"{sys.version.split()[0]}, nproc {nproc}: `{shlex.join(sys.orig_argv)}`",
        "",
        f"{v.get('wheelbarrow')}, {v.get('buildah')}, {v.get('podman')}, {v.get('skopeo')}; "
        f"base {v.get('base')}; {v.get('wheelhouse')}; gzip layers by {v.get('gzip')}, zstd by "
        f"{v.get('zstd')}; medians of wall time; load average (1 min) at the runs' starts "
        f"{load_range(every_load)}, median {statistics.median(every_load or [0]):.1f}.",
        "",
        "| step | wb, gzip | wb, zstd | buildah (generated Dockerfile) "
        "| wb gzip ÷ buildah | wb zstd ÷ buildah | load |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *timing_rows(measured, cold, repeat),
        *peak_rows(measured),
        *size_rows(measured),
        "",
        *notes(measured, wb_tag=wb_tag, df_tag=df_tag),
    ]
    return "\n".join(lines)


def notes(measured: Measured, *, wb_tag: str, df_tag: str) -> list[str]:
    dl: Mapping[str, int] = measured.downloads
    return [
        "- Both tools fetch from the same index on 127.0.0.1 (wheelbarrow.share.serve: this repo's "
        "wheel, its dependencies, the textsim wheels), passed as `--index-url`, so both lock "
        "again (the set-up's pylock.toml, locked from the real index, is restored before each "
        "cold run) and fetch over "
        f"loopback: {dl.get('wheelbarrow build', 0)} wheels for `wheelbarrow build`, "
        f"{dl.get('buildah builder stage', 0)} for the buildah builder stage (wheelbarrow, its "
        "dependencies, then the app's wheels). The cold buildah build also runs apt-get for the "
        "builder's toolchain (build-essential, gfortran, pkg-config) from Debian's archive; "
        "wheelbarrow needs no compiler and no container.",
        "- wheelbarrow: `wheelbarrow image APP --base oci:BASE:base --tag "
        f"{wb_tag} --oci OUT --json --compression gzip|zstd`, OUT deleted before each run. "
        "Truly cold: the store and uv cache are deleted before each cold run (of each "
        "compression), so `build` locks and fetches and `image` makes the environment, both "
        "layers and the layout; `build` and `image` are timed apart and summed. *Nothing "
        "changed* deletes only OUT; *env layer rebuilt* also deletes `STORE/oci/env-layers` "
        "(the store's environment stays). The JSON report is checked: `env_layer.reused` as "
        "expected, the compression asked for, the same env layer digest and a new app layer "
        "digest after each app edit, and the same image digest from every cold run.",
        "- buildah: `buildah build --isolation=oci --network=host --layers -f Dockerfile -t "
        f"{df_tag} APP` of `wheelbarrow dockerfile APP --base BASE --builder-base BASE "
        "--wheelbarrow wheelbarrow --index-url LOCAL_INDEX`. Truly cold: each cold run builds "
        "on a base of its own (the debootstrapped base plus a one-file layer naming the run, "
        "so buildah's `--layers` cache matches nothing) with a new TMPDIR (empty "
        "`RUN --mount=type=cache`: the builder's wheelbarrow store and uv cache). The cached "
        "builds are checked to lock, install and fetch nothing.",
        "- app-only: one comment line appended to app.py (a copy of the app for each tool) "
        "before each run.",
        "- Peak RSS: `ru_maxrss` from `os.wait4` of the command, i.e. its largest single "
        "process (wheelbarrow, or uv and the compile workers it waited for); for buildah, "
        "buildah's own processes, not the containers' (runc does not wait on them for it).",
        "- Sizes: compressed = the layers' sizes in the manifest: wheelbarrow's OCI layout as "
        "written, buildah's image after `skopeo copy containers-storage:… oci:…` (gzip, what a "
        "push sends). *On top of the base* subtracts the base's layer(s). Unpacked = "
        "`podman image inspect --format '{{.Size}}'` after `skopeo copy` into the storage.",
        f"- Every image answered `POST /similarity` {json.dumps({'texts': TEXTS})} with "
        f"{json.dumps({'similarity': EXPECTED})}, run by podman on 127.0.0.1.",
    ]
