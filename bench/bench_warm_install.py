"""Benchmark a warm install (the whole command) of a large environment, against another revision.

Makes an app of N local wheels (default: about 7,000 files once installed, bytecode
included), builds it offline from a find-links directory, makes its stored
environment once, then times `wheelbarrow install APP --into NEW_DIR` (the default layout:
shared with the stored environment; before it, a clone checked against its seal) and
`wheelbarrow verify` on it. bench_install_scaling.py times each layout against the number
of packages.
With `--baseline REV`, the same is timed for that git revision of src/ (run from a
`git archive` of it), interleaved with the current code, so both see the same machine.
Prints a Markdown table of medians on stdout; progress goes to stderr.

    python bench/bench_warm_install.py [--files 7000] [--repeat 7] [--baseline REV]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from harness import REPO, clean_environ, fresh, log, run

FILES_PER_WHEEL = 140


def make_wheel(directory: Path, name: str, modules: int) -> None:
    """A pure wheel holding ``modules`` Python files of about 2 kB each."""
    contents = {
        f"{name}/m{i:04d}.py": (f"# {name} module {i}\n" + "X = 1  # padding\n" * 110).encode()
        for i in range(modules)
    }
    contents[f"{name}/__init__.py"] = b"VALUE = 1\n"
    info = f"{name}-1.0.dist-info"
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    contents[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    lines = []
    for path, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}\n")
    contents[f"{info}/RECORD"] = ("".join(lines) + f"{info}/RECORD,,\n").encode()
    with zipfile.ZipFile(directory / f"{name}-1.0-py3-none-any.whl", "w") as archive:
        for path, data in contents.items():
            archive.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)


def baseline_src(rev: str, work: Path) -> Path:
    """src/ of ``rev``, unpacked from ``git archive``."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "src"], capture_output=True, check=True
    ).stdout
    target = fresh(work / f"src-{rev}")
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        archive.extractall(target, filter="data")
    return target / "src"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=7000, help="files in the environment")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", metavar="REV", help="a git revision to compare with")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wb-bench-install-"))
    dists = fresh(work / "dists")
    # Each module gets a .pyc: half the files are sources.
    wheels = max(1, args.files // (2 * FILES_PER_WHEEL))
    for i in range(wheels):
        make_wheel(dists, f"pkg{i:03d}", FILES_PER_WHEEL)
    requirements = "".join(f"pkg{i:03d}==1.0\n" for i in range(wheels))
    variants = {"current": REPO / "src"}
    if args.baseline:
        variants[args.baseline] = baseline_src(args.baseline, work)
    env = clean_environ()
    python = sys.executable
    timings: dict[str, dict[str, list[float]]] = {
        v: {"install": [], "verify": []} for v in variants
    }
    counted = 0
    for variant, src in variants.items():
        app = fresh(work / f"app-{variant}")
        (app / "requirements.txt").write_text(requirements)
        (app / ".python-version").write_text(f"{sys.version_info[0]}.{sys.version_info[1]}\n")
        venv = env | {"PYTHONPATH": str(src), "WHEELBARROW_STORE": str(work / f"store-{variant}")}
        log(f"{variant}: building and making the stored environment")
        wb = [python, "-m", "wheelbarrow"]
        run([*wb, "build", app, "--no-index", "-f", dists], venv)
        run([*wb, "install", app, "--into", work / f"cold-{variant}"], venv)
        counted = sum(len(files) for _, _, files in os.walk(work / f"cold-{variant}"))
    for r in range(args.repeat):
        for variant, src in variants.items():
            venv = env | {
                "PYTHONPATH": str(src),
                "WHEELBARROW_STORE": str(work / f"store-{variant}"),
            }
            into = work / f"into-{variant}-{r}"
            wb = [python, "-m", "wheelbarrow"]
            seconds, _, _ = run([*wb, "install", work / f"app-{variant}", "--into", into], venv)
            timings[variant]["install"].append(seconds)
            if variant == "current":
                seconds, _, _ = run([*wb, "verify"], venv)
                timings[variant]["verify"].append(seconds)
        log(f"run {r + 1}/{args.repeat}")
    base = statistics.median(timings["current"]["install"])
    print(f"Warm install of {counted:,} files ({wheels} wheels), medians of {args.repeat} runs\n")
    print("| code | warm install (whole command) | ÷ current | full verify |")
    print("|---|---:|---:|---:|")
    for variant in variants:
        install = statistics.median(timings[variant]["install"])
        verify = timings[variant]["verify"]
        shown = f"{statistics.median(verify):.3f} s" if verify else "n/a"
        print(f"| {variant} | {install:.3f} s | {install / base:.2f}x | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
