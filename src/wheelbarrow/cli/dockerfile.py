"""``wheelbarrow dockerfile``: a Dockerfile that builds the wheelhouse, then installs offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wheelbarrow._core.files import atomic_write_text
from wheelbarrow.app.config import read_build_config
from wheelbarrow.cli import common, render
from wheelbarrow.lock.options import Options
from wheelbarrow.lock.target_choice import resolve_target
from wheelbarrow.ship.dockerfile import (
    DockerfileOptions,
    debian_packages,
    default_base,
    read_web_command,
    render_dockerfile,
    render_dockerignore,
)

DOCKERIGNORE = ".dockerignore"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow dockerfile``."""
    parser.add_argument("app", nargs="?", default=".", help="the app directory (default: .)")
    parser.add_argument(
        "--python",
        metavar="VERSION",
        help="target Python, e.g. 3.12 (default: as `build` chooses it)",
    )
    parser.add_argument(
        "--base",
        metavar="IMAGE",
        help="the app image's base (default: python:X.Y-slim-bookworm for the target Python)",
    )
    parser.add_argument(
        "--builder-base", metavar="IMAGE", help="the builder stage's base (default: --base)"
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write the Dockerfile to FILE (and a .dockerignore beside it, when FILE is in "
        "the app directory and it has none) instead of printing it",
    )
    parser.add_argument(
        "-i",
        "--index-url",
        metavar="URL",
        help="the index the builder installs wheelbarrow and the app's wheels from",
    )
    parser.add_argument(
        "--wheelbarrow",
        metavar="SPEC",
        default="wheelbarrow",
        help="what the builder installs: a requirement (wheelbarrow==0.1.0), a URL, or a "
        "wheel's path in the app directory (default: wheelbarrow)",
    )
    parser.add_argument(
        "--no-bind-mounts",
        action="store_true",
        help="no RUN --mount (for builders without BuildKit): copy the wheelhouse into "
        "the image instead of bind-mounting it, and keep no store cache",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    # main() renders errors with args.json; this command has no JSON output.
    parser.set_defaults(json=False)


def run(args: argparse.Namespace) -> int:
    """Render the Dockerfile of the app; print it, or write it (and a .dockerignore)."""
    app = common.app(args)
    config = read_build_config(app.root)
    python = resolve_target(app, Options(python=getattr(args, "python", None)), common.host())
    packages, unknown = debian_packages(app, config)
    for spec in unknown:
        sys.stderr.write(
            f"warning: no known Debian package provides {spec}: add it to the builder's "
            "apt-get line\n"
        )
    base = getattr(args, "base", None) or default_base(python.python)
    options = DockerfileOptions(
        base=base,
        builder_base=getattr(args, "builder_base", None),
        python=python.python,
        web_command=read_web_command(app.root),
        system_packages=packages,
        index_url=getattr(args, "index_url", None),
        wheelbarrow_spec=getattr(args, "wheelbarrow", "wheelbarrow"),
        bind_mounts=not getattr(args, "no_bind_mounts", False),
    )
    text = render_dockerfile(app, options, config=config)
    output = getattr(args, "output", None)
    if not output:
        sys.stdout.write(text)
        return 0
    path = Path(output).absolute()
    atomic_write_text(path, text)
    quiet = getattr(args, "quiet", False)
    if not quiet:
        render.out(f"Wrote {path}")
    if path.parent.resolve() == app.root.resolve():
        ignore = app.root / DOCKERIGNORE
        if ignore.exists():
            if not quiet:
                render.out(f"Kept the existing {ignore}")
        else:
            atomic_write_text(ignore, render_dockerignore(app))
            if not quiet:
                render.out(f"Wrote {ignore}")
    return 0
