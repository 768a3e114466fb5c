"""Rust for source builds: the oldest Rust a tree's crates accept, and the rustc here."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from wheelbarrow._core.errors import ToolError
from wheelbarrow._core.runner import Runner
from wheelbarrow.system.toolchain import LANGUAGE_SKIP_DIRS, MAX_LANGUAGE_FILES, Which

__all__ = ["RUST_UPGRADE", "RustVersion", "required_rust_version", "rustc_version"]

RUST_UPGRADE = (
    "rustup update, or on Debian 12 apt-get install rustc-web cargo-web "
    "(a newer Rust, installed as rustc and cargo in place of Debian's)"
)
"""The two ways to a newer Rust: rustup's toolchains, or Debian 12's rustc-web and cargo-web."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RustVersion:
    """The oldest Rust a source tree's crates accept: ``rust-version`` of a Cargo.toml.

    ``text`` is as written (``"1.70"``), ``manifest`` the Cargo.toml that says it,
    relative to the tree.
    """

    version: Version
    text: str
    manifest: Path


_RUSTC_VERSION = re.compile(r"^rustc (\d+\.\d+(?:\.\d+)?)")


def required_rust_version(root: Path, *, max_files: int = MAX_LANGUAGE_FILES) -> RustVersion | None:
    """The highest ``rust-version`` of the crates in ``root``, None when none says one.

    Read from ``[package]`` and ``[workspace.package]`` (what members inherit
    with ``rust-version.workspace = true``). Vendored crates (a directory with
    ``.cargo-checksum.json``) are left out: not all of them are built here, and
    cargo names those that are. A Cargo.toml that cannot be read is cargo's to report.
    """
    best: RustVersion | None = None
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if ".cargo-checksum.json" in filenames:
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in LANGUAGE_SKIP_DIRS and d != "target")
        seen += len(filenames)
        if "Cargo.toml" in filenames:
            manifest = Path(dirpath) / "Cargo.toml"
            for text in _rust_versions(manifest):
                try:
                    version = Version(text)
                except InvalidVersion:
                    continue
                if best is None or version > best.version:
                    best = RustVersion(
                        version=version, text=text, manifest=manifest.relative_to(root)
                    )
        if seen >= max_files:
            break
    return best


def _rust_versions(manifest: Path) -> list[str]:
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    tables = [data.get("package"), (data.get("workspace") or {}).get("package")]
    return [
        value
        for table in tables
        if isinstance(table, dict) and isinstance(value := table.get("rust-version"), str)
    ]


def rustc_version(
    *, which: Which, runner: Runner, rustc: str = "rustc", cwd: Path | None = None
) -> Version | None:
    """The version ``rustc --version`` reports (``1.95.0``), None when rustc is absent or fails.

    Run from ``cwd`` (the source tree), so a rustup ``rust-toolchain.toml`` there counts.
    """
    if which(rustc) is None:
        return None
    try:
        result = runner([rustc, "--version"], cwd=cwd)
    except ToolError:
        return None
    match = _RUSTC_VERSION.match(result.stdout.strip()) if result.returncode == 0 else None
    return Version(match.group(1)) if match else None
