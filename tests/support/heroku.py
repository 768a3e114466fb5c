"""Running the buildpacks' bodies in-process, as the tests of bin/compile and bin/build do."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tomllib
from pathlib import Path

from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.ship.heroku.cnb_build import build
from wheelbarrow.ship.heroku.compile import run_compile
from wheelbarrow.ship.heroku.output import HerokuReporter

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def uv_binary() -> str:
    """The uv wheelbarrow depends on."""
    from uv import find_uv_bin

    return str(find_uv_bin())


def compile_(build_dir: Path, cache: Path, env: Path, slug_home: Path) -> tuple[int, str]:
    """Run bin/compile's body; returns the exit code and what it printed."""
    stream = io.StringIO()
    environ = dict(os.environ, WHEELBARROW_SLUG_HOME=str(slug_home), STACK="test-stack")
    code = run_compile(
        build_dir,
        cache,
        env,
        out=HerokuReporter(stream),
        environ=environ,
        runner=run_subprocess,
        which=shutil.which,
        uv=uv_binary(),
    )
    return code, stream.getvalue()


def restore_like_the_lifecycle(layers: Path) -> None:
    """Between builds: every <layer>.toml stays; launch-only layers lose their contents."""
    for toml in layers.glob("*.toml"):
        if toml.name in ("launch.toml", "build.toml", "store.toml"):
            continue
        types = tomllib.loads(toml.read_text()).get("types", {})
        layer = layers / toml.stem
        if types.get("launch") and not types.get("cache") and layer.is_dir():
            shutil.rmtree(layer)
    (layers / "launch.toml").unlink(missing_ok=True)


def run_cnb_build(app: Path, layers: Path, platform: Path) -> str:
    """bin/build's body as the lifecycle runs it, with this machine's environment (the index)."""
    layers.mkdir(exist_ok=True)
    stream = io.StringIO()
    build(
        app,
        layers_dir=layers,
        platform_dir=platform,
        plan_path=None,
        environ=dict(os.environ),
        runner=run_subprocess,
        which=shutil.which,
        uv=uv_binary(),
        out=HerokuReporter(stream),
    )
    return stream.getvalue()
