"""The CPU a build depends on: flags asking for the build machine's CPU (``-march=native``),
this machine's instruction set, and a build key's part for them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# Build flags that make a compiler target the machine it runs on (and numpy's and scipy's
# meson option that does the same: -Dcpu-baseline=native).
_NATIVE = re.compile(r"(?:-march|-mcpu|-mtune|target-cpu|cpu-baseline)=native\b|-xHost\b")
# The environment variables compilers and build backends read flags from.
FLAG_VARIABLES = (
    "CFLAGS", "CXXFLAGS", "CPPFLAGS", "FFLAGS", "FCFLAGS", "LDFLAGS", "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS", "CMAKE_ARGS",
)  # fmt: skip
# /proc/cpuinfo flags that say which instructions run (not bugs, power or virtualisation).
_ISA_FLAGS = frozenset(
    {"sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "sse4a", "popcnt", "cx16", "lahf_lm",
     "abm", "avx", "avx2", "fma", "fma4", "f16c", "bmi1", "bmi2", "movbe", "xsave", "adx",
     "aes", "pclmulqdq", "sha_ni", "rdrand", "rdseed", "vaes", "vpclmulqdq", "gfni", "xop",
     "tbm", "clflushopt", "clwb", "movdiri", "movdir64b", "serialize", "rdpid", "xsavec",
     "xsaveopt", "xsaves", "fsgsbase", "waitpkg", "cldemote", "rtm", "hle", "pku", "lwp",
     "clzero", "rdtscp", "3dnow", "3dnowext", "mmx", "mmxext", "fxsr", "cmov", "cx8"}
)  # fmt: skip


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The instruction set flags of the first CPU in /proc/cpuinfo's text.

    x86's ``flags`` (kept: the ones that say which instructions run, every
    ``avx*`` and ``amx*``), or aarch64's ``Features`` (all of them).
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags":
            return frozenset(
                f for f in value.split() if f in _ISA_FLAGS or f.startswith(("avx", "amx"))
            )
        if key == "Features":
            return frozenset(value.split())
    return frozenset()


def host_cpu_features(path: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The running machine's instruction set flags (empty where /proc/cpuinfo is not)."""
    try:
        return parse_cpu_flags(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return frozenset()


def asks_for_native(values: Iterable[str]) -> bool:
    """Whether any of these build flag values targets the build machine (-march=native)."""
    return any(_NATIVE.search(v) for v in values)


def native_flags(
    env: Mapping[str, str],
    config_settings: Mapping[str, str | Sequence[str]],
    environ: Mapping[str, str],
) -> bool:
    """Whether a build's settings (its ``env`` and config settings) or the calling
    environment's flag variables ask the compiler for the build machine's CPU."""
    values = [*env.values(), *(environ.get(v, "") for v in FLAG_VARIABLES if v not in env)]
    for value in config_settings.values():
        values += [value] if isinstance(value, str) else list(value)
    return asks_for_native(values)


def cpu_digest(features: Iterable[str]) -> str:
    """A short digest of an instruction set: equal sets, equal digests."""
    return hashlib.sha256(" ".join(sorted(set(features))).encode()).hexdigest()[:16]


def cpu_key_part(
    env: Mapping[str, str],
    config_settings: Mapping[str, str | Sequence[str]],
    environ: Mapping[str, str],
    features: Iterable[str],
) -> str | None:
    """The CPU's part of a build's key, known before building: the digest of ``features``
    when the build is asked for the build machine's CPU, else None (no part)."""
    if not native_flags(env, config_settings, environ):
        return None
    return cpu_digest(features)


def cpu_problem(needs: Iterable[str], features: Iterable[str]) -> str | None:
    """Why a wheel whose code needs these /proc/cpuinfo flags cannot be reused on a CPU
    with ``features``, or None when it can."""
    missing = sorted(set(needs) - set(features))
    if not missing:
        return None
    return f"this machine's CPU lacks {', '.join(missing)}, which the cached wheel's code needs"


def recorded_cpu_needs(recorded: object) -> tuple[str, ...]:
    """The /proc/cpuinfo flags a recorded finding (:meth:`PortabilityFinding.as_json`) needs."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("needs_cpuinfo"), list):
        return ()
    return tuple(str(flag) for flag in recorded["needs_cpuinfo"])
