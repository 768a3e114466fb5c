"""What an x86-64 ELF file's code asks of the CPU, and what runs without checking first.

Code that picks its instructions at run time (ifuncs, GCC ``target_clones``, a
``__builtin_cpu_supports`` or ``cpuid`` check choosing a function, numpy's and
OpenBLAS's dispatch) is fine; code that uses them unchecked stops with "Illegal
instruction" on CPUs without them. :func:`inspect_elf` tells them apart: it
decodes the file's x86-64 code, notes which functions use which instruction set
extensions, and walks from the file's entry points (``PyInit_*``, the loader's
init functions, a library's API as the wheel's other files call it) through
calls, jumps, taken addresses and pointer tables, stopping at functions that
look at the CPU: what they refer to counts as chosen by that look. Extensions
used by code reached without passing such a function are unguarded.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wheelbarrow.build.elffile import cstring, open_elf
from wheelbarrow.build.x86features import KNOWN_FEATURES, sort_features

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import Section
    from iced_x86 import Instruction


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
_DT_INIT, _DT_FINI = 12, 13
_NEVER = 1 << 64
_PLAIN, _FEATURES, _MEMORY, _BRANCH, _CPUID = range(5)  # what an instruction code may tell


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


def inspect_elf(data: bytes, *, called: frozenset[str] | None = None) -> CodeFinding | None:
    """The CPU extensions an x86-64 ELF file's code uses, unguarded and guarded; else None.

    An extension module is entered by its ``PyInit_*`` function; a library by
    ``called``, the symbols of it that other files use (None: all it exports).
    Files for other machines, and files whose headers cannot be read, give None.
    """
    elf = open_elf(data)
    if elf is None:
        return None
    return _Analysis(elf, called).run()


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


class _InstructionKinds:
    """What each instruction code tells the walk (``_PLAIN`` ... ``_CPUID``), and the
    extensions it uses: looked up by code, a few thousand codes for millions of
    instructions."""

    def __init__(self) -> None:
        from iced_x86 import Code, CpuidFeature, FlowControl, OpCodeInfo, OpCodeOperandKind

        self.wanted = {
            getattr(CpuidFeature, name): name
            for name in KNOWN_FEATURES
            if hasattr(CpuidFeature, name)
        }
        # tzcnt is `rep bsf`, which CPUs without BMI1 run as bsf: GCC emits it for every
        # target, relying on that.
        self.tzcnt = (Code.TZCNT_R16_RM16, Code.TZCNT_R32_RM32, Code.TZCNT_R64_RM64)
        self.features_of: dict[int, tuple[str, ...]] = {}
        self.branches = (
            FlowControl.CALL,
            FlowControl.UNCONDITIONAL_BRANCH,
            FlowControl.CONDITIONAL_BRANCH,
        )
        self.cpuid = Code.CPUID
        self.memory = {
            v for k, v in vars(OpCodeOperandKind).items() if "MEM" in k and isinstance(v, int)
        }
        self.info = OpCodeInfo
        self.kinds: dict[int, int] = {}  # code -> one of _PLAIN, _FEATURES, _MEMORY, ...

    def kind_of(self, instr: Instruction) -> int:
        """Classify ``instr``'s code (first seen now) and remember it."""
        code = instr.code
        found = tuple(self.wanted[f] for f in instr.cpuid_features() if f in self.wanted)
        if code in self.tzcnt:
            found = ()
        self.features_of[code] = found
        info = self.info(code)
        if found:
            kind = _FEATURES
        elif instr.flow_control in self.branches:
            kind = _BRANCH
        elif code == self.cpuid:
            kind = _CPUID
        elif any(info.op_kind(i) in self.memory for i in range(info.op_count)):
            kind = _MEMORY
        else:
            kind = _PLAIN
        self.kinds[code] = kind
        return kind


def _locator(
    code: _Spans, data: _Spans, order: Sequence[int], chunks: Sequence[int]
) -> Callable[[int], int | None]:
    """The graph node of an address: a function by its index in ``order``, a data chunk by
    the number of functions plus its index in ``chunks``; None for neither."""
    count = len(order)

    def node(address: int) -> int | None:
        if address in code:
            return bisect.bisect_right(order, address) - 1
        if address in data:
            return count + bisect.bisect_right(chunks, address) - 1
        return None

    return node


def _unguarded(
    roots: Iterable[int],
    refs: Sequence[set[int]],
    held: Mapping[int, list[int]],
    dispatchers: set[int],
    extensions: Callable[[int], set[str]],
    count: int,
) -> list[int]:
    """The functions reached from ``roots`` with no CPU check on the way that use extensions.

    What a function that looks at the CPU refers to is taken as chosen by that look
    (the variant for this CPU, or a module for it): it, and all it reaches, is
    guarded, unless something reaches it plainly too.
    """
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
    return unguarded


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
                yield cstring(strings, at), value, info & 0xF, exported

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
                    (cstring(strings, at), value if shndx else 0)
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
        from iced_x86 import Decoder

        classes = _InstructionKinds()
        kinds, kind_of = classes.kinds, classes.kind_of
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
                fn.features.update(classes.features_of[used])

    def run(self) -> CodeFinding:
        """Decode the code, then walk what runs with no CPU check from the entry points."""
        functions, order, resolvers, exported = self._functions()
        if not functions:
            return CodeFinding()
        self._decode(functions, order)
        pointers, imports = self._pointers(resolvers)
        count = len(functions)
        node = _locator(self.code, self.data, order, self._chunks(functions, pointers, imports))
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

        entries = self._entries(exported)
        roots = {
            n for a in (*entries, *resolvers, *self._loader_calls()) if (n := node(a)) is not None
        }
        unguarded = _unguarded(roots, refs, held, dispatchers, extensions, count)
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

    def _pointers(self, resolvers: set[int]) -> tuple[list[tuple[int, int]], dict[int, str]]:
        """The addresses data holds once relocated, ``(where, address)``, and the GOT slots
        of imported symbols; adds the IRELATIVE relocations' resolvers to ``resolvers``."""
        pointers: list[tuple[int, int]] = []  # (where in data, the address it holds)
        imports: dict[int, str] = {}  # GOT slot -> the imported symbol it holds
        for offset, kind, target, name in self._relocations():
            if name is not None:
                imports[offset] = name
            else:
                pointers.append((offset, target))
                if kind == _R_X86_64_IRELATIVE:
                    resolvers.add(target)
        return pointers, imports

    def _chunks(
        self,
        functions: Sequence[_Function],
        pointers: Sequence[tuple[int, int]],
        imports: Mapping[int, str],
    ) -> list[int]:
        """Data cut at every address something refers to: a table starts where code or
        another table points, and holds the pointers up to the next such address."""
        chunk_starts = {s["sh_addr"] for s in self.data_sections}
        chunk_starts.update(a for fn in functions for a in fn.refs if a in self.data)
        chunk_starts.update(t for _o, t in pointers if t in self.data)
        chunk_starts.update(
            v for _n, v, k, _e in self.symbols if k == _STT_OBJECT and v in self.data
        )
        chunk_starts.update(imports)
        return sorted(chunk_starts)

    def _entries(self, exported: Mapping[int, str]) -> list[int]:
        """Where the file is entered from outside.

        Python imports an extension module by its PyInit_ function alone (other
        modules reach in through capsules, which are data); a library is entered
        by what the files that link it call, or anything it exports.
        """
        module = any(name.startswith("PyInit_") for name in exported.values())
        return [
            a
            for a, name in exported.items()
            if name.startswith("PyInit_")
            or (self.called is None and not module)
            or (self.called is not None and name in self.called)
        ]

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
