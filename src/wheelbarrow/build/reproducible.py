"""What a backend is given so that the same source builds the same wheel anywhere."""

from __future__ import annotations

import calendar
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelbarrow.build.normalise import ZIP_EPOCH_MIN

__all__ = [
    "DEFAULT_EPOCH",
    "PrefixMap",
    "archive_epoch",
    "prefix_maps",
    "reproducible_environ",
]

# For trees with no archive to date them (a directory, a checkout, whose files' times are
# when they were copied): the earliest time a zip can hold, so wheels of such trees carry
# no time of their own. A package's build settings may set SOURCE_DATE_EPOCH instead.
DEFAULT_EPOCH = ZIP_EPOCH_MIN
# Where each build-specific directory appears to be in what the compilers write.
SOURCE_PREFIX = "/wheelbarrow/src"
BUILD_ENV_PREFIX = "/wheelbarrow/build-env"
STORE_PREFIX = "/wheelbarrow/store"
_C_FLAGS = ("CFLAGS", "CXXFLAGS", "FFLAGS", "FCFLAGS")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefixMap:
    """A directory of this build (``real``) and the fixed name compilers write instead."""

    real: str
    fixed: str


def archive_epoch(archive: Path) -> int:
    """``SOURCE_DATE_EPOCH`` for a build of the sdist ``archive``: its newest member's time.

    The times are the archive's own, the same wherever and whenever it is
    unpacked (unlike the unpacked tree's, which patches touch); an archive whose
    times are all zero, or that cannot be read (the build that unpacked it will
    say why), gets :data:`DEFAULT_EPOCH`.
    """
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                # Zip times name no zone; read as UTC, they give the same number everywhere.
                newest = max(
                    (calendar.timegm((*info.date_time, 0, 0, 0)) for info in zipped.infolist()),
                    default=0,
                )
        else:
            with tarfile.open(archive, "r:*") as tar:
                newest = max((int(info.mtime) for info in tar), default=0)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError):
        return DEFAULT_EPOCH
    return max(newest, DEFAULT_EPOCH)


def prefix_maps(*, source: Path, build_env: Path, store: Path | None) -> tuple[PrefixMap, ...]:
    """The build's directories, each under its real and resolved names, most specific last.

    GCC, clang and rustc apply the last matching map, so the source tree and
    the build environment (both may lie inside the store) come after the store.
    """
    maps: list[PrefixMap] = []
    named = ((store, STORE_PREFIX), (build_env, BUILD_ENV_PREFIX), (source, SOURCE_PREFIX))
    for path, fixed in named:
        if path is None:
            continue
        for real in dict.fromkeys((str(path), str(path.resolve()))):
            maps.append(PrefixMap(real=real, fixed=fixed))
    return tuple(maps)


def reproducible_environ(
    env: Mapping[str, str],
    *,
    epoch: int,
    maps: Sequence[PrefixMap],
    own: Mapping[str, str],
) -> dict[str, str]:
    """``env`` with what makes a build reproducible, the package's own settings (``own``) kept.

    ``SOURCE_DATE_EPOCH`` (``epoch``) and ``PYTHONHASHSEED=0`` are set unless the
    package's build settings set them; a caller's value is replaced, since the build
    key does not record the caller's environment. The prefix maps are appended to
    the flags already there (the caller's or the package's), never replacing them:
    ``-ffile-prefix-map`` (GCC 8 and clang 10 on: it covers the debug, macro and
    coverage maps) in CFLAGS, CXXFLAGS, FFLAGS and FCFLAGS, ``--remap-path-prefix``
    in rustc's flags. Paths with whitespace are left out: flag variables are split
    on it.
    """
    out = dict(env)
    out["SOURCE_DATE_EPOCH"] = own.get("SOURCE_DATE_EPOCH", str(epoch))
    out["PYTHONHASHSEED"] = own.get("PYTHONHASHSEED", "0")
    usable = [m for m in maps if not any(c.isspace() for c in m.real)]
    c_flags = " ".join(f"-ffile-prefix-map={m.real}={m.fixed}" for m in usable)
    rust_flags = [f"--remap-path-prefix={m.real}={m.fixed}" for m in usable]
    if not usable:
        return out
    for name in _C_FLAGS:
        out[name] = _appended(out.get(name), c_flags, " ")
    # cargo reads CARGO_ENCODED_RUSTFLAGS (0x1f-separated) over RUSTFLAGS when it is set.
    if "CARGO_ENCODED_RUSTFLAGS" in out:
        out["CARGO_ENCODED_RUSTFLAGS"] = _appended(
            out["CARGO_ENCODED_RUSTFLAGS"], "\x1f".join(rust_flags), "\x1f"
        )
    else:
        out["RUSTFLAGS"] = _appended(out.get("RUSTFLAGS"), " ".join(rust_flags), " ")
    return out


def _appended(flags: str | None, more: str, separator: str) -> str:
    return f"{flags}{separator}{more}" if flags else more
