"""The command line: parse arguments, call the core, render results and errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wheelbarrow import __version__
from wheelbarrow._core.errors import WheelbarrowError

EXIT_OK = 0
EXIT_INTERRUPTED = 130


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _common(parser: argparse.ArgumentParser, *, index: bool = True) -> None:
    parser.add_argument("app", nargs="?", default=".", help="the app directory (default: .)")
    parser.add_argument(
        "--python",
        metavar="VERSION",
        help="target Python, e.g. 3.12 (default: the app's .python-version, "
        "runtime.txt or requires-python, else the lock's, else this Python)",
    )
    parser.add_argument(
        "--platform",
        metavar="TAG",
        help="target platform, e.g. manylinux_2_28_x86_64 (default: the lock's, "
        "else this machine's)",
    )
    parser.add_argument(
        "--store",
        metavar="DIR",
        help="the content-addressed store (default: $WHEELBARROW_STORE, else the "
        "user cache directory)",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="with a uv, Poetry or Pipenv lock: deploy its dev dependencies too",
    )
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME",
        help="with a uv or Poetry lock: deploy the dependency group NAME too (repeatable)",
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME",
        help="with a uv or Poetry lock: deploy the project's extra NAME (repeatable)",
    )
    if index:
        parser.add_argument("-i", "--index-url", metavar="URL", help="the package index")
        parser.add_argument(
            "--extra-index-url",
            metavar="URL",
            action="append",
            default=[],
            help="another index to search (repeatable)",
        )
        parser.add_argument(
            "-f",
            "--find-links",
            metavar="PATH_OR_URL",
            action="append",
            default=[],
            help="a directory or page of distributions (repeatable)",
        )
        parser.add_argument("--no-index", action="store_true", help="use no package index")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wheelbarrow``."""
    parser = argparse.ArgumentParser(
        prog="wheelbarrow",
        description="Lock, build and install wheelhouses for Python apps: fast, offline, "
        "reproducible.",
    )
    parser.add_argument("--version", action="version", version=f"wheelbarrow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("lock", help="resolve the app's requirements for a target into pylock.toml")
    _common(p)
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="resolve every package afresh, ignoring the versions the old lock pins",
    )
    p.add_argument(
        "--upgrade-package",
        action="append",
        default=[],
        metavar="NAME",
        help="resolve NAME afresh, keeping the other pins (repeatable)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a pylock.toml that another tool wrote",
    )

    p = sub.add_parser("build", help="fill the wheelhouse for the lock and target")
    _common(p)
    p.add_argument(
        "--jobs", type=_positive, default=8, metavar="N", help="parallel downloads (default 8)"
    )
    p.add_argument(
        "--output", metavar="DIR", help="also export the wheelhouse (wheels + simple/ index) to DIR"
    )
    p.add_argument(
        "--no-binary",
        action="append",
        default=[],
        metavar="NAME",
        help="build NAME from source even if a wheel exists (repeatable; :all: for all)",
    )
    p.add_argument(
        "--only-binary",
        action="append",
        default=[],
        metavar="NAME",
        help="never build NAME from source (repeatable; :all: for all)",
    )
    p.add_argument(
        "--repair",
        choices=("auto", "never"),
        help="repair built wheels with auditwheel (auto, the default) or keep them "
        "as built, for a target of the same base (never)",
    )
    p.add_argument(
        "--build-jobs",
        type=_positive,
        metavar="N",
        help="source builds at once (default: the number of cores)",
    )
    p.add_argument(
        "--python-executable",
        metavar="PATH",
        help="the interpreter source builds use (default: found on PATH)",
    )

    p = sub.add_parser(
        "install", help="create a ready-to-run environment from the wheelhouse, offline"
    )
    _common(p, index=False)
    p.add_argument("--into", required=True, metavar="DIR", help="where the environment goes")
    p.add_argument(
        "--python-executable",
        metavar="PATH",
        help="the interpreter to build the environment with (default: found on PATH)",
    )
    p.add_argument(
        "--link-mode",
        choices=("hardlink", "copy"),
        default="hardlink",
        help="share files with the store: reflinks where the filesystem has them, else hard "
        "links (default, hardlink), or copy them (copy)",
    )

    p = sub.add_parser("image", help="write the app's OCI image on a base image, no daemon needed")
    _common(p, index=False)
    p.add_argument(
        "--base",
        required=True,
        metavar="REF",
        help="the base image: a registry reference, or oci:DIR:TAG for an OCI layout",
    )
    p.add_argument("--tag", required=True, metavar="REF", help="the new image's reference")
    p.add_argument("--oci", metavar="DIR[:TAG]", help="write an OCI image layout")
    p.add_argument("--docker-archive", metavar="FILE", help="write a docker-archive (docker load)")
    p.add_argument(
        "--push",
        action="store_true",
        help="push to the registry in --tag (only missing blobs; tagged last)",
    )
    p.add_argument("--source", metavar="URL", help="the image's source label")
    p.add_argument(
        "--python-executable",
        metavar="PATH",
        help="the interpreter to build the environment with (default: found on PATH)",
    )

    p = sub.add_parser(
        "dockerfile",
        help="write a two-stage Dockerfile: a builder fills /wheelhouse, the app installs offline",
    )
    from wheelbarrow.cli import dockerfile as dockerfile_command

    dockerfile_command.add_arguments(p)

    from wheelbarrow.cli import store as store_command
    from wheelbarrow.cli import verify as verify_command

    p = sub.add_parser(
        "verify", help="check the whole store (blobs, wheelhouses, environments); --repair mends it"
    )
    verify_command.add_arguments(p)

    p = sub.add_parser("store", help="what the store holds (du) and removing what is unused (gc)")
    store_command.add_arguments(p)

    p = sub.add_parser("serve", help="serve the app's wheelhouse as a package index on 127.0.0.1")
    _common(p, index=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``wheelbarrow``; returns the exit code."""
    args = build_parser().parse_args(argv)
    from wheelbarrow.cli import render

    try:
        if args.command == "lock":
            from wheelbarrow.cli.lock import run
        elif args.command == "build":
            from wheelbarrow.cli.build import run
        elif args.command == "install":
            from wheelbarrow.cli.install import run
        elif args.command == "image":
            from wheelbarrow.cli.image import run
        elif args.command == "dockerfile":
            from wheelbarrow.cli.dockerfile import run
        elif args.command == "verify":
            from wheelbarrow.cli.verify import run
        elif args.command == "store":
            from wheelbarrow.cli.store import run
        else:
            from wheelbarrow.cli.serve import run
        return run(args)
    except (WheelbarrowError, OSError) as exc:
        # A full disk is said as such, even where the library wrapped it in
        # another error (whose hint would then be wrong).
        from wheelbarrow.cli import diskfull

        if (full := diskfull.disk_full_cause(exc)) is not None:
            exc = diskfull.disk_full_error(full, diskfull.places(args))
        elif not isinstance(exc, WheelbarrowError):
            raise
        render.error(exc, json_mode=args.json)
        return exc.exit_code
    except KeyboardInterrupt:
        render.interrupted()
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
