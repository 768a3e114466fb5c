"""Benchmark reproducible source builds: the same sdists built twice, compared byte for byte.

The real packages the test suite and the cluster benchmark build from source: the
cluster tree's fifteen C-extension packages with ``--no-binary :all:`` (so setuptools,
flit-core, wheel and packaging are built from their sdists too), markupsafe, and one per
build backend of the real-backend tests: pykdtree (setuptools + Cython + numpy),
PyWavelets (meson-python), mapbox-earcut (scikit-build-core) and a small Rust crate
written here (maturin; no crate registry is reachable). Each set is built with
``wheelbarrow build`` twice, into two empty stores at paths of different lengths (so no
cache hit and different build directories), and every wheel's sha256 is compared. For a
wheel that differs it says why: which members differ, and for ELF files which sections
and whether they hold a build directory (read with pyelftools; diffoscope, if on PATH,
gives the first lines of its report too).

    python bench/bench_reproducible.py [--workdir DIR] [--wheelbarrow EXE] [--json FILE]

``--wheelbarrow`` runs another installed wheelbarrow (an older one, for a before/after
count); by default the repository's is installed into a fresh venv. It needs the package
index and takes about ten minutes. Prints a Markdown table on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster_tree import TREE
from harness import clean_environ, fresh, install_tools, log, run
from packaging.utils import parse_wheel_filename

ELF = b"\x7fELF"
RUST_CRATE = "wbreprorust"


@dataclass(frozen=True)
class BuildSet:
    """Requirements built in one app, and what is built from source."""

    name: str
    requirements: tuple[str, ...]
    no_binary: tuple[str, ...]


SETS = (
    BuildSet(name="tree", requirements=TREE, no_binary=(":all:",)),
    BuildSet(
        name="backends",
        requirements=(
            "markupsafe==3.0.2",
            "pykdtree==1.4.3",
            "pywavelets==1.8.0",
            "mapbox-earcut==2.1.0",
            f"./{RUST_CRATE}",
        ),
        no_binary=("markupsafe", "pykdtree", "pywavelets", "mapbox-earcut"),
    ),
)


@dataclass(frozen=True)
class Wheel:
    """One wheel a build made: its package, the file in the store, and how it was built."""

    name: str
    version: str
    path: Path
    sha256: str
    backend: str


def make_rust_crate(directory: Path) -> None:
    """A maturin project (cffi bindings) with one C-ABI function and no crate dependencies."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["maturin>=1.9,<2"]\nbuild-backend = "maturin"\n\n'
        f'[project]\nname = "{RUST_CRATE}"\nversion = "0.1.0"\ndependencies = ["cffi"]\n\n'
        '[tool.maturin]\nbindings = "cffi"\n',
        encoding="utf-8",
    )
    (directory / "Cargo.toml").write_text(
        f'[package]\nname = "{RUST_CRATE}"\nversion = "0.1.0"\nedition = "2021"\n\n'
        '[lib]\ncrate-type = ["cdylib"]\n',
        encoding="utf-8",
    )
    (directory / "src").mkdir(exist_ok=True)
    (directory / "src" / "lib.rs").write_text(
        '#[no_mangle]\npub extern "C" fn wb_add(a: u64, b: u64) -> u64 {\n    a + b\n}\n',
        encoding="utf-8",
    )


def make_app(directory: Path, build_set: BuildSet) -> Path:
    fresh(directory)
    (directory / "requirements.txt").write_text("\n".join(build_set.requirements) + "\n")
    if any(r == f"./{RUST_CRATE}" for r in build_set.requirements):
        make_rust_crate(directory / RUST_CRATE)
    return directory


def build(
    wheelbarrow: str, app: Path, store: Path, build_set: BuildSet, env: Mapping[str, str]
) -> tuple[float, list[Wheel]]:
    """``wheelbarrow build`` of ``app`` into ``store``; the wheels it built now."""
    args: list[str | Path] = [wheelbarrow, "build", app, "--store", store, "--json"]
    for name in build_set.no_binary:
        args += ["--no-binary", name]
    seconds, _, _ = run(args, env)
    # Every build of the run, the build requirements built from source first among them.
    wheels = []
    for result in sorted((store / "built").glob("*/result.json")):
        record = json.loads(result.read_text())
        name, version, _, _ = parse_wheel_filename(record["wheel"])
        sha256 = record["sha256"]
        wheels.append(
            Wheel(
                name=str(name),
                version=str(version),
                path=store / "blobs" / "sha256" / sha256[:2] / sha256,
                sha256=sha256,
                backend=backend_of(store, record["inputs"]["source"], app / str(name)),
            )
        )
    return seconds, wheels


def backend_of(store: Path, source_sha256: str, tree: Path) -> str:
    """The build backend the sdist in the store (or the local ``tree``) names in pyproject.toml."""
    pyproject: dict[str, Any] = {}
    sdists = list((store / "named" / source_sha256[:2] / source_sha256).glob("*.tar.gz"))
    if sdists:
        with tarfile.open(sdists[0]) as tar:
            member = next(
                (m for m in tar if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")),
                None,
            )
            if member is not None and (data := tar.extractfile(member)) is not None:
                pyproject = tomllib.loads(data.read().decode())
    elif (tree / "pyproject.toml").is_file():
        pyproject = tomllib.loads((tree / "pyproject.toml").read_text())
    backend = pyproject.get("build-system", {}).get("build-backend")
    if not backend:
        return "setuptools (legacy)"
    module = str(backend).split(".")[0]
    return {"mesonpy": "meson-python"}.get(module, module.replace("_", "-"))


def why_different(first: Wheel, second: Wheel, roots: Sequence[bytes]) -> str:
    """Why two builds of one package differ: the members, and in ELF files the sections."""
    with zipfile.ZipFile(first.path) as a, zipfile.ZipFile(second.path) as b:
        names_a, names_b = a.namelist(), b.namelist()
        if sorted(names_a) != sorted(names_b):
            only_a = sorted(set(names_a) - set(names_b))
            only_b = sorted(set(names_b) - set(names_a))
            return f"members differ (only in the 1st: {only_a[:3]}, only in the 2nd: {only_b[:3]})"
        differing = [
            n for n in names_a if not n.endswith(".dist-info/RECORD") and a.read(n) != b.read(n)
        ]
        if not differing:
            if names_a != names_b:
                return "the members' order"
            infos = zip(a.infolist(), b.infolist(), strict=True)
            fields = sorted(
                {
                    field
                    for x, y in infos
                    for field in ("date_time", "external_attr", "extra", "compress_type")
                    if getattr(x, field) != getattr(y, field)
                }
            )
            return f"zip headers only ({', '.join(fields) or 'compression'})"
        reasons = [f"{n}: {member_reason(a.read(n), b.read(n), roots)}" for n in differing[:4]]
        more = f" (and {len(differing) - 4} more members)" if len(differing) > 4 else ""
        return "; ".join(reasons) + more


def member_reason(a: bytes, b: bytes, roots: Sequence[bytes]) -> str:
    if a[:4] == ELF and b[:4] == ELF:
        return elf_reason(a, b, roots)
    if any(root in a or root in b for root in roots):
        return "holds the build directory"
    if re.search(rb"/tmp/tmp\w{8}", a + b):
        return "holds a temporary directory's path"
    first = next(
        ((x, y) for x, y in zip(a.splitlines(), b.splitlines(), strict=False) if x != y),
        (a[:60], b[:60]),
    )
    return f"first difference: {first[0][:60]!r} vs {first[1][:60]!r}"


def elf_reason(a: bytes, b: bytes, roots: Sequence[bytes]) -> str:
    """The sections that differ between two ELF files, and what is in them."""
    from elftools.elf.elffile import ELFFile

    sections_a = {s.name: s.data() for s in ELFFile(io.BytesIO(a)).iter_sections()}
    sections_b = {s.name: s.data() for s in ELFFile(io.BytesIO(b)).iter_sections()}
    if sorted(sections_a) != sorted(sections_b):
        return f"other sections ({sorted(set(sections_a) ^ set(sections_b))})"
    differing = [n for n in sections_a if sections_a[n] != sections_b[n]]
    said = []
    for name in differing:
        data = sections_a[name] + sections_b[name]
        if any(root in data for root in roots):
            said.append(f"build path in {name}")
        elif re.search(rb"/tmp/tmp\w{8}", data):
            said.append(f"temporary directory path in {name}")
        elif name == ".note.gnu.build-id":
            said.append("build id (a hash of the rest)")
        else:
            said.append(f"{name} differs")
    return ", ".join(said) or "the section layout (same section contents)"


def diffoscope_head(first: Path, second: Path, lines: int = 12) -> str:
    """The start of diffoscope's report, when diffoscope is installed."""
    exe = shutil.which("diffoscope")
    if exe is None:
        return ""
    done = subprocess.run(
        [exe, "--text", "-", str(first), str(second)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return "\n".join(done.stdout.splitlines()[:lines])


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-reproducible"))
    parser.add_argument("--wheelbarrow", help="a wheelbarrow executable (default: install this)")
    parser.add_argument("--json", type=Path, help="write the rows as JSON to this file")
    parser.add_argument("--sets", nargs="*", default=[s.name for s in SETS])
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = clean_environ()
    wheelbarrow = args.wheelbarrow or str(install_tools(work, env) / "wheelbarrow")
    # Two stores at different paths (different lengths too, so that offsets move).
    stores = (work / "a" / "store", work / "second-place" / "elsewhere" / "store")
    roots = [str(s.parent).encode() for s in stores]
    rows: list[dict[str, Any]] = []
    seconds = [0.0, 0.0]
    started = time.perf_counter()
    for build_set in (s for s in SETS if s.name in args.sets):
        app = make_app(work / "apps" / build_set.name, build_set)
        made: list[dict[str, Wheel]] = []
        for i, store in enumerate(stores):
            fresh(store.parent)
            log(f"{build_set.name}: building into store {i + 1} ({store})")
            took, wheels = build(wheelbarrow, app, store, build_set, env)
            seconds[i] += took
            made.append({w.name: w for w in wheels})
        for name in sorted(made[0]):
            first, second = made[0][name], made[1].get(name)
            if second is None:
                why = "not built in the second store"
                rows.append({"package": name, "version": first.version, "backend": first.backend,
                             "identical": False, "why": why})  # fmt: skip
                continue
            same = first.sha256 == second.sha256
            why = "" if same else why_different(first, second, roots)
            if not same and (head := diffoscope_head(first.path, second.path)):
                log(f"{name}: diffoscope says\n{head}")
            rows.append({"package": name, "version": first.version, "backend": first.backend,
                         "identical": same, "why": why, "sha256": first.sha256})  # fmt: skip
    report(rows, seconds, time.perf_counter() - started, wheelbarrow)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def report(
    rows: Iterable[dict[str, Any]], seconds: Sequence[float], total: float, exe: str
) -> None:
    rows = list(rows)
    same = sum(1 for r in rows if r["identical"])
    print(
        f"# Reproducible source builds ({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC)"
    )
    print()
    print(f"wheelbarrow: {exe}; Python {sys.version.split()[0]}; load average {loadavg()}")
    print(
        f"builds: {seconds[0]:.0f} s into the 1st store, {seconds[1]:.0f} s into the 2nd "
        f"(ratio {seconds[1] / seconds[0]:.2f}); {total:.0f} s in all"
    )
    print()
    print("| package | version | backend | identical | why not |")
    print("|---|---|---|---|---|")
    for row in rows:
        ok = "yes" if row["identical"] else "no"
        print(f"| {row['package']} | {row['version']} | {row['backend']} | {ok} | {row['why']} |")
    print()
    print(f"{same} of {len(rows)} wheels identical")


if __name__ == "__main__":
    raise SystemExit(main())
