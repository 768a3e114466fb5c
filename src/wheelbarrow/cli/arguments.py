"""The command line's options, command by command (``build_parser`` assembles them)."""

from __future__ import annotations

import argparse


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def common_options(
    parser: argparse.ArgumentParser, *, index: bool = True, platform_help: str | None = None
) -> None:
    """The app, target, store, output and lock-part options every app command takes; the index
    options too unless ``index`` is False. ``platform_help`` says what ``--platform`` means
    where it means more than the target's manylinux tag."""
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
        help=platform_help
        or "target platform, e.g. manylinux_2_28_x86_64 (default: the lock's, else this machine's)",
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


def lock_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow lock``."""
    common_options(parser)
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="resolve every package afresh, ignoring the versions the old lock pins",
    )
    parser.add_argument(
        "--upgrade-package",
        action="append",
        default=[],
        metavar="NAME",
        help="resolve NAME afresh, keeping the other pins (repeatable)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a pylock.toml that another tool wrote",
    )


def build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow build``."""
    common_options(parser)
    parser.add_argument(
        "--jobs", type=positive, default=8, metavar="N", help="parallel downloads (default 8)"
    )
    parser.add_argument(
        "--output", metavar="DIR", help="also export the wheelhouse (wheels + simple/ index) to DIR"
    )
    binary_options(parser)
    parser.add_argument(
        "--build-jobs",
        type=positive,
        metavar="N",
        help="source builds at once (default: the number of cores)",
    )
    parser.add_argument(
        "--python-executable",
        metavar="PATH",
        help="the interpreter source builds use (default: found on PATH)",
    )
    remote_option(parser)
    parser.add_argument(
        "--push", action="store_true", help="upload the wheelhouse to --remote afterwards"
    )
    parser.add_argument(
        "--cluster",
        metavar="URL",
        help="run the source builds on a Dask cluster, tcp://SCHEDULER:8786, sharing their "
        "inputs and wheels through --remote (default: $WHEELBARROW_CLUSTER; none: build here)",
    )


def binary_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose what is built from source, and how: part of the wheelhouse key."""
    parser.add_argument(
        "--no-binary",
        action="append",
        default=[],
        metavar="NAME",
        help="build NAME from source even if a wheel exists (repeatable; :all: for all)",
    )
    parser.add_argument(
        "--only-binary",
        action="append",
        default=[],
        metavar="NAME",
        help="never build NAME from source (repeatable; :all: for all)",
    )
    parser.add_argument(
        "--repair",
        choices=("auto", "never"),
        help="repair built wheels with auditwheel (auto, the default) or keep them "
        "as built, for a target of the same base (never)",
    )


def key_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow key``: those the wheelhouse key depends on."""
    common_options(parser, index=False)
    binary_options(parser)


def install_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow install``."""
    common_options(parser, index=False)
    parser.add_argument("--into", required=True, metavar="DIR", help="where the environment goes")
    parser.add_argument(
        "--python-executable",
        metavar="PATH",
        help="the interpreter to build the environment with (default: found on PATH)",
    )
    parser.add_argument(
        "--link-mode",
        choices=("shared", "hardlink", "copy"),
        default="shared",
        help="shared (default): a small environment of its own that runs on the store's "
        "read-only packages; hardlink: a clone of them, by reflinks where the filesystem has "
        "them, else hard links; copy: a copy of them",
    )


def image_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow image``."""
    common_options(
        parser,
        index=False,
        platform_help="the image's platforms, e.g. linux/amd64,linux/arm64: one image for each, "
        "on the base's image for it, in an index (each platform's wheelhouse built first, "
        "`wheelbarrow build --platform manylinux_2_M_ARCH`); or a manylinux tag, as for build "
        "(default: the lock's target)",
    )
    parser.add_argument(
        "--base",
        required=True,
        metavar="REF",
        help="the base image: a registry reference, or oci:DIR:TAG for an OCI layout",
    )
    parser.add_argument("--tag", required=True, metavar="REF", help="the new image's reference")
    parser.add_argument("--oci", metavar="DIR[:TAG]", help="write an OCI image layout")
    parser.add_argument(
        "--docker-archive", metavar="FILE", help="write a docker-archive (docker load)"
    )
    parser.add_argument(
        "--push",
        action="store_true",
        help="push to the registry in --tag (only missing blobs; tagged last)",
    )
    parser.add_argument("--source", metavar="URL", help="the image's source label")
    parser.add_argument(
        "--compression",
        choices=("gzip", "zstd"),
        default="gzip",
        help="how the new layers are compressed: gzip (default, read by every runtime) or zstd "
        "(smaller, faster; needs containerd 1.5+, podman 3+ or Docker 23+)",
    )
    parser.add_argument(
        "--sbom",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="attach the image's CycloneDX SBOM as an OCI referrer of its manifest, in the "
        "layout and the registry (default: on)",
    )
    parser.add_argument(
        "--python-executable",
        metavar="PATH",
        help="the interpreter to build the environment with (default: found on PATH)",
    )


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow serve``."""
    common_options(parser, index=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)


def remote_option(parser: argparse.ArgumentParser) -> None:
    """The ``--remote`` option: a store shared by machines."""
    parser.add_argument(
        "--remote",
        metavar="URL",
        help="a remote store shared by machines, s3://BUCKET/PREFIX or oci://REGISTRY/REPOSITORY "
        "(default: $WHEELBARROW_REMOTE)",
    )


def transfer_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wheelbarrow push`` and ``wheelbarrow pull``."""
    common_options(parser, index=False)
    remote_option(parser)
    parser.add_argument(
        "--jobs", type=positive, default=8, metavar="N", help="parallel transfers (default 8)"
    )
