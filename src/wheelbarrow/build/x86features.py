"""x86-64 instruction set extensions: the psABI levels, and their names as people and
/proc/cpuinfo write them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wheelbarrow.app.config import BASELINES, Baseline

# The x86-64 psABI micro-architecture levels in iced-x86's CPUID feature names: what each
# level adds to the one before. (LAHF-SAHF of v2 has no name of its own there.)
X86_LEVELS: Mapping[Baseline, tuple[str, ...]] = {
    "x86-64": (),
    "x86-64-v2": ("CMPXCHG16B", "POPCNT", "SSE3", "SSSE3", "SSE4_1", "SSE4_2"),
    "x86-64-v3": ("AVX", "AVX2", "BMI1", "BMI2", "F16C", "FMA", "LZCNT", "MOVBE", "XSAVE"),
    "x86-64-v4": ("AVX512F", "AVX512BW", "AVX512CD", "AVX512DQ", "AVX512VL"),
}
# Extensions in no level, which a CPU of any level may lack. Everything else iced-x86
# names is in x86-64 itself (SSE2, CMOV, ...), is a hint older CPUs run as a NOP
# (endbr64, prefetchw), or is a system instruction no extension module contains.
_X86_OTHERS = (
    "ADX", "AES", "PCLMULQDQ", "SHA", "SHA512", "SM3", "SM4", "RDRAND", "RDSEED", "RDPID",
    "GFNI", "VAES", "VPCLMULQDQ", "AVX_VNNI", "AVX_VNNI_INT8", "AVX_VNNI_INT16", "AVX_IFMA",
    "AVX_NE_CONVERT", "AVX512_BF16", "AVX512_BITALG", "AVX512_FP16", "AVX512_IFMA",
    "AVX512_VBMI", "AVX512_VBMI2", "AVX512_VNNI", "AVX512_VP2INTERSECT", "AVX512_VPOPCNTDQ",
    "AVX512ER", "AVX512PF", "AVX512_4FMAPS", "AVX512_4VNNIW", "AMX_BF16", "AMX_COMPLEX",
    "AMX_FP16", "AMX_INT8", "AMX_TILE", "SSE4A", "XOP", "FMA4", "TBM", "D3NOW", "D3NOWEXT",
    "CLFLUSHOPT", "CLWB", "MOVDIRI", "MOVDIR64B", "SERIALIZE", "CMPCCXADD", "RAO_INT",
    "XSAVEC", "XSAVEOPT", "XSAVES", "FSGSBASE", "WAITPKG", "CLDEMOTE", "UINTR", "RTM",
    "HLE", "PKU", "LWP", "MONITORX", "CLZERO", "RDPRU", "PTWRITE", "TSXLDTRK", "RDTSCP",
)  # fmt: skip
# How a person writes them: the names of GCC's -m options, mostly.
_SHOWN = {
    "SSE4_1": "SSE4.1", "SSE4_2": "SSE4.2", "SSE4A": "SSE4a", "CMPXCHG16B": "CX16",
    "SHA": "SHA-NI", "D3NOW": "3DNow!", "D3NOWEXT": "3DNow!+",
}  # fmt: skip
# /proc/cpuinfo's name of each, where it is not the lower-case feature name.
_CPUINFO = {
    "SSE3": "pni", "CMPXCHG16B": "cx16", "LZCNT": "abm", "SHA": "sha_ni",
    "AVX512_IFMA": "avx512ifma", "AVX512_VBMI": "avx512vbmi", "D3NOW": "3dnow",
    "D3NOWEXT": "3dnowext",
}  # fmt: skip
_LEVEL_OF = {name: level for level, names in X86_LEVELS.items() for name in names}
_ORDER = {name: i for i, name in enumerate([*_LEVEL_OF, *_X86_OTHERS])}
# Every extension the code check looks for, by iced-x86's CPUID feature name.
KNOWN_FEATURES = (*_LEVEL_OF, *_X86_OTHERS)


def shown(feature: str) -> str:
    """A CPUID feature name as a person writes it: ``AVX512F`` is ``AVX-512F``."""
    if feature in _SHOWN:
        return _SHOWN[feature]
    if feature.startswith("AVX512"):
        return "AVX-512" + feature.removeprefix("AVX512").replace("_", " ").rstrip()
    return feature.replace("_", "-")


def cpuinfo_flag(feature: str) -> str:
    """The /proc/cpuinfo flag of a CPUID feature name: ``SSE3`` is ``pni``."""
    return _CPUINFO.get(feature, feature.lower())


def level_needed(features: Iterable[str]) -> str:
    """The lowest x86-64 level that has all of ``features``, or ``"more than x86-64-v4"``."""
    worst = 0
    for name in features:
        level = _LEVEL_OF.get(name)
        if level is None:
            return "more than x86-64-v4"
        worst = max(worst, BASELINES.index(level))
    return BASELINES[worst]


def beyond(features: Iterable[str], baseline: Baseline) -> list[str]:
    """The features not in ``baseline`` (or a level below it), in the order the report uses."""
    allowed = {f for level in BASELINES[: BASELINES.index(baseline) + 1] for f in X86_LEVELS[level]}
    return sort_features(f for f in features if f not in allowed)


def sort_features(features: Iterable[str]) -> list[str]:
    """Features by level, then in the order of the tables above."""
    return sorted(set(features), key=lambda f: (_ORDER.get(f, len(_ORDER)), f))
