"""What a pip requirements file says, as values: requirements, constraints, index options."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import (
    canonicalize_name,
)

__all__ = ["IndexOptions", "Origin", "RequirementLine", "Requirements"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Where an entry came from: a file and line, or a file and a label such as ``dependencies[3]``.

    ``str()`` gives ``path:line`` (or ``path: label``), the prefix of every error message.
    """

    path: Path
    line: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.label is not None:
            return f"{self.path}: {self.label}"
        if self.line is not None:
            return f"{self.path}:{self.line}"
        return str(self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequirementLine:
    """One requirement (or constraint) and the hashes written next to it.

    ``requirement`` is ``None`` only for a URL or local path whose project name
    is unknown (no ``#egg=NAME`` and not a wheel or sdist file name); ``url`` is
    set for every direct reference, local paths being absolute ``file:`` URLs.
    """

    requirement: Requirement | None
    url: str | None = None
    hashes: tuple[str, ...] = ()
    origin: Origin
    # Written with -e: built into a wheel and deployed non-editable all the same.
    editable: bool = False

    @property
    def name(self) -> str | None:
        """The canonical project name, or ``None`` when it is unknown."""
        if self.requirement is None:
            return None
        return canonicalize_name(self.requirement.name)

    def __str__(self) -> str:
        if self.requirement is not None:
            return str(self.requirement)
        # __post_init__ guarantees a URL when there is no requirement.
        return self.url or ""

    def __post_init__(self) -> None:
        if self.requirement is None and self.url is None:
            raise ValueError("a RequirementLine needs a requirement or a url")


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexOptions:
    """Where packages are looked up: the index options of pip."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    trusted_hosts: tuple[str, ...] = ()

    @property
    def given(self) -> bool:
        """Whether any option is set (an all-default value means "not given")."""
        return self != IndexOptions()

    def overridden_by(self, other: IndexOptions) -> IndexOptions:
        """Combine with ``other`` (the command line): its index URL wins, lists are appended."""
        return IndexOptions(
            index_url=other.index_url if other.index_url is not None else self.index_url,
            extra_index_urls=_unique((*self.extra_index_urls, *other.extra_index_urls)),
            find_links=_unique((*self.find_links, *other.find_links)),
            no_index=self.no_index or other.no_index,
            trusted_hosts=_unique((*self.trusted_hosts, *other.trusted_hosts)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirements:
    """Everything read from a requirements file and the files it includes."""

    requirements: tuple[RequirementLine, ...] = ()
    constraints: tuple[RequirementLine, ...] = ()
    index: IndexOptions = field(default_factory=IndexOptions)
    pre: bool = False
    prefer_binary: bool = False
    require_hashes: bool = False
    only_binary: frozenset[str] = frozenset()
    no_binary: frozenset[str] = frozenset()
    files: tuple[Path, ...] = ()


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
