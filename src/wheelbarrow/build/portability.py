"""Portability of built code: instructions beyond the target's CPU baseline; the CPU a build used.

A wheel built with ``-march=native`` (or ``-mavx2``) runs only on CPUs like the
build machine's: elsewhere it stops with "Illegal instruction". Code that picks
its instructions at run time (ifuncs, GCC ``target_clones``, a
``__builtin_cpu_supports`` or ``cpuid`` check choosing a function, numpy's and
OpenBLAS's dispatch) is fine. :func:`inspect_wheel` tells them apart: it decodes
the x86-64 code of each extension module and shared library in the wheel,
notes which functions use which instruction set extensions, and walks from the
file's entry points (``PyInit_*``, the loader's init functions, a library's
API as the wheel's other files call it) through calls, jumps, taken addresses
and pointer tables, stopping at functions that look at the CPU: what they
refer to counts as chosen by that look. Extensions used by code reached
without passing such a function, beyond the target's baseline, are the finding.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import re
import struct
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.text import plural

# What the check compares code against: settings of the app (see app/config.py).
from wheelbarrow.app.config import (
    BASELINES,
    DEFAULT_BASELINE,
    Baseline,
    PortableMode,
)

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import Section


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

# Symbols whose use means a function looks at the CPU it runs on: GCC's data behind
# __builtin_cpu_supports and its initialiser, glibc's, and the auxiliary vector (hwcaps).
_CPU_SYMBOLS = frozenset(
    {"__cpu_model", "__cpu_features2", "__cpu_indicator_init", "__get_cpu_features",
     "__x86_get_cpu_features", "_dl_x86_get_cpu_features", "getauxval", "__getauxval"}
)  # fmt: skip
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 0x1, 0x2, 0x4
_STT_OBJECT, _STT_FUNC, _STT_GNU_IFUNC = 1, 2, 10
_STB_GLOBAL = 1
_R_X86_64_64, _R_X86_64_GLOB_DAT, _R_X86_64_JUMP_SLOT = 1, 6, 7
_R_X86_64_RELATIVE, _R_X86_64_IRELATIVE = 8, 37
_DT_NEEDED, _DT_INIT, _DT_FINI, _DT_SONAME = 1, 12, 13, 14
_NEVER = 1 << 64
_PLAIN, _FEATURES, _MEMORY, _BRANCH, _CPUID = range(5)  # what an instruction code may tell
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")


class NotPortableError(WheelbarrowError):
    """A built wheel's code needs more of the CPU than the target's baseline, and
    ``portable = "error"`` is set."""


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


# -- one ELF file ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeFinding:
    """What one ELF file's code asks of the CPU.

    ``unguarded`` are the extensions used by code that runs with no check of the
    CPU first (``functions`` names up to three such functions, ``count`` how
    many there are); ``guarded`` those used only by code chosen at run time.
    Feature names are iced-x86's (``AVX2``, ``AVX512F``, ``SSE4_1``).
    """

    unguarded: tuple[str, ...] = ()
    guarded: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ElfLinks:
    """What an ELF file imports and is called by: for choosing a library's entry points."""

    soname: str | None
    needed: tuple[str, ...]
    imports: frozenset[str]


def read_links(data: bytes) -> ElfLinks | None:
    """The SONAME, DT_NEEDED names and imported symbols of an x86-64 ELF file, else None."""
    elf = _open_elf(data)
    if elf is None:
        return None
    soname, needed = None, []
    dynamic = elf.get_section_by_name(".dynamic")
    dynstr = elf.get_section_by_name(".dynstr")
    if dynamic is not None and dynstr is not None:
        strings = dynstr.data()
        for tag, value in struct.iter_unpack("<qQ", dynamic.data()):
            if tag == _DT_NEEDED:
                needed.append(_cstring(strings, value))
            elif tag == _DT_SONAME:
                soname = _cstring(strings, value)
    imports: set[str] = set()
    dynsym = elf.get_section_by_name(".dynsym")
    if dynsym is not None:
        strings = elf.get_section(dynsym["sh_link"]).data()
        for at, _info, _other, shndx, _value, _size in struct.iter_unpack("<IBBHQQ", dynsym.data()):
            if shndx == 0 and at:
                imports.add(_cstring(strings, at))
    return ElfLinks(soname=soname, needed=tuple(needed), imports=frozenset(imports))


def inspect_elf(data: bytes, *, called: frozenset[str] | None = None) -> CodeFinding | None:
    """The CPU extensions an x86-64 ELF file's code uses, unguarded and guarded; else None.

    An extension module is entered by its ``PyInit_*`` function; a library by
    ``called``, the symbols of it that other files use (None: all it exports).
    Files for other machines, and files whose headers cannot be read, give None.
    """
    elf = _open_elf(data)
    if elf is None:
        return None
    return _Analysis(elf, called).run()


def _open_elf(data: bytes) -> ELFFile | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    if not data.startswith(b"\x7fELF"):
        return None
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or not elf.little_endian or elf["e_machine"] != "EM_X86_64":
            return None
        elf.num_sections()
    except (ELFError, struct.error, ValueError):
        return None
    return elf


def _cstring(blob: bytes, at: int) -> str:
    end = blob.find(b"\0", at)
    return blob[at : end if end >= 0 else len(blob)].decode("utf-8", "replace")


class _Spans:
    """Address ranges of some sections, for fast membership tests."""

    def __init__(self, sections: Iterable[Section]) -> None:
        spans = sorted((s["sh_addr"], s["sh_addr"] + s["sh_size"]) for s in sections)
        self.starts = [lo for lo, _ in spans]
        self.ends = [hi for _, hi in spans]

    def __contains__(self, address: int) -> bool:
        i = bisect.bisect_right(self.starts, address) - 1
        return i >= 0 and address < self.ends[i]


@dataclass(slots=True)
class _Function:
    start: int
    name: str | None = None
    features: set[str] = field(default_factory=set)
    codes: set[int] = field(default_factory=set)  # instruction codes that have features
    refs: set[int] = field(default_factory=set)
    probes: bool = False  # runs cpuid itself


class _Analysis:
    """Which functions use which extensions, and which run without a CPU check first."""

    def __init__(self, elf: ELFFile, called: frozenset[str] | None) -> None:
        self.elf = elf
        self.called = called
        sections = [s for s in elf.iter_sections() if s["sh_flags"] & _SHF_ALLOC and s["sh_addr"]]
        self.code_sections = [
            s for s in sections if s["sh_flags"] & _SHF_EXECINSTR and s["sh_type"] == "SHT_PROGBITS"
        ]
        self.data_sections = [s for s in sections if not s["sh_flags"] & _SHF_EXECINSTR]
        self.code = _Spans(self.code_sections)
        self.data = _Spans(self.data_sections)
        # Where data may say what the CPU has: written at run time, and not the GOT.
        self.state = _Spans(
            s
            for s in self.data_sections
            if s["sh_flags"] & _SHF_WRITE and not s.name.startswith(".got")
        )
        self.symbols = list(self._symbols())

    def _symbols(self) -> Iterator[tuple[str, int, int, bool]]:
        """(name, value, type, exported) of each defined symbol of .symtab and .dynsym."""
        for section in self.elf.iter_sections():
            if section["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
                continue
            dynamic = section["sh_type"] == "SHT_DYNSYM"
            strings = self.elf.get_section(section["sh_link"]).data()
            for at, info, other, shndx, value, _size in struct.iter_unpack(
                "<IBBHQQ", section.data()
            ):
                if shndx == 0 or value == 0:
                    continue
                # GLOBAL, DEFAULT or PROTECTED: WEAK ones are C++ inline functions and
                # template instances, which every user has a copy of.
                exported = dynamic and info >> 4 == _STB_GLOBAL and other & 0x3 in (0, 3)
                yield _cstring(strings, at), value, info & 0xF, exported

    def _relocations(self) -> Iterator[tuple[int, int, int, str | None]]:
        """(where, type, address it will hold, imported symbol) of each dynamic relocation."""
        symbols: list[tuple[str, int]] = []
        for section in self.elf.iter_sections():
            if section["sh_type"] != "SHT_RELA" or not section["sh_flags"] & _SHF_ALLOC:
                continue
            if not symbols and section["sh_link"]:
                dynsym = self.elf.get_section(section["sh_link"])
                strings = self.elf.get_section(dynsym["sh_link"]).data()
                symbols = [
                    (_cstring(strings, at), value if shndx else 0)
                    for at, _i, _o, shndx, value, _s in struct.iter_unpack("<IBBHQQ", dynsym.data())
                ]
            for offset, info, addend in struct.iter_unpack("<QQq", section.data()):
                kind, sym = info & 0xFFFFFFFF, info >> 32
                if kind in (_R_X86_64_RELATIVE, _R_X86_64_IRELATIVE):
                    yield offset, kind, addend, None
                elif kind in (_R_X86_64_64, _R_X86_64_GLOB_DAT, _R_X86_64_JUMP_SLOT):
                    if sym >= len(symbols):
                        continue
                    name, value = symbols[sym]
                    if value:
                        yield offset, kind, value + (addend if kind == _R_X86_64_64 else 0), None
                    else:
                        yield offset, kind, 0, name

    def _eh_frame_starts(self) -> list[int]:
        """Function starts from .eh_frame_hdr's search table: stripped files have it too."""
        hdr = self.elf.get_section_by_name(".eh_frame_hdr")
        if hdr is None:
            return []
        blob = hdr.data()
        # version 1, a 4-byte count, a table of datarel sdata4 pairs: what GNU ld writes.
        if len(blob) < 12 or blob[0] != 1 or blob[2] != 0x03 or blob[3] != 0x3B:
            return []
        (count,) = struct.unpack_from("<I", blob, 8)
        table = blob[12 : 12 + 8 * count]
        table = table[: len(table) - len(table) % 8]
        return [hdr["sh_addr"] + start for start, _fde in struct.iter_unpack("<ii", table)]

    def _functions(self) -> tuple[list[_Function], list[int], set[int], dict[int, str]]:
        """Functions by start address, their starts, ifunc resolvers, exported functions."""
        names: dict[int, str] = {}
        starts: set[int] = set()
        resolvers: set[int] = set()
        exported: dict[int, str] = {}
        for name, value, kind, is_exported in self.symbols:
            if kind not in (_STT_FUNC, _STT_GNU_IFUNC) or value not in self.code:
                continue
            starts.add(value)
            if value not in names or len(name) < len(names[value]):
                names[value] = name
            if kind == _STT_GNU_IFUNC:
                resolvers.add(value)  # an ifunc symbol's value is its resolver
            if is_exported:
                exported[value] = name
        starts.update(s for s in self._eh_frame_starts() if s in self.code)
        for section in self.code_sections:
            starts.add(section["sh_addr"])
            if section.name.startswith(".plt"):  # one 16-byte stub per imported function
                first = section["sh_addr"]
                starts.update(range(first, first + section["sh_size"], 16))
        order = sorted(starts)
        return [_Function(start=s, name=names.get(s)) for s in order], order, resolvers, exported

    def _decode(self, functions: list[_Function], order: list[int]) -> None:
        """Fill in each function's extensions and references, and whether it runs cpuid."""
        from iced_x86 import (
            Code,
            CpuidFeature,
            Decoder,
            FlowControl,
            Instruction,
            OpCodeInfo,
            OpCodeOperandKind,
        )

        wanted = {
            getattr(CpuidFeature, name): name
            for name in (*_LEVEL_OF, *_X86_OTHERS)
            if hasattr(CpuidFeature, name)
        }
        # Looked up by instruction code: a few thousand codes, millions of instructions.
        # tzcnt is `rep bsf`, which CPUs without BMI1 run as bsf: GCC emits it for every
        # target, relying on that.
        tzcnt = (Code.TZCNT_R16_RM16, Code.TZCNT_R32_RM32, Code.TZCNT_R64_RM64)
        features_of: dict[int, tuple[str, ...]] = {}
        branches = (
            FlowControl.CALL,
            FlowControl.UNCONDITIONAL_BRANCH,
            FlowControl.CONDITIONAL_BRANCH,
        )
        cpuid = Code.CPUID
        memory = {
            v for k, v in vars(OpCodeOperandKind).items() if "MEM" in k and isinstance(v, int)
        }
        kinds: dict[int, int] = {}  # code -> one of _PLAIN, _FEATURES, _MEMORY, _BRANCH, _CPUID

        def kind_of(instr: Instruction) -> int:
            code = instr.code
            found = tuple(wanted[f] for f in instr.cpuid_features() if f in wanted)
            if code in tzcnt:
                found = ()
            features_of[code] = found
            info = OpCodeInfo(code)
            if found:
                kind = _FEATURES
            elif instr.flow_control in branches:
                kind = _BRANCH
            elif code == cpuid:
                kind = _CPUID
            elif any(info.op_kind(i) in memory for i in range(info.op_count)):
                kind = _MEMORY
            else:
                kind = _PLAIN
            kinds[code] = kind
            return kind

        for section in self.code_sections:
            fn, following = functions[0], -1
            for instr in Decoder(64, section.data(), ip=section["sh_addr"]):
                kind = kinds.get(instr.code)
                if kind is None:
                    kind = kind_of(instr)
                if kind == _PLAIN:
                    continue  # most instructions: nothing to note
                ip = instr.ip
                if ip >= following:
                    index = bisect.bisect_right(order, ip) - 1
                    fn = functions[index]
                    following = order[index + 1] if index + 1 < len(order) else _NEVER
                if kind == _FEATURES:
                    fn.codes.add(instr.code)  # no call, jump or address of code among these
                elif kind == _MEMORY:
                    if instr.is_ip_rel_memory_operand:
                        fn.refs.add(instr.ip_rel_memory_address)
                elif kind == _BRANCH:
                    target = instr.near_branch_target
                    if not fn.start <= target < following:
                        fn.refs.add(target)
                else:
                    fn.probes = True
        for fn in functions:
            for used in fn.codes:
                fn.features.update(features_of[used])

    def run(self) -> CodeFinding:
        """Decode the code, then walk what runs with no CPU check from the entry points."""
        functions, order, resolvers, exported = self._functions()
        if not functions:
            return CodeFinding()
        self._decode(functions, order)
        pointers: list[tuple[int, int]] = []  # (where in data, the address it holds)
        imports: dict[int, str] = {}  # GOT slot -> the imported symbol it holds
        for offset, kind, target, name in self._relocations():
            if name is not None:
                imports[offset] = name
            else:
                pointers.append((offset, target))
                if kind == _R_X86_64_IRELATIVE:
                    resolvers.add(target)
        # Data is cut at every address something refers to: a table starts where code
        # or another table points, and holds the pointers up to the next such address.
        chunk_starts = {s["sh_addr"] for s in self.data_sections}
        chunk_starts.update(a for fn in functions for a in fn.refs if a in self.data)
        chunk_starts.update(t for _o, t in pointers if t in self.data)
        chunk_starts.update(
            v for _n, v, k, _e in self.symbols if k == _STT_OBJECT and v in self.data
        )
        chunk_starts.update(imports)
        chunks = sorted(chunk_starts)
        count = len(functions)

        def node(address: int) -> int | None:
            if address in self.code:
                return bisect.bisect_right(order, address) - 1
            if address in self.data:
                return count + bisect.bisect_right(chunks, address) - 1
            return None

        held: dict[int, list[int]] = {}
        for offset, target in pointers:
            where, what = node(offset), node(target)
            if where is not None and what is not None and where >= count:
                held.setdefault(where, []).append(what)
        refs = [{n for a in fn.refs if (n := node(a)) is not None} for fn in functions]
        dispatchers = self._dispatchers(functions, refs, imports, resolvers, node)
        probes = {i for i, fn in enumerate(functions) if fn.probes}

        def extensions(i: int) -> set[str]:
            # A function that runs cpuid itself checks before it uses what it found.
            return set() if i in probes else functions[i].features

        # Python imports an extension module by its PyInit_ function alone (other
        # modules reach in through capsules, which are data); a library is entered
        # by what the files that link it call, or anything it exports.
        module = any(name.startswith("PyInit_") for name in exported.values())
        entries = [
            a
            for a, name in exported.items()
            if name.startswith("PyInit_")
            or (self.called is None and not module)
            or (self.called is not None and name in self.called)
        ]
        roots = {
            n for a in (*entries, *resolvers, *self._loader_calls()) if (n := node(a)) is not None
        }
        # What a function that looks at the CPU refers to is taken as chosen by that look
        # (the variant for this CPU, or a module for it): it, and all it reaches, is
        # guarded, unless something reaches it plainly too.
        plainly: dict[int, bool] = {}
        queue = [(n, True) for n in roots]
        unguarded: list[int] = []
        while queue:
            n, plain = queue.pop()
            if plainly.get(n) is True or (n in plainly and not plain):
                continue
            plainly[n] = plain
            if n < count:
                if plain and extensions(n):
                    unguarded.append(n)
                out = plain and n not in dispatchers
                queue.extend((m, out) for m in refs[n])
            else:
                queue.extend((m, plain) for m in held.get(n, ()))
        used: set[str] = set()
        for i in range(count):
            used |= extensions(i)
        bad: set[str] = set()
        for i in unguarded:
            bad |= functions[i].features
        named = sorted(
            (functions[i] for i in unguarded), key=lambda fn: (fn.name is None, fn.start)
        )
        return CodeFinding(
            unguarded=tuple(sort_features(bad)),
            guarded=tuple(sort_features(used - bad)),
            functions=tuple(fn.name or f"code at {fn.start:#x}" for fn in named[:3]),
            count=len(unguarded),
        )

    def _dispatchers(
        self,
        functions: Sequence[_Function],
        refs: Sequence[set[int]],
        imports: Mapping[int, str],
        resolvers: Iterable[int],
        node: Any,
    ) -> set[int]:
        """The functions that look at the CPU: probes (cpuid), readers of what probes
        found or of GCC's and glibc's CPU data, ifunc resolvers, and their callers
        (numpy asks ``npy_cpu_have()``, GCC's resolvers ``__cpu_indicator_init()``)."""
        count = len(functions)
        probes = {i for i, fn in enumerate(functions) if fn.probes or fn.name in _CPU_SYMBOLS}
        cpu_data = {
            n
            for offset, name in imports.items()
            if name in _CPU_SYMBOLS and (n := node(offset)) is not None
        }
        for name, value, _kind, _exported in self.symbols:
            if name in _CPU_SYMBOLS and (n := node(value)) is not None:
                (probes if n < count else cpu_data).add(n)
        for i in probes:
            cpu_data.update(
                n for a in functions[i].refs if a in self.state and (n := node(a)) is not None
            )
        readers = probes | {i for i in range(count) if refs[i] & cpu_data}
        callers = {i for i in range(count) if refs[i] & readers}
        own = {n for a in resolvers if (n := node(a)) is not None and n < count}
        return readers | callers | own

    def _loader_calls(self) -> Iterator[int]:
        """What the dynamic loader runs: DT_INIT, DT_FINI and the init/fini arrays."""
        arrays = ("SHT_INIT_ARRAY", "SHT_FINI_ARRAY", "SHT_PREINIT_ARRAY")
        for section in self.data_sections:
            if section["sh_type"] in arrays:
                yield section["sh_addr"]
        dynamic = self.elf.get_section_by_name(".dynamic")
        if dynamic is not None:
            for tag, value in struct.iter_unpack("<qQ", dynamic.data()):
                if tag in (_DT_INIT, _DT_FINI):
                    yield value


# -- a wheel -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFinding:
    """One file of a wheel whose code runs extensions beyond the baseline unchecked."""

    file: str
    extensions: tuple[str, ...]  # beyond the baseline, iced-x86's names
    functions: tuple[str, ...]
    count: int

    def describe(self) -> str:
        """``numpy/_x.so: AVX, AVX2 (x86-64-v3) in 3 functions, e.g. f, g``."""
        names = ", ".join(shown(f) for f in self.extensions)
        where = plural(self.count, "function")
        example = f", e.g. {', '.join(self.functions)}" if self.functions else ""
        return f"{self.file}: {names} ({level_needed(self.extensions)}) in {where}{example}"

    def as_json(self) -> dict[str, object]:
        """For the build report and the build cache."""
        return {
            "file": self.file,
            "extensions": [shown(f) for f in self.extensions],
            "features": list(self.extensions),
            "level": level_needed(self.extensions),
            "functions": list(self.functions),
            "count": self.count,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PortabilityFinding:
    """What a wheel's code needs of the CPU beyond ``baseline``.

    ``inspected`` counts the x86-64 ELF files read; ``guarded`` lists the
    extensions used only by code chosen at run time (reported, never a problem).
    """

    wheel: str
    baseline: str
    inspected: int = 0
    files: tuple[FileFinding, ...] = ()
    guarded: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def portable(self) -> bool:
        """Whether the wheel runs on every CPU of the baseline."""
        return not self.files

    @property
    def needs(self) -> tuple[str, ...]:
        """The extensions (iced-x86's names) the unchecked code uses."""
        return tuple(sort_features(f for file in self.files for f in file.extensions))

    def needs_cpuinfo(self) -> tuple[str, ...]:
        """The /proc/cpuinfo flags a CPU must have to run this wheel."""
        return tuple(sorted({cpuinfo_flag(f) for f in self.needs}))

    def describe(self) -> str:
        """One line for the build log."""
        if not self.inspected:
            return "CPU: no x86-64 code to inspect"
        if self.portable:
            extra = (
                f"; {', '.join(shown(f) for f in self.guarded)} only where chosen at run time"
                if self.guarded
                else ""
            )
            return (
                f"CPU: runs on {self.baseline} ({plural(self.inspected, 'file')} inspected{extra})"
            )
        needs = ", ".join(shown(f) for f in self.needs)
        return f"CPU: needs {needs} ({level_needed(self.needs)}), beyond {self.baseline}"

    def as_json(self) -> dict[str, object]:
        """For the build report and the build cache (read back by :meth:`from_json`)."""
        return {
            "wheel": self.wheel,
            "baseline": self.baseline,
            "inspected": self.inspected,
            "portable": self.portable,
            "needs": [shown(f) for f in self.needs],
            "needs_cpuinfo": list(self.needs_cpuinfo()),
            "files": [f.as_json() for f in self.files],
            "guarded": [shown(f) for f in self.guarded],
            "guarded_features": list(self.guarded),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_json(cls, data: object) -> PortabilityFinding | None:
        """A finding recorded by :meth:`as_json`, or None if ``data`` is not one."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                wheel=str(data["wheel"]),
                baseline=str(data["baseline"]),
                inspected=int(data["inspected"]),
                files=tuple(
                    FileFinding(
                        file=str(f["file"]),
                        extensions=tuple(str(x) for x in f["features"]),
                        functions=tuple(str(x) for x in f["functions"]),
                        count=int(f["count"]),
                    )
                    for f in data["files"]
                ),
                guarded=tuple(str(x) for x in data.get("guarded_features", [])),
                seconds=float(data.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _is_shared_object(member: str) -> bool:
    return bool(_SHARED_OBJECT.search(PurePosixPath(member).name))


def inspect_wheel(path: Path, *, baseline: Baseline = DEFAULT_BASELINE) -> PortabilityFinding:
    """What the extension modules and shared libraries in the wheel at ``path`` need of the CPU.

    Only members named ``*.so`` or ``*.so.N`` are read, and only x86-64 ones
    inspected. A library's entry points are the symbols the wheel's other files
    import from it (all it exports when none of them names it).
    """
    started = time.perf_counter()
    with zipfile.ZipFile(path) as archive:
        blobs = {
            info.filename: archive.read(info)
            for info in archive.infolist()
            if not info.is_dir() and _is_shared_object(info.filename)
        }
    links = {member: found for member, data in blobs.items() if (found := read_links(data))}
    users: dict[str, set[str]] = {}  # library name -> the symbols its users import
    for found in links.values():
        for name in found.needed:
            users.setdefault(name, set()).update(found.imports)
    files: list[FileFinding] = []
    guarded: set[str] = set()
    for member, found in sorted(links.items()):
        names = {PurePosixPath(member).name, *([found.soname] if found.soname else [])}
        called = {s for n in names for s in users.get(n, ())} if names & set(users) else None
        code = inspect_elf(blobs[member], called=frozenset(called) if called is not None else None)
        if code is None:
            continue
        guarded.update(code.guarded)
        extra = beyond(code.unguarded, baseline)
        if extra:
            files.append(
                FileFinding(
                    file=member, extensions=tuple(extra), functions=code.functions, count=code.count
                )
            )
        else:
            guarded.update(code.unguarded)
    return PortabilityFinding(
        wheel=path.name,
        baseline=baseline,
        inspected=len(links),
        files=tuple(files),
        guarded=tuple(beyond(guarded - {f for file in files for f in file.extensions}, baseline)),
        seconds=round(time.perf_counter() - started, 3),
    )


def check_finding(
    finding: PortabilityFinding, *, label: str, mode: PortableMode, package: str
) -> str | None:
    """The warning for a wheel that is not portable; raises in ``"error"`` mode."""
    if finding.portable or mode == "off":
        return None
    files = "\n".join(f"  - {f.describe()}" for f in finding.files)
    needs = ", ".join(shown(f) for f in finding.needs)
    what = (
        f"{label}: its code uses {needs} without checking the CPU first, beyond the "
        f"target's baseline ({finding.baseline}): on CPUs without them it stops with "
        f"'Illegal instruction'\n{files}"
    )
    fix = (
        "build it for the baseline: remove -march=native (or -mavx2, ...) from its build "
        f'flags, e.g. set CFLAGS = "-O2 -march={finding.baseline}" in '
        f"[tool.wheelbarrow.packages.{package}.env]; or, if every server has them, "
        f'set cpu-baseline = "{_level_for(finding.needs)}"'
    )
    if mode == "error":
        raise NotPortableError(
            f'{what}\n  (portable = "error" is set)', hint=f"{fix}; nothing was stored"
        )
    return f'{what}\n  To fix: {fix} (portable = "error" makes this an error)'


def _level_for(features: Sequence[str]) -> str:
    level = level_needed(features)
    return level if level in BASELINES else "x86-64-v4"


def check_built_wheel(
    wheel: Path,
    *,
    label: str,
    package: str,
    mode: PortableMode,
    baseline: Baseline,
    log: Path | None,
    reporter: Reporter,
    finding: PortabilityFinding | None = None,
) -> PortabilityFinding | None:
    """Inspect a built wheel (unless ``finding`` was recorded), warn or raise, note it in ``log``.

    ``log`` is None for a wheel reused from the build cache. A recorded finding
    for another baseline is inspected again. None when ``mode`` is ``"off"``.
    """
    if mode == "off":
        return None
    if finding is None or finding.baseline != baseline:
        finding = inspect_wheel(wheel, baseline=baseline)
    try:
        warning = check_finding(finding, label=label, mode=mode, package=package)
    except NotPortableError as exc:
        _note(log, f"# {exc.message}")
        raise
    _note(log, f"# {finding.describe()} ({finding.seconds:.2f}s)")
    if warning is not None:
        reporter.message("warning", warning)
    return finding


def _note(log: Path | None, text: str) -> None:
    if log is None:
        return
    with contextlib.suppress(OSError), log.open("a", encoding="utf-8") as f:
        f.write(text.replace("\n", "\n# ") + "\n")


# -- the CPU a build depends on ----------------------------------------------------------

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
