"""Projects that show what a real build backend gets: an environment probe, small Rust crates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final

__all__ = [
    "PROBE_MARK",
    "PROBE_TOOL",
    "RUST_FUNCTION",
    "make_env_probe_project",
    "make_rust_cffi_crate",
]

PROBE_MARK: Final = "ENVPROBE "
"""The build log line of :func:`make_env_probe_project` starts with this, then JSON."""

PROBE_TOOL: Final = "wbprobetool"
"""The console script the probe's build requirement installs, and the probe runs by name."""

RUST_FUNCTION: Final = "wb_add"
"""The C-ABI function (two u64 in, their sum out) of :func:`make_rust_cffi_crate`'s library."""

# An in-tree backend (stdlib only) that reports what it was given: where its build
# requirement's script is found, and the variables a front-end sets for a backend.
_PROBE_BACKEND: Final = r'''"""In-tree PEP 517 backend: reports its environment to the build log."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

TOOL = "@TOOL@"
VARIABLES = ("VIRTUAL_ENV", "CARGO_NET_OFFLINE", "PYTHONIOENCODING", "PIP_NO_INDEX", "UV_OFFLINE")


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    found = shutil.which(TOOL)
    said = subprocess.run([TOOL], capture_output=True, text=True, check=True).stdout.strip()
    seen = {
        "path0": os.environ["PATH"].split(os.pathsep)[0],
        "tool": found,
        "tool_says": said,
        "prefix": sys.prefix,
        "env": {name: os.environ.get(name) for name in VARIABLES},
    }
    print("@MARK@" + json.dumps(seen, sort_keys=True))
    # maturin, meson and cmake print arrows and emoji; a backend must be able to.
    print("done \u2192 \U0001f40d")
    sys.stdout.flush()
    name = "envprobe-1.0-py3-none-any.whl"
    files = {
        "envprobe/__init__.py": b"SEEN = " + repr(seen).encode() + b"\n",
        "envprobe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: envprobe\nVersion: 1.0\n",
        "envprobe-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: probe\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append("envprobe-1.0.dist-info/RECORD,,")
        wheel.writestr("envprobe-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return name
'''


def make_env_probe_project(directory: Path, *, requires: str = PROBE_TOOL) -> Path:
    """A project ``envprobe`` whose backend logs one :data:`PROBE_MARK` line about its environment.

    Its build requirement ``requires`` should install the console script
    :data:`PROBE_TOOL`; the backend runs it by name, as meson-python runs
    ``meson`` or maturin runs ``cargo``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(
        "[build-system]\n"
        f'requires = ["{requires}"]\n'
        'build-backend = "backend"\n'
        'backend-path = ["_backend"]\n\n'
        '[project]\nname = "envprobe"\nversion = "1.0"\n',
        encoding="utf-8",
    )
    backend = directory / "_backend"
    backend.mkdir(exist_ok=True)
    source = _PROBE_BACKEND.replace("@TOOL@", PROBE_TOOL).replace("@MARK@", PROBE_MARK)
    (backend / "backend.py").write_text(source, encoding="utf-8")
    return directory


def probe_report(log: Path) -> dict[str, object]:
    """The :data:`PROBE_MARK` line of a build log, parsed."""
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith(PROBE_MARK):
            seen: dict[str, object] = json.loads(line.removeprefix(PROBE_MARK))
            return seen
    raise AssertionError(f"no {PROBE_MARK.strip()} line in {log}")


_CARGO_CONFIG_VENDORED: Final = """\
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"
"""


def make_rust_cffi_crate(
    directory: Path,
    name: str = "wbrust",
    *,
    maturin: str = "maturin>=1.9,<2",
    dependency: str | None = None,
    vendored: bool = False,
) -> Path:
    """A maturin project with ``bindings = "cffi"``: a cdylib exporting :data:`RUST_FUNCTION`.

    With ``dependency`` (a crate name) the crate depends on ``NAME = "1"`` from
    the crate registry and calls its ``offset()``; ``vendored`` then ships that crate
    under ``vendor/`` with the source replacement ``cargo vendor`` prints in
    ``.cargo/config.toml``, so cargo needs no network. The crate itself is
    written here (no crate registry is reachable), with the checksum file cargo
    requires of a vendored crate.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["{maturin}"]\nbuild-backend = "maturin"\n\n'
        f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = ["cffi"]\n\n'
        '[tool.maturin]\nbindings = "cffi"\n',
        encoding="utf-8",
    )
    deps = f'\n[dependencies]\n{dependency} = "1"\n' if dependency else ""
    (directory / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n'
        f'[lib]\ncrate-type = ["cdylib"]\n{deps}',
        encoding="utf-8",
    )
    offset = f" + {dependency}::offset()" if dependency else ""
    (directory / "src").mkdir(exist_ok=True)
    (directory / "src" / "lib.rs").write_text(
        "#[no_mangle]\n"
        f'pub extern "C" fn {RUST_FUNCTION}(a: u64, b: u64) -> u64 {{\n'
        f"    a + b{offset}\n}}\n",
        encoding="utf-8",
    )
    if dependency and vendored:
        crate = directory / "vendor" / dependency
        (crate / "src").mkdir(parents=True, exist_ok=True)
        (crate / "Cargo.toml").write_text(
            f'[package]\nname = "{dependency}"\nversion = "1.0.0"\nedition = "2021"\n',
            encoding="utf-8",
        )
        lib = "pub fn offset() -> u64 {\n    1000\n}\n"
        (crate / "src" / "lib.rs").write_text(lib, encoding="utf-8")
        files = {
            "Cargo.toml": hashlib.sha256((crate / "Cargo.toml").read_bytes()).hexdigest(),
            "src/lib.rs": hashlib.sha256(lib.encode()).hexdigest(),
        }
        package = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        (crate / ".cargo-checksum.json").write_text(
            json.dumps({"files": files, "package": package}), encoding="utf-8"
        )
        (directory / ".cargo").mkdir(exist_ok=True)
        (directory / ".cargo" / "config.toml").write_text(_CARGO_CONFIG_VENDORED, encoding="utf-8")
    return directory
