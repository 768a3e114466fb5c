"""The command line: parse arguments, call the core, render results and errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from wheelbarrow import __version__
from wheelbarrow._core.errors import WheelbarrowError

EXIT_OK = 0
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wheelbarrow``."""
    from wheelbarrow.cli import arguments
    from wheelbarrow.cli import dockerfile as dockerfile_command
    from wheelbarrow.cli import store as store_command
    from wheelbarrow.cli import verify as verify_command

    parser = argparse.ArgumentParser(
        prog="wheelbarrow",
        description="Lock, build and install wheelhouses for Python apps: fast, offline, "
        "reproducible.",
    )
    parser.add_argument("--version", action="version", version=f"wheelbarrow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = [
        (
            "lock",
            "resolve the app's requirements for a target into pylock.toml",
            arguments.lock_arguments,
        ),
        ("build", "fill the wheelhouse for the lock and target", arguments.build_arguments),
        (
            "key",
            "print the wheelhouse key, offline from local files (for CI cache keys)",
            arguments.key_arguments,
        ),
        (
            "install",
            "create a ready-to-run environment from the wheelhouse, offline",
            arguments.install_arguments,
        ),
        (
            "image",
            "write the app's OCI image on a base image, no daemon needed",
            arguments.image_arguments,
        ),
        (
            "dockerfile",
            "write a two-stage Dockerfile: a builder fills /wheelhouse, the app installs offline",
            dockerfile_command.add_arguments,
        ),
        (
            "verify",
            "check the whole store (blobs, wheelhouses, environments); --repair mends it",
            verify_command.add_arguments,
        ),
        (
            "store",
            "what the store holds (du) and removing what is unused (gc)",
            store_command.add_arguments,
        ),
        (
            "serve",
            "serve the app's wheelhouse as a package index on 127.0.0.1",
            arguments.serve_arguments,
        ),
        (
            "push",
            "upload the app's wheelhouse to a remote store (blobs first, manifest last)",
            arguments.transfer_arguments,
        ),
        (
            "pull",
            "fill the store with the app's wheelhouse from a remote store",
            arguments.transfer_arguments,
        ),
    ]
    for name, help_text, add_arguments in commands:
        add_arguments(sub.add_parser(name, help=help_text))
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
        elif args.command == "key":
            from wheelbarrow.cli.key import run
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
        elif args.command == "push":
            from wheelbarrow.cli.push import run
        elif args.command == "pull":
            from wheelbarrow.cli.pull import run
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
