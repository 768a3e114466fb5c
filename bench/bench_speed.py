"""One table of every speed target of issue 13, each figure against its peer in the same run.

Its own rows (textsim: numpy + scipy + scikit-learn + flask + gunicorn, against the real
package index), with the peak memory of the largest process of each command:

- cold install (no stored environment; the wheelhouse in the store), with bytecode, against
  ``uv pip install --compile-bytecode`` with a new empty cache;
- cold build with the app's lock current (fetch only, empty store and caches), against
  ``pip download`` of the lock's pins; and with no lock (lock + fetch) against ``pip
  download -r requirements.txt``.

Then the rows of the other benchmarks, each run as a subprocess with its own defaults and
``--json FILE`` when its script is there (``--skip NAME`` leaves one out), read from the
report's ``speed_rows`` (a list of this script's Row fields): warm install and its
constant-time rows (bench_install_scaling.py / bench_warm_install.py), no-op build and
Heroku compiles (bench_noop.py), image cold and app-only against buildah (bench_image.py:
10+ minutes, needs podman and buildah). A script that is missing, fails or gives no rows
has them as "not run" with the reason. Prints one Markdown table on stdout; progress goes
to stderr.

    python bench/bench_speed.py [--repeat N] [--workdir DIR] [--json FILE] [--skip NAME,...]

Run it with the Python the app targets (its .python-version).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_textsim import (
    APP_SOURCE,
    COLD_BUILD,
    COLD_BUILD_LOCKED,
    COLD_INSTALL,
    IMPORT_CHECK,
    Bench,
    load_average,
    medians_of,
    run,
)
from harness import REPO, CommandFailed, log

BENCH = REPO / "bench"
PEAK_LIMIT_MB = 150


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One figure of the table: wheelbarrow's, its peer's, and the target on their ratio."""

    figure: str
    wb: float | None
    peer: str
    peer_value: float | None
    target: str  # "≤ 0.5x", "≤ 0.1 s", ...
    met: bool | None
    unit: str = "s"
    wb_peak: float | None = None
    peer_peak: float | None = None
    note: str = ""
    wb_cpu: float | None = None  # CPU seconds, user + system, the processes waited for included
    peer_cpu: float | None = None


def at_most_ratio(limit: float) -> Callable[[float | None, float | None], bool | None]:
    def check(wb: float | None, peer: float | None) -> bool | None:
        return None if wb is None or peer is None else wb <= limit * peer

    return check


def own_rows(bench: Bench, cold: int) -> list[Row]:
    """Cold builds (locked and not) and cold installs, interleaved with their peers."""
    for _ in range(cold):
        bench.cold_build(locked=False)
        bench.cold_build(locked=True)
    bench.take_wheelhouse()
    made = [bench.cold_install(i, pip=False) for i in range(cold)]
    run([made[-1] / "bin/python", "-c", IMPORT_CHECK], bench.env["wheelbarrow"])
    times, peaks, cpu = medians_of(bench.timings), medians_of(bench.peaks), medians_of(bench.cpu)

    def row(key: str, figure: str, peer_tool: str, peer: str, limit: float) -> Row:
        wb, other = times[key]["wheelbarrow"], times[key][peer_tool]
        return Row(
            figure=f"{figure} (n={cold})",
            wb=wb,
            peer=peer,
            peer_value=other,
            target=f"≤ {limit:g}x",
            met=at_most_ratio(limit)(wb, other),
            wb_peak=peaks[key]["wheelbarrow"],
            peer_peak=peaks[key][peer_tool],
            wb_cpu=cpu[key]["wheelbarrow"],
            peer_cpu=cpu[key][peer_tool],
        )

    return [
        row(
            COLD_INSTALL,
            "cold install, with bytecode (no stored environment)",
            "uv",
            "`uv pip install --compile-bytecode`, empty cache",
            1.0,
        ),
        row(
            COLD_BUILD_LOCKED,
            "cold build, lock current: fetch into an empty store",
            "pip",
            "`pip download` of the lock's pins (`--no-deps --require-hashes`)",
            0.5,
        ),
        row(
            COLD_BUILD,
            "cold build, no lock: lock + fetch into an empty store",
            "pip",
            "`pip download -r requirements.txt`",
            0.5,
        ),
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class External:
    """Another benchmark script whose ``--json`` report gives rows of the table."""

    name: str
    scripts: tuple[str, ...]  # the first one present runs
    args: tuple[str, ...]
    rows: Callable[[dict[str, Any]], list[Row]]
    figures: tuple[str, ...]  # what it measures, for a row saying why it did not run


def image_rows(report: dict[str, Any]) -> list[Row]:
    """bench_image.py: the cold image and the app-only rebuild against buildah, for each
    compression it measured (its own ``speed_rows`` when it gives them)."""
    if "speed_rows" in report:
        return speed_rows(report)
    import image_report as image

    seconds, peaks = report["seconds"], report.get("peak_rss_bytes", {})

    def median(row: str, series: str) -> float | None:
        values = seconds.get(row, {}).get(series)
        return statistics.median(values) if values else None

    def peak(row: str, series: str) -> float | None:
        values = peaks.get(row, {}).get(series)
        return max(values) / 2**20 if values else None

    rows = []
    for key, figure, limit in (
        (image.COLD_TOTAL, "image, cold (build + image, empty stores and caches)", 0.3),
        (image.APP_ONLY, "image, app-only rebuild", 0.2),
    ):
        for series in sorted(s for s in seconds.get(key, {}) if s.startswith(image.WB)):
            wb, peer = median(key, series), median(key, image.DF)
            rows.append(
                Row(
                    figure=f"{figure}, {series.removeprefix(image.WB).strip() or 'gzip'}",
                    wb=wb,
                    peer="buildah on the generated Dockerfile",
                    peer_value=peer,
                    target=f"≤ {limit:g}x",
                    met=at_most_ratio(limit)(wb, peer),
                    wb_peak=peak(key, series),
                    peer_peak=peak(key, image.DF),
                )
            )
    return rows


def speed_rows(report: dict[str, Any]) -> list[Row]:
    """A report that lists its rows for this table under ``speed_rows``: each a mapping
    with the fields of :class:`Row`."""
    fields = set(Row.__dataclass_fields__)
    return [Row(**{k: v for k, v in r.items() if k in fields}) for r in report["speed_rows"]]


EXTERNALS = (
    External(
        name="warm",
        scripts=("bench_install_scaling.py", "bench_warm_install.py"),
        args=(),
        rows=speed_rows,
        figures=("warm install beyond `python -I -S -c pass`, at 15, 60 and 150 packages",),
    ),
    External(
        name="noop",
        scripts=("bench_noop.py",),
        args=(),
        rows=speed_rows,
        figures=("no-op build", "Heroku: second compile, unchanged; changed pin"),
    ),
    External(
        name="image",
        scripts=("bench_image.py",),
        args=(),
        rows=image_rows,
        figures=("image, cold", "image, app-only rebuild"),
    ),
)


def external_rows(external: External, work: Path) -> list[Row]:
    """The rows of one other benchmark, run now; "not run" rows saying why when it cannot."""
    script = next((BENCH / s for s in external.scripts if (BENCH / s).is_file()), None)

    def not_run(why: str) -> list[Row]:
        return [
            Row(figure=f, wb=None, peer="", peer_value=None, target="", met=None, note=why)
            for f in external.figures
        ]

    if script is None:
        return not_run(f"not run: no {' or '.join(external.scripts)} in bench/")
    out = work / f"{external.name}.json"
    cmd = [sys.executable, str(script), *external.args, "--json", str(out)]
    log(f"running {shlex.join(cmd)}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0 or not out.is_file():
        return not_run(f"not run: {script.name} exited with {proc.returncode}")
    try:
        return external.rows(json.loads(out.read_text(encoding="utf-8")))
    except (KeyError, TypeError, ValueError) as exc:
        return not_run(f"not read: {script.name}'s --json has no rows for this table ({exc!r})")


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.3g} {unit}"


def table(rows: Sequence[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| figure | wheelbarrow | peer | peer's | wb ÷ peer | target | met "
        "| CPU s wb / peer | peak MB wb / peer |",
        "|---|---:|---|---:|---:|---|---|---:|---:|",
    ]
    for r in rows:
        relative = r.target.endswith("x") and r.wb is not None and r.peer_value
        ratio = f"{r.wb / r.peer_value:.2f}x" if relative else ""
        met = {True: "yes", False: "**no**", None: r.note or "n/a"}[r.met]
        peaks = (
            " / ".join("—" if p is None else f"{p:.0f}" for p in (r.wb_peak, r.peer_peak))
            if r.wb_peak is not None or r.peer_peak is not None
            else ""
        )
        cpu = (
            " / ".join("—" if c is None else f"{c:.2f}" for c in (r.wb_cpu, r.peer_cpu))
            if r.wb_cpu is not None or r.peer_cpu is not None
            else ""
        )
        cells = [r.figure, cell(r.wb, r.unit), r.peer, cell(r.peer_value, r.unit), ratio]
        lines.append("| " + " | ".join([*cells, r.target, met, cpu, peaks]) + " |")
    notes = [f"- {r.figure}: {r.note}" for r in rows if r.note and r.met is not None]
    return "\n".join([*lines, *(["", *notes] if notes else [])])


def peak_note(rows: Sequence[Row]) -> str:
    """Target 7: the peak memory of `build` and `install` (not the image or Heroku rows)."""
    measured = [
        r
        for r in rows
        if r.wb_peak is not None
        and ("build" in r.figure or "install" in r.figure)
        and not r.figure.startswith(("image", "Heroku"))
    ]
    worst = max(measured, key=lambda r: r.wb_peak or 0.0, default=None)
    if worst is None or worst.wb_peak is None:
        return "Peak memory: not measured."
    ok = worst.wb_peak <= PEAK_LIMIT_MB
    return (
        f"Peak memory of `build` and `install` (the largest single process, uv and the "
        f"compile workers included): at most {worst.wb_peak:.0f} MB ({worst.figure}); target "
        f"≤ {PEAK_LIMIT_MB} MB: {'met' if ok else '**not met**'}."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per row (3)")
    parser.add_argument("--workdir", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows")
    parser.add_argument(
        "--skip",
        default="",
        metavar="NAME,...",
        help="leave out: own (this script's rows), " + ", ".join(e.name for e in EXTERNALS),
    )
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    known = {"own", *(e.name for e in EXTERNALS)}
    if skip - known:
        parser.error(f"--skip: unknown {', '.join(sorted(skip - known))}")
    wanted = (APP_SOURCE / ".python-version").read_text(encoding="utf-8").strip()
    if ".".join(map(str, sys.version_info[:2])) != wanted:
        parser.error(f"run this with Python {wanted}, the version the app targets")
    work = args.workdir.absolute() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_at_start = load_average()
    rows: list[Row] = []
    bench = Bench(work)
    try:
        if "own" not in skip:
            bench.setup()
            rows += own_rows(bench, args.repeat)
        for external in EXTERNALS:
            if external.name not in skip:
                rows += external_rows(external, work)
    except CommandFailed as exc:
        print(f"bench: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    versions = ", ".join(
        v.split(" from ")[0] for k, v in bench.versions.items() if k != "wheelhouse"
    )
    header = (
        f"## Speed targets (issue 13), {datetime.date.today().isoformat()}, Python "
        f"{sys.version.split()[0]}, nproc {len(os.sched_getaffinity(0))}, load average "
        f"{load_at_start} at the start, {load_average()} at the end: "
        f"`{shlex.join(sys.orig_argv)}`\n\n{versions}; {bench.versions.get('wheelhouse', '')}; "
        "medians; peak memory is `ru_maxrss` of `wait4` on the command (its largest process, "
        "every process it waited for included)."
    )
    print(table(rows, header) + "\n\n" + peak_note(rows))
    if args.json:
        raw = {
            "command": sys.orig_argv,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "speed_rows": [_as_dict(r) for r in rows],
            "runs": bench.timings,
            "peak_mb": bench.peaks,
            "cpu_s": bench.cpu,
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 0


def _as_dict(row: Row) -> dict[str, object]:
    return {name: getattr(row, name) for name in Row.__dataclass_fields__}


if __name__ == "__main__":
    sys.exit(main())
