"""What a Poetry project asks for: pyproject.toml's roots, and Poetry's dependency syntax.

Poetry's constraints (``^1.2``, ``~1.2``, ``>=1,<2 || 3.*``) become PEP 440
specifier sets; a dependency of pyproject.toml or of a locked package becomes a
:class:`Dependency`; the selected groups and extras give the roots of the walk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.managers import PYPROJECT, Groups
from wheelbarrow.app.poetry_toml import as_mapping, malformed, parse_marker

__all__ = [
    "Dependency",
    "poetry_constraint",
    "poetry_dependency",
    "project_roots",
    "requires_python",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """One dependency as pyproject.toml or a locked package states it."""

    name: str  # normalised
    extras: frozenset[str] = frozenset()
    marker: Marker | None = None
    python: tuple[SpecifierSet, ...] = ()  # Poetry's `python = "..."`, as alternatives
    versions: tuple[SpecifierSet, ...] = ()  # alternatives; () means any
    optional: bool = False


def project_roots(pyproject: Mapping[str, Any], groups: Groups, path: Path) -> list[Dependency]:
    """The dependencies pyproject.toml states for the main group, ``groups`` and their extras."""
    project = as_mapping(pyproject.get("project", {}))
    tool_poetry = as_mapping(as_mapping(pyproject.get("tool", {})).get("poetry", {}))
    poetry_deps = as_mapping(tool_poetry.get("dependencies", {}))
    roots: list[Dependency] = []
    extras: set[str] = {canonicalize_name(e) for e in groups.extras}
    if project.get("dependencies") is not None or project.get("optional-dependencies"):
        roots += _pep508_list(project.get("dependencies") or [], path, "[project] dependencies")
        optional = as_mapping(project.get("optional-dependencies", {}))
        known: dict[str, str] = {canonicalize_name(e): e for e in optional}
        _check_known("extra", extras, known, path)
        for extra in sorted(extras):
            roots += _pep508_list(
                optional[known[extra]], path, f"[project.optional-dependencies] {known[extra]}"
            )
        if "dependencies" in project.get("dynamic", []) and not project.get("dependencies"):
            roots += _poetry_table(poetry_deps, path, "[tool.poetry.dependencies]")
    else:
        main = _poetry_table(poetry_deps, path, "[tool.poetry.dependencies]")
        table = as_mapping(tool_poetry.get("extras", {}))
        known = {str(canonicalize_name(e)): e for e in table}
        _check_known("extra", extras, known, path)
        wanted = {
            canonicalize_name(n) for e in extras for n in table[known[e]] if isinstance(n, str)
        }
        roots += [d for d in main if not d.optional or d.name in wanted]
    selected = (["dev"] if groups.dev else []) + list(groups.names)
    roots += _group_roots(pyproject, tool_poetry, selected, path)
    return roots


def _group_roots(
    pyproject: Mapping[str, Any],
    tool_poetry: Mapping[str, Any],
    selected: list[str],
    path: Path,
) -> list[Dependency]:
    poetry_groups = {
        canonicalize_name(n): (n, as_mapping(g))
        for n, g in as_mapping(tool_poetry.get("group", {})).items()
    }
    pep735 = {
        canonicalize_name(n): (n, g)
        for n, g in as_mapping(pyproject.get("dependency-groups", {})).items()
    }
    roots: list[Dependency] = []
    done: set[str] = set()
    pending = [canonicalize_name(n) for n in selected]
    known: set[str] = set(poetry_groups) | set(pep735)
    if "dev-dependencies" in tool_poetry:
        known.add("dev")
    missing = [n for n in pending if n not in known and n != "dev"]
    _check_known("group", set(missing), {n: n for n in known}, path)
    while pending:
        group = pending.pop()
        if group in done:
            continue
        done.add(group)
        if group == "dev" and "dev-dependencies" in tool_poetry:
            roots += _poetry_table(
                as_mapping(tool_poetry["dev-dependencies"]), path, "[tool.poetry.dev-dependencies]"
            )
        if group in poetry_groups:
            name, config = poetry_groups[group]
            roots += _poetry_table(
                as_mapping(config.get("dependencies", {})),
                path,
                f"[tool.poetry.group.{name}.dependencies]",
            )
            pending += [canonicalize_name(str(n)) for n in config.get("include-groups", [])]
        if group in pep735:
            name, items = pep735[group]
            if not isinstance(items, list):
                raise malformed(path, f"[dependency-groups] {name} is not a list")
            for item in items:
                if isinstance(item, dict) and "include-group" in item:
                    pending.append(canonicalize_name(str(item["include-group"])))
                else:
                    roots += _pep508_list([item], path, f"[dependency-groups] {name}")
    return roots


def _check_known(kind: str, wanted: set[str], known: Mapping[str, str], path: Path) -> None:
    unknown = sorted(wanted - set(known))
    if unknown:
        listing = ", ".join(sorted(known.values())) or "none"
        raise InputError(
            f"{path}: no {kind} named {', '.join(unknown)} (the project's: {listing})",
            hint=f"choose {kind}s the project defines",
        )


def _pep508_list(items: Any, path: Path, where: str) -> list[Dependency]:
    if not isinstance(items, list):
        raise malformed(path, f"{where} is not a list")
    deps = []
    for text in items:
        try:
            req = Requirement(str(text))
        except InvalidRequirement as exc:
            raise malformed(path, f"{where}: {text!r} is not a requirement: {exc}") from exc
        deps.append(
            Dependency(
                name=canonicalize_name(req.name),
                extras=frozenset(canonicalize_name(e) for e in req.extras),
                marker=req.marker,
                versions=(req.specifier,) if req.specifier else (),
            )
        )
    return deps


def _poetry_table(table: Mapping[str, Any], path: Path, where: str) -> list[Dependency]:
    deps: list[Dependency] = []
    for name, spec in table.items():
        if canonicalize_name(name) == "python":
            continue
        deps.extend(poetry_dependency(name, spec, path, f"{where} {name}"))
    return deps


def poetry_dependency(name: str, spec: Any, path: Path, where: str) -> list[Dependency]:
    """A Poetry dependency: a constraint string, a table, or a list of tables (alternatives)."""
    if isinstance(spec, list):
        return [d for item in spec for d in poetry_dependency(name, item, path, where)]
    if isinstance(spec, str):
        spec = {"version": spec}
    if not isinstance(spec, dict):
        raise malformed(path, f"{where} is neither a version string nor a table")
    markers = [f"({spec['markers']})"] if isinstance(spec.get("markers"), str) else []
    if isinstance(spec.get("platform"), str):
        markers.append(f'sys_platform == "{spec["platform"]}"')
    version = spec.get("version")
    python = spec.get("python")
    return [
        Dependency(
            name=canonicalize_name(name),
            extras=frozenset(canonicalize_name(str(e)) for e in spec.get("extras", [])),
            marker=parse_marker(" and ".join(markers), path, where) if markers else None,
            python=poetry_constraint(python, path, where) if isinstance(python, str) else (),
            versions=poetry_constraint(version, path, where) if isinstance(version, str) else (),
            optional=bool(spec.get("optional", False)),
        )
    ]


_OPERATOR = re.compile(r"(\^|~=|~|===|==|!=|<=|>=|<|>|=)?\s*([^\s,<>=!~^]+)")


def poetry_constraint(text: str, path: Path, where: str) -> tuple[SpecifierSet, ...]:
    """Poetry's constraint syntax (``^1.2``, ``~1.2``, ``>=1,<2 || 3.*``) as PEP 440 sets.

    Returns the alternatives of ``||``; () when any version will do.
    """
    alternatives: list[SpecifierSet] = []
    for part in text.split("||"):
        part = part.strip()
        if part in ("", "*"):
            return ()
        specifiers: list[str] = []
        for match in _OPERATOR.finditer(part):
            operator, version = match[1] or "==", match[2]
            specifiers += _pep440(operator, version)
        try:
            alternatives.append(SpecifierSet(",".join(specifiers)))
        except InvalidSpecifier as exc:
            raise malformed(path, f"{where}: {text!r} is not a version constraint") from exc
    return tuple(alternatives)


def _pep440(operator: str, version: str) -> list[str]:
    if version == "*":
        return []
    if operator not in ("^", "~"):
        return [f"{'==' if operator == '=' else operator}{version}"]
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:3]]
    if operator == "^":
        # The first non-zero component may not change (Poetry's caret).
        index = next((i for i, p in enumerate(parts) if p), len(parts) - 1)
    else:
        index = max(len(parts) - 2, 0) if len(parts) > 1 else 0
    upper = [*parts[:index], parts[index] + 1]
    return [f">={version}", f"<{'.'.join(map(str, upper))}"]


def requires_python(pyproject: Mapping[str, Any]) -> str | None:
    """The project's Python range in PEP 440, from [project] or Poetry's ``python``."""
    project = as_mapping(pyproject.get("project", {}))
    if isinstance(project.get("requires-python"), str):
        return str(project["requires-python"])
    deps = as_mapping(
        as_mapping(as_mapping(pyproject.get("tool", {})).get("poetry", {})).get("dependencies", {})
    )
    python = deps.get("python")
    if not isinstance(python, str):
        return None
    try:
        sets = poetry_constraint(python, Path(PYPROJECT), "python")
    except InputError:
        return None
    # A union (`||`) has no PEP 440 spelling.
    return str(sets[0]) if len(sets) == 1 else None
