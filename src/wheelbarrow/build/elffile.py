"""Reading x86-64 ELF files: opening one safely, its strings, what it links and imports."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

_DT_NEEDED, _DT_SONAME = 1, 14


@dataclass(frozen=True, slots=True, kw_only=True)
class ElfLinks:
    """What an ELF file imports and is called by: for choosing a library's entry points."""

    soname: str | None
    needed: tuple[str, ...]
    imports: frozenset[str]


def read_links(data: bytes) -> ElfLinks | None:
    """The SONAME, DT_NEEDED names and imported symbols of an x86-64 ELF file, else None."""
    elf = open_elf(data)
    if elf is None:
        return None
    soname, needed = None, []
    dynamic = elf.get_section_by_name(".dynamic")
    dynstr = elf.get_section_by_name(".dynstr")
    if dynamic is not None and dynstr is not None:
        strings = dynstr.data()
        for tag, value in struct.iter_unpack("<qQ", dynamic.data()):
            if tag == _DT_NEEDED:
                needed.append(cstring(strings, value))
            elif tag == _DT_SONAME:
                soname = cstring(strings, value)
    imports: set[str] = set()
    dynsym = elf.get_section_by_name(".dynsym")
    if dynsym is not None:
        strings = elf.get_section(dynsym["sh_link"]).data()
        for at, _info, _other, shndx, _value, _size in struct.iter_unpack("<IBBHQQ", dynsym.data()):
            if shndx == 0 and at:
                imports.add(cstring(strings, at))
    return ElfLinks(soname=soname, needed=tuple(needed), imports=frozenset(imports))


def open_elf(data: bytes) -> ELFFile | None:
    """``data`` as a 64-bit little-endian x86-64 ELF file whose headers read, else None."""
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


def cstring(blob: bytes, at: int) -> str:
    """The NUL-terminated string at ``at`` of a string table."""
    end = blob.find(b"\0", at)
    return blob[at : end if end >= 0 else len(blob)].decode("utf-8", "replace")
