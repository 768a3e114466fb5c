"""uv's managed CPython builds: installed once into the cache, copied into the build directory."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from wheelbarrow._core.errors import PythonRuntimeError
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.ship.heroku.runtime import DOWNLOADS_JSON_VAR, URL_VAR, Runtime, install_tree

_MANAGED_SUBDIR: Final = "managed-pythons"
# What reaches uv besides its own UV_* settings: proxies and certificates for the download.
_PASSED_TO_UV: Final = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "NETRC")


def managed_runtime(
    version: PythonVersion,
    *,
    build_dir: Path,
    cache_dir: Path,
    config: Mapping[str, str],
    runner: Runner,
    uv: str,
    arch: str,
    environ: Mapping[str, str],
    stack: str,
) -> Runtime:
    """A CPython that uv installs (once, into the cache), copied into the build directory."""
    pythons = cache_dir / _MANAGED_SUBDIR
    env = {
        **{k: v for k, v in environ.items() if not k.startswith("UV_")},
        **{k: v for k, v in config.items() if k.startswith("UV_") or k in _PASSED_TO_UV},
        "UV_PYTHON_INSTALL_DIR": str(pythons),
        "UV_CACHE_DIR": str(cache_dir / "uv-cache"),
        "UV_NO_CONFIG": "1",
    }
    # uv's own request form: the architecture is the target's, not this machine's.
    request = f"cpython-{version}-linux-{arch}-gnu"
    source = config.get(DOWNLOADS_JSON_VAR, "").strip() or "uv's managed Python downloads"
    done = runner([uv, "python", "install", request, "--no-bin"], env=env)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise PythonRuntimeError(
            f"{stack}; and uv could not install it from {source}: "
            + (" ".join(line.strip() for line in detail[-3:]) or f"exit status {done.returncode}"),
            hint=f"check the network, or set {DOWNLOADS_JSON_VAR} to a JSON list of downloads "
            f"that has Python {version}, or {URL_VAR} to a tarball",
        )
    found = runner([uv, "python", "find", request, "--managed-python"], env=env)
    located = found.stdout.strip().splitlines()
    if found.returncode != 0 or not located:
        raise PythonRuntimeError(
            f"uv installed Python {version} into {pythons} but cannot find it there",
            hint="clear the build cache and build again",
        )
    tree = Path(located[-1]).resolve().parent.parent

    def copy(scratch: Path) -> Path:
        root = scratch / "python"
        shutil.copytree(tree, root, symlinks=True)
        return root

    return install_tree(
        copy, source=f"{source} ({tree.name})", version=version, build_dir=build_dir, runner=runner
    )
