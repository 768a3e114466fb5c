"""The command line: parse arguments, call the core, render results and errors."""

from __future__ import annotations

import importlib
import os
import sys

from wheelbarrow import __version__
from wheelbarrow._core.errors import WheelbarrowError

# argparse is imported where a parser is built: the warm install's plain command line is
# read without it (cli/quickparse.py). The name, not typing's, keeps mypy's checks.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_INTERRUPTED = 130


# Each command: its name (also its module, cli/<name>.py, holding ``run``), its help, and
# where its options are added (cli/<module>.py, <function>).
COMMANDS: tuple[tuple[str, str, str, str], ...] = (
    (
        "lock",
        "resolve the app's requirements for a target into pylock.toml",
        "arguments",
        "lock_arguments",
    ),
    ("build", "fill the wheelhouse for the lock and target", "arguments", "build_arguments"),
    (
        "key",
        "print the wheelhouse key, offline from local files (for CI cache keys)",
        "arguments",
        "key_arguments",
    ),
    (
        "install",
        "create a ready-to-run environment from the wheelhouse, offline",
        "arguments",
        "install_arguments",
    ),
    (
        "image",
        "write the app's OCI image on a base image, no daemon needed",
        "arguments",
        "image_arguments",
    ),
    (
        "dockerfile",
        "write a two-stage Dockerfile: a builder fills /wheelhouse, the app installs offline",
        "dockerfile",
        "add_arguments",
    ),
    (
        "sbom",
        "print the software bill of materials (CycloneDX) of the app's wheelhouse",
        "sbom",
        "add_arguments",
    ),
    (
        "verify",
        "check the whole store (blobs, wheelhouses, environments); --repair mends it",
        "verify",
        "add_arguments",
    ),
    (
        "store",
        "what the store holds (du) and removing what is unused (gc)",
        "store",
        "add_arguments",
    ),
    (
        "serve",
        "serve the app's wheelhouse as a package index on 127.0.0.1",
        "arguments",
        "serve_arguments",
    ),
    (
        "push",
        "upload the app's wheelhouse to a remote store (blobs first, manifest last)",
        "arguments",
        "transfer_arguments",
    ),
    (
        "pull",
        "fill the store with the app's wheelhouse from a remote store",
        "arguments",
        "transfer_arguments",
    ),
)


def _columns() -> int:
    """The terminal's width as :func:`shutil.get_terminal_size` gives it: ``COLUMNS``, else
    the width of the terminal on standard output, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def _formatter() -> type[argparse.HelpFormatter]:
    """argparse's help formatter, as wide as the terminal as argparse makes it, but without
    importing :mod:`shutil` for it: argparse makes a formatter for every option it adds, and
    that import alone is a tenth of a no-op build's time."""
    import argparse

    class Formatter(argparse.HelpFormatter):
        def __init__(
            self,
            prog: str,
            indent_increment: int = 2,
            max_help_position: int = 24,
            width: int | None = None,
        ) -> None:
            super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)

    return Formatter


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``wheelbarrow``: every command, or only ``command`` when named.

    A command named on the command line is the only one parsed, so the others are
    not added and their modules not imported: ``wheelbarrow key`` runs in a CI
    job before anything else, so its start-up counts (bench/key.py).
    """
    import argparse

    formatter = _formatter()
    parser = argparse.ArgumentParser(
        prog="wheelbarrow",
        description="Lock, build and install wheelhouses for Python apps: fast, offline, "
        "reproducible.",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"wheelbarrow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, module, function in COMMANDS:
        if command is None or command == name:
            add_arguments: Callable[[argparse.ArgumentParser], None] = getattr(
                importlib.import_module(f"wheelbarrow.cli.{module}"), function
            )
            add_arguments(sub.add_parser(name, help=help_text, formatter_class=formatter))
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if it is one (``wheelbarrow`` has no options before it but
    ``--help`` and ``--version``)."""
    names = {name for name, *_ in COMMANDS}
    return argv[0] if argv and argv[0] in names else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``wheelbarrow``; returns the exit code."""
    from wheelbarrow.cli import quickparse

    argv = sys.argv[1:] if argv is None else list(argv)
    args = quickparse.parse(argv) or build_parser(_command_in(argv)).parse_args(argv)
    # The renderer is imported when it is needed, not before: a no-op build prints one line.
    try:
        run: Callable[[argparse.Namespace], int] = importlib.import_module(
            f"wheelbarrow.cli.{args.command}"
        ).run
        return run(args)
    except (WheelbarrowError, OSError) as exc:
        # A full disk is said as such, even where the library wrapped it in
        # another error (whose hint would then be wrong).
        from wheelbarrow.cli import diskfull, render

        if (full := diskfull.disk_full_cause(exc)) is not None:
            exc = diskfull.disk_full_error(full, diskfull.places(args))
        elif not isinstance(exc, WheelbarrowError):
            raise
        render.error(exc, json_mode=args.json)
        return exc.exit_code
    except KeyboardInterrupt:
        from wheelbarrow.cli import render

        render.interrupted()
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
