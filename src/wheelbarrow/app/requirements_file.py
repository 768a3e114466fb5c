"""Parse pip requirements files into immutable values, with errors that name the file and line."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidName, canonicalize_name

from wheelbarrow._core.errors import RequirementsError
from wheelbarrow.app.requirements import IndexOptions, Origin, RequirementLine, Requirements
from wheelbarrow.app.requirements_syntax import (
    COMMENT,
    ENV_VAR,
    EXTRAS,
    FLAG_OPTIONS,
    FORMAT_HINT,
    OPTIONS_START,
    SCHEME,
    SHORT_OPTIONS,
    SUPPORTED,
    URL_OPTIONS,
    VALUE_OPTIONS,
    hash_problem,
    is_url,
    logical_lines,
    looks_like_path,
    name_from_filename,
    requirement_hint,
    split_fragment,
    url_problem,
)

__all__ = ["parse_requirements_file", "parse_requirements_text", "requirements_from_strings"]

# A read-only empty mapping: a shared mutable default would be a trap (ruff B006).
_NO_ENVIRON: Mapping[str, str] = MappingProxyType({})


def parse_requirements_file(
    path: Path, *, environ: Mapping[str, str] = _NO_ENVIRON
) -> Requirements:
    """Read ``path`` and every file it includes; raise `RequirementsError` listing all problems."""
    parser = _Parser(environ=environ, read_file=_read_utf8)
    parser.parse_file(path, text=None, constraint=False, included_from=None)
    return parser.result()


def parse_requirements_text(
    text: str,
    *,
    path: Path,
    environ: Mapping[str, str] = _NO_ENVIRON,
    read_file: Callable[[Path], str] | None = None,
) -> Requirements:
    """Parse ``text`` as if read from ``path``; included files are read with ``read_file``.

    ``read_file`` defaults to reading UTF-8 from disk; it signals a missing file
    with `FileNotFoundError` and bad encoding with `UnicodeDecodeError`.
    """
    parser = _Parser(environ=environ, read_file=read_file or _read_utf8)
    parser.parse_file(path, text=text, constraint=False, included_from=None)
    return parser.result()


def requirements_from_strings(lines: Iterable[str], *, path: Path) -> Requirements:
    """Parse PEP 508 strings such as ``[project] dependencies`` of the pyproject.toml at ``path``.

    Problems are labelled ``dependencies[i]`` with ``i`` counted from 0.
    """
    parser = _Parser(environ=_NO_ENVIRON, read_file=_read_utf8)
    parser.files.append(path)
    for index, text in enumerate(lines):
        origin = Origin(path=path, label=f"dependencies[{index}]")
        entry = parser.pep508(text.strip(), origin=origin, base_dir=path.parent, hashes=())
        if entry is not None:
            parser.requirements.append(entry)
    return parser.result()


def _read_utf8(path: Path) -> str:
    # utf-8-sig: a byte order mark, as Windows editors write, is not an error.
    return path.read_bytes().decode("utf-8-sig")


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(slots=True, kw_only=True)
class _Option:
    name: str  # the long form, e.g. "--requirement"
    written: str  # as in the file, e.g. "-r"
    value: str | None


class _Parser:
    """Mutable state of one parse: what was found so far and every problem met."""

    def __init__(self, *, environ: Mapping[str, str], read_file: Callable[[Path], str]) -> None:
        self.environ = environ
        self.read_file = read_file
        self.requirements: list[RequirementLine] = []
        self.constraints: list[RequirementLine] = []
        self.problems: list[str] = []
        self.files: list[Path] = []
        self.index_url: str | None = None
        self.extra_index_urls: list[str] = []
        self.find_links: list[str] = []
        self.trusted_hosts: list[str] = []
        self.no_index = False
        self.pre = False
        self.prefer_binary = False
        self.require_hashes = False
        self.only_binary: set[str] = set()
        self.no_binary: set[str] = set()
        # Files being parsed, outermost first: (resolved path, path as shown).
        self.stack: list[tuple[Path, Path]] = []

    def result(self) -> Requirements:
        if self.problems:
            raise RequirementsError(self.problems, hint=FORMAT_HINT)
        return Requirements(
            requirements=tuple(self.requirements),
            constraints=tuple(self.constraints),
            index=IndexOptions(
                index_url=self.index_url,
                extra_index_urls=_unique(self.extra_index_urls),
                find_links=_unique(self.find_links),
                no_index=self.no_index,
                trusted_hosts=_unique(self.trusted_hosts),
            ),
            pre=self.pre,
            prefer_binary=self.prefer_binary,
            require_hashes=self.require_hashes,
            only_binary=frozenset(self.only_binary),
            no_binary=frozenset(self.no_binary),
            files=_unique_paths(self.files),
        )

    def problem(self, where: Origin | Path, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def parse_file(
        self, path: Path, *, text: str | None, constraint: bool, included_from: Origin | None
    ) -> None:
        # Lexical normalisation only, for messages: "a/sub/../b.txt" reads as "a/b.txt".
        shown = Path(os.path.normpath(path))
        key = path.resolve()
        keys = [k for k, _ in self.stack]
        if key in keys:
            chain = [str(p) for _, p in self.stack[keys.index(key) :]] + [str(shown)]
            # The outermost file is never on the stack yet, so included_from is set.
            self.problem(included_from or shown, f"include cycle: {' -> '.join(chain)}")
            return
        if text is None:
            text = self._read(shown, included_from)
            if text is None:
                return
        self.files.append(shown)
        self.stack.append((key, shown))
        try:
            for number, physical in logical_lines(text):
                origin = Origin(path=shown, line=number)
                line = COMMENT.sub("", physical).strip()
                if line:
                    self._line(line, origin=origin, base_dir=shown.parent, constraint=constraint)
        finally:
            self.stack.pop()

    def _read(self, path: Path, included_from: Origin | None) -> str | None:
        where: Origin | Path = included_from if included_from is not None else path
        what = f"cannot include {str(path)!r}: " if included_from is not None else ""
        try:
            return self.read_file(path)
        except FileNotFoundError:
            self.problem(where, f"{what}file not found")
        except UnicodeDecodeError as exc:
            self.problem(
                where,
                f"{what}not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8",
            )
        except OSError as exc:
            self.problem(where, f"{what}cannot read it: {exc.strerror or exc}")
        return None

    def _has_nul(self, text: str, origin: Origin, *, what: str = "holds") -> bool:
        """Record a problem if ``text`` holds a NUL byte, which no name, path or URL can."""
        if "\0" not in text:
            return False
        # A binary file or a bad editor save; paths with one cannot even be looked up.
        self.problem(
            origin,
            f"{what} a NUL byte (column {text.index(chr(0)) + 1}); requirements are plain text",
        )
        return True

    def _expand(self, line: str, origin: Origin) -> str | None:
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            value = self.environ.get(match.group(1))
            if value is None:
                missing.append(match.group(1))
                return match.group(0)
            return value

        expanded = ENV_VAR.sub(substitute, line)
        for name in dict.fromkeys(missing):
            self.problem(
                origin,
                f"environment variable {name} is not set (used as ${{{name}}}); "
                "set it, or write the value in the file",
            )
        return None if missing else expanded

    def _line(self, line: str, *, origin: Origin, base_dir: Path, constraint: bool) -> None:
        if self._has_nul(line, origin):
            return
        expanded = self._expand(line, origin)
        if expanded is None or self._has_nul(expanded, origin, what="once expanded, it holds"):
            return
        start = OPTIONS_START.search(expanded)
        cut = start.start() if start else len(expanded)
        args, rest = expanded[:cut], expanded[cut:]
        try:
            tokens = shlex.split(rest)
        except ValueError as exc:
            self.problem(origin, f"cannot read the options {rest.strip()!r}: {exc}")
            return
        options = self._options(tokens, origin)
        if options is None:
            return
        if args.strip():
            self._requirement_line(args.strip(), options, origin, base_dir, constraint)
        else:
            for option in options:
                self._global_option(option, origin, base_dir, constraint)

    def _options(self, tokens: list[str], origin: Origin) -> list[_Option] | None:
        """Turn tokens into options, or record a problem and return ``None``."""
        options: list[_Option] = []
        position = 0
        while position < len(tokens):
            token = tokens[position]
            position += 1
            inline: str | None
            if token.startswith("--"):
                name, equals, value = token.partition("=")
                inline = value if equals else None
            elif token.startswith("-") and token[:2] in SHORT_OPTIONS:
                # "-r file" and, as optparse, "-rfile".
                name, inline = SHORT_OPTIONS[token[:2]], (token[2:] or None)
            elif token.startswith("-"):
                name, inline = token, None
            else:
                self.problem(origin, f"unexpected argument {token!r} after the options")
                return None
            if name not in VALUE_OPTIONS and name not in FLAG_OPTIONS:
                self.problem(origin, f"unknown option {name!r}; supported options: {SUPPORTED}")
                return None
            if name in FLAG_OPTIONS:
                if inline is not None:
                    self.problem(origin, f"option {name} takes no value")
                    return None
                options.append(_Option(name=name, written=token, value=None))
                continue
            if inline is None:
                if position == len(tokens):
                    self.problem(origin, f"option {token} needs a value")
                    return None
                inline = tokens[position]
                position += 1
            written = token if token.startswith("--") else token[:2]
            options.append(_Option(name=name, written=written.partition("=")[0], value=inline))
        return options

    def _requirement_line(
        self,
        text: str,
        options: list[_Option],
        origin: Origin,
        base_dir: Path,
        constraint: bool,
    ) -> None:
        hashes: list[str] = []
        valid = True
        for option in options:
            if option.name != "--hash":
                self.problem(
                    origin,
                    f"option {option.written} is not allowed on a requirement line; "
                    "put it on a line of its own",
                )
                valid = False
                continue
            value = option.value or ""
            if (message := hash_problem(value)) is not None:
                self.problem(origin, message)
                valid = False
            hashes.append(value)
        entry = self.requirement(text, origin=origin, base_dir=base_dir, hashes=tuple(hashes))
        if entry is None or not valid:
            return
        if constraint and entry.requirement is None:
            self.problem(
                origin,
                f"constraint {text!r} has no project name; add '#egg=NAME' to name it",
            )
            return
        (self.constraints if constraint else self.requirements).append(entry)

    def requirement(
        self, text: str, *, origin: Origin, base_dir: Path, hashes: tuple[str, ...]
    ) -> RequirementLine | None:
        """Parse a requirement: a URL, a local path or a PEP 508 string."""
        if is_url(text):
            # As pip: a marker after a URL needs a space after the ";".
            location, _, marker = _split_marker(text, "; ")
            return self._direct(location, "", marker, origin, hashes)
        if looks_like_path(text):
            location, _, marker = _split_marker(text, ";")
            path, hash_sign, fragment = location.partition("#")
            # Extras close the path ("./pkg[x]") or, pip's older form, the egg ("#egg=pkg[x]").
            extras = ""
            if (match := EXTRAS.match(path)) is not None:
                path, extras = match.groups()
            elif (match := EXTRAS.match(fragment)) is not None:
                fragment, extras = match.groups()
            url = (base_dir / path).resolve().as_uri() + (hash_sign + fragment)
            return self._direct(url, extras, marker, origin, hashes)
        return self.pep508(text, origin=origin, base_dir=base_dir, hashes=hashes)

    def pep508(
        self, text: str, *, origin: Origin, base_dir: Path, hashes: tuple[str, ...]
    ) -> RequirementLine | None:
        """Parse a PEP 508 requirement; a relative ``name @ ./path`` becomes a ``file:`` URL."""
        if self._has_nul(text, origin):
            return None
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            # packaging's message continues with the line and a caret: keep one line.
            message = f"invalid requirement {text!r}: {str(exc).splitlines()[0]}"
            if (hint := requirement_hint(text)) is not None:
                message += f"; {hint}"
            self.problem(origin, message)
            return None
        url = requirement.url
        if url is not None and (bad_url := url_problem(url)) is not None:
            self.problem(origin, bad_url)
            return None
        if url is not None and SCHEME.match(url) is None:
            url = (base_dir / url).resolve().as_uri()
            requirement.url = url
        return RequirementLine(requirement=requirement, url=url, hashes=hashes, origin=origin)

    def _direct(
        self, url: str, extras: str, marker: str, origin: Origin, hashes: tuple[str, ...]
    ) -> RequirementLine | None:
        if (message := url_problem(url)) is not None:
            self.problem(origin, message)
            return None
        url, name = split_fragment(url)
        if name is not None:
            try:
                canonicalize_name(name, validate=True)
            except InvalidName:
                self.problem(origin, f"invalid project name {name!r} in '#egg={name}'")
                return None
        else:
            name = name_from_filename(url)
        if name is None:
            if extras or marker:
                self.problem(
                    origin,
                    f"{url} has extras or a marker but no project name; "
                    "add '#egg=NAME' after the path or URL",
                )
                return None
            return RequirementLine(requirement=None, url=url, hashes=hashes, origin=origin)
        text = f"{name}{extras} @ {url}" + (f" ; {marker}" if marker else "")
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            self.problem(origin, f"invalid requirement {text!r}: {str(exc).splitlines()[0]}")
            return None
        return RequirementLine(requirement=requirement, url=url, hashes=hashes, origin=origin)

    def _global_option(
        self, option: _Option, origin: Origin, base_dir: Path, constraint: bool
    ) -> None:
        value = option.value or ""
        is_url = option.name in URL_OPTIONS and SCHEME.match(value) is not None
        if (option.name in ("--index-url", "--extra-index-url") or is_url) and (
            message := url_problem(value)
        ) is not None:
            self.problem(origin, f"{option.written} {message}")
            return
        match option.name:
            case "--requirement" | "--constraint":
                self._include(option, value, origin, base_dir, constraint)
            case "--editable":
                self._editable(option, value, origin, base_dir, constraint)
            case "--hash":
                self.problem(
                    origin,
                    f"{option.written} must follow a requirement on the same line "
                    "(use a trailing backslash to continue the line)",
                )
            case "--index-url":
                self.index_url = value
            case "--extra-index-url":
                self.extra_index_urls.append(value)
            case "--find-links":
                # As pip, a local directory is relative to the requirements file.
                is_local = SCHEME.match(value) is None and not Path(value).is_absolute()
                self.find_links.append(str((base_dir / value).resolve()) if is_local else value)
            case "--trusted-host":
                self.trusted_hosts.append(value)
            case "--no-index":
                self.no_index = True
            case "--pre":
                self.pre = True
            case "--prefer-binary":
                self.prefer_binary = True
            case "--require-hashes":
                self.require_hashes = True
            case "--only-binary":
                self._format_control(value, self.only_binary, self.no_binary, option, origin)
            case "--no-binary":
                self._format_control(value, self.no_binary, self.only_binary, option, origin)
            case _:  # pragma: no cover - _options only lets known names through
                raise AssertionError(option.name)

    def _include(
        self, option: _Option, value: str, origin: Origin, base_dir: Path, constraint: bool
    ) -> None:
        """``-r FILE`` or ``-c FILE``: parse the local file it names, relative to this one."""
        if SCHEME.match(value):
            self.problem(
                origin,
                f"cannot include {value!r}: only local files can be included; "
                "download it and include the local copy",
            )
            return
        self.parse_file(
            base_dir / value,
            text=None,
            # Everything reached from a constraints file constrains.
            constraint=constraint or option.name == "--constraint",
            included_from=origin,
        )

    def _editable(
        self, option: _Option, value: str, origin: Origin, base_dir: Path, constraint: bool
    ) -> None:
        """``-e PATH_OR_URL``: a requirement like any other, only marked editable."""
        # A deployed app never edits its packages in place: the path or URL is
        # built into a wheel like any other, and the plan says so.
        if constraint:
            self.problem(origin, f"an editable requirement cannot constrain: {value!r}")
            return
        entry = self.requirement(value, origin=origin, base_dir=base_dir, hashes=())
        if entry is None:
            return
        if entry.url is None:
            self.problem(
                origin,
                f"editable requirement '{option.written} {value}' is not a path or URL; "
                "write the requirement without -e",
            )
            return
        self.requirements.append(replace(entry, editable=True))

    def _format_control(
        self, value: str, target: set[str], other: set[str], option: _Option, origin: Origin
    ) -> None:
        """Apply pip's --only-binary/--no-binary rules: the later option wins for a name."""
        for raw in value.split(","):
            name = raw.strip()
            if name == ":all:":
                target.clear()
                other.clear()
                target.add(":all:")
            elif name == ":none:":
                target.clear()
            else:
                try:
                    canonical = canonicalize_name(name, validate=True)
                except InvalidName:
                    self.problem(
                        origin,
                        f"{option.written} {value}: {name!r} is not a project name, "
                        "':all:' or ':none:'",
                    )
                    continue
                other.discard(canonical)
                target.add(canonical)


def _split_marker(text: str, separator: str) -> tuple[str, str, str]:
    location, sep, marker = text.partition(separator)
    return location.strip(), sep, marker.strip()


def _unique_paths(paths: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(paths))
