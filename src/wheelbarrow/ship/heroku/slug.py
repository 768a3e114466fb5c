"""What ships in the slug: ``.slugignore``, test suites and caches stripped, sizes."""

# Walks over every file of the slug work on str paths with os.* on purpose,
# as environment.py and store.py do: pathlib costs over thousands of files.

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.text import human_size, plural

if TYPE_CHECKING:
    from wheelbarrow.ship.heroku.slugtests import Scans

# The buildpack's own output: never removed, whatever .slugignore says.
PROTECTED = (".heroku", ".profile.d")

# Tool caches that are never needed at run time, wherever they are in the app.
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
# Installer caches that land in the build directory when HOME pointed there.
INSTALLER_CACHES = (".cache/pip", ".cache/uv")

TEST_DIRS = frozenset({"test", "tests"})
# Test packages that are public API, imported by users' code (``from django.test
# import TestCase`` in a management command, twisted's ``proto_helpers``).
NEVER_STRIP = frozenset({"numpy/testing", "django/test", "twisted/test"})


# --- .slugignore -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SlugPattern:
    """One line of a ``.slugignore``, compiled to match paths relative to the app root."""

    text: str
    regex: re.Pattern[str]
    dir_only: bool

    def matches(self, rel: str, *, is_dir: bool) -> bool:
        """Whether the POSIX path ``rel`` (relative to the app root) is excluded by this line."""
        if self.dir_only and not is_dir:
            return False
        return self.regex.fullmatch(rel) is not None


def _segment_regex(segment: str) -> str:
    """One path segment of a glob: ``*`` and ``?`` stay within it, ``[...]`` is a class."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "\\" and i + 1 < len(segment):
            out.append(re.escape(segment[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            start = i + 1
            negate = segment[start : start + 1] in ("!", "^")
            if negate:
                start += 1
            # A "]" right after "[" or "[!" is a member, as in fnmatch.
            end = segment.find("]", start + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                members = "".join(ch if ch == "-" else re.escape(ch) for ch in segment[start:end])
                out.append("[" + ("^" if negate else "") + members + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def compile_pattern(line: str) -> SlugPattern | None:
    """Compile one ``.slugignore`` line, or ``None`` for blanks, comments and negations.

    Heroku reads the file like a ``.gitignore`` without negation: a pattern
    with a ``/`` before its end is relative to the app root (``/spec``,
    ``docs/build``), one without matches a name at any depth (``*.psd``); a
    trailing ``/`` matches only directories; ``**`` spans directories.
    """
    text = line.rstrip("\n\r")
    # Trailing spaces are not part of the pattern unless escaped.
    stripped = text.rstrip(" \t")
    if stripped.endswith("\\") and len(stripped) < len(text):
        stripped += text[len(stripped)]
    pattern = stripped
    if not pattern or pattern.startswith("#") or pattern.startswith("!"):
        return None
    if pattern.startswith(("\\#", "\\!")):
        pattern = pattern[1:]
    dir_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    if not pattern:
        return None
    segments = pattern.split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(segment) + ("" if last else "/"))
    body = "".join(parts)
    regex = body if anchored else "(?:[^/]+/)*" + body
    return SlugPattern(text=stripped, regex=re.compile(regex, re.DOTALL), dir_only=dir_only)


def parse_slugignore(text: str) -> list[SlugPattern]:
    """The patterns of a ``.slugignore`` file's text, in order."""
    return [p for p in map(compile_pattern, text.splitlines()) if p is not None]


def apply_slugignore(build_dir: Path) -> list[str]:
    """Remove what ``BUILD_DIR/.slugignore`` excludes; return the removed paths, app-relative.

    Heroku applies the file before compiling; here it is applied after, so it
    can also drop build products. ``.heroku/`` and ``.profile.d/`` (the
    environment and its start-up scripts) are never removed. A matched
    directory goes whole; symbolic links are removed, never followed.
    """
    try:
        text = (build_dir / ".slugignore").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    patterns = parse_slugignore(text)
    removed: list[str] = []
    if not patterns:
        return removed

    def visit(directory: str, rel: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if not rel and entry.name in PROTECTED:
                continue
            path = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if any(p.matches(path, is_dir=is_dir) for p in patterns):
                _remove(entry.path)
                removed.append(path)
            elif is_dir:
                visit(entry.path, path)

    visit(str(build_dir), "")
    return removed


# --- stripping tests and caches ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StripReport:
    """What :func:`strip_slug` removed: paths (relative to the build directory), files, bytes."""

    paths: tuple[str, ...]
    files_removed: int
    bytes_removed: int

    def describe(self) -> str:
        """``412 files (9.8 MB) in 37 places``, for the build log."""
        return (
            f"{plural(self.files_removed, 'file')} ({human_size(self.bytes_removed)}) "
            f"in {plural(len(self.paths), 'place')}"
        )


def strippable_tests(
    env_root: Path, *, known: Path | None = None, env: str | None = None
) -> list[tuple[str, int, int]]:
    """The test packages :func:`strip_slug` removes from the environment at ``env_root``
    (POSIX paths relative to it, with their files and bytes), found by its rules and kept in
    ``known`` as it keeps them: for a clone of that environment to leave out, so that they
    are never copied into the slug (then given to :func:`strip_slug` as ``never_copied``)."""
    sites = sorted(env_root.glob("lib/python*/site-packages"))
    found = _known_test_packages(env_root, sites, known, env)
    return [(_relative(t, env_root), f, b) for t, f, b in found]


def strip_slug(
    build_dir: Path,
    *,
    site_packages: Sequence[Path],
    known: Path | None = None,
    env: str | None = None,
    never_copied: Sequence[tuple[str, int, int]] | None = None,
) -> StripReport:
    """Remove test suites and caches that would only make the slug bigger.

    In each ``site_packages``: directories named ``tests`` or ``test`` inside
    a package (their parent has an ``__init__.py``, or they are a subpackage
    themselves). Kept: top-level directories (a distribution may really be
    called ``tests``), names a distribution's ``top_level.txt`` lists, known
    public test APIs (``numpy/testing``, ``django/test``), and any test package
    that a module outside the test packages imports. Bytecode in site-packages
    is kept: it is the compiled environment.

    In the rest of the app, outside environments (site-packages, virtual
    environments, Python installations, ``.heroku/``): ``__pycache__``,
    ``.pytest_cache``, ``.mypy_cache``, ``.ruff_cache``, stray ``*.pyc`` and
    pip's and uv's caches under ``.cache/``.

    ``known`` is a file in the build cache that keeps what this strip found, for the next
    (see :mod:`wheelbarrow.ship.heroku.slugtests`): the test packages of the environment
    whose key is ``env`` and their sizes, taken as they are for the same environment, and
    what each package's modules import of test packages, by the files its distribution
    installed, so a changed pin reads only the changed packages' modules.

    ``never_copied`` gives the test packages of ``site_packages`` that the slug's clone of
    the environment left out (:func:`strippable_tests`; paths relative to ``build_dir``, files,
    bytes): they are reported as stripped and not looked for again.
    """
    if never_copied is None:
        sized = _known_test_packages(build_dir, site_packages, known, env)
    else:
        sized = [(os.path.join(build_dir, rel), f, b) for rel, f, b in never_copied]
    targets = [t for t, _, _ in sized]
    for name in INSTALLER_CACHES:
        candidate = build_dir / name
        if candidate.is_dir() and not candidate.is_symlink():
            targets.append(str(candidate))
    skip = {os.path.realpath(p) for p in [*map(str, site_packages), *targets]}
    targets.extend(_app_caches(str(build_dir), skip))

    sizes = {t: (f, b) for t, f, b in sized}
    files = size = 0
    paths: list[str] = []
    for target in targets:
        if target in sizes:
            f, b = sizes[target]
        elif os.path.lexists(target):
            f, b = _tree_size(target)
        else:
            continue
        files, size = files + f, size + b
        if os.path.lexists(target):  # a test package the clone left out never was there
            _remove(target)
        paths.append(_relative(target, build_dir))
    cache = build_dir / ".cache"
    if cache.is_dir() and not cache.is_symlink() and not any(cache.iterdir()):
        cache.rmdir()
    return StripReport(paths=tuple(paths), files_removed=files, bytes_removed=size)


def _known_test_packages(
    build_dir: Path, site_packages: Sequence[Path], known: Path | None, env: str | None
) -> list[tuple[str, int, int]]:
    """The test packages of ``site_packages`` (absolute paths) with their files and bytes:
    from ``known`` for the same environment, else found (with what ``known`` says of the
    packages' imports), measured, and kept there."""
    from wheelbarrow.ship.heroku.slugtests import KnownTests

    cached = KnownTests(known, env)
    sites = [_relative(str(sp), build_dir) for sp in site_packages]
    found = cached.tests(build_dir, sites)
    if found is not None:
        return found
    targets = [t for sp in site_packages for t in _test_packages(sp, cached.scans)]
    measured = [(t, *_tree_size(t)) for t in targets]
    cached.keep(build_dir, sites, measured)
    return measured


def _relative(path: str, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else Path(rel).as_posix()


def _top_level_names(site_packages: Path) -> set[str]:
    names: set[str] = set()
    for pattern in ("*.dist-info/top_level.txt", "*.egg-info/top_level.txt"):
        for record in site_packages.glob(pattern):
            try:
                text = record.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            names.update(line.strip().replace("\\", "/").strip("/") for line in text.splitlines())
    names.discard("")
    return names


def _test_packages(site_packages: Path, scans: Scans | None = None) -> list[str]:
    """The test directories to remove from one site-packages (absolute paths)."""
    root = str(site_packages)
    if not os.path.isdir(root):
        return []
    protected = _top_level_names(site_packages) | NEVER_STRIP
    candidates: dict[str, str] = {}  # rel path -> absolute path
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            # Only inside top-level packages: metadata and top-level names are not packages.
            dirnames[:] = [
                d
                for d in dirnames
                if not d.endswith((".dist-info", ".egg-info", ".data")) and d != "__pycache__"
            ]
            continue
        rel_dir = Path(rel_dir).as_posix()
        parent_is_package = "__init__.py" in filenames
        keep: list[str] = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            rel = f"{rel_dir}/{d}"
            if (
                d in TEST_DIRS
                and rel not in protected
                and not os.path.islink(full)
                and (parent_is_package or os.path.isfile(os.path.join(full, "__init__.py")))
            ):
                candidates[rel] = full
            elif d != "__pycache__":
                keep.append(d)
        dirnames[:] = keep
    if not candidates:
        return []
    used = _imported_test_packages(root, candidates, scans)
    return [full for rel, full in sorted(candidates.items()) if rel not in used]


_FROM = re.compile(
    r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)", re.MULTILINE
)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#;]+)", re.MULTILINE)


def _imported_modules(text: str, package: str) -> Iterator[str]:
    """Dotted names a module's import statements mention (a textual scan, no execution)."""
    for match in _IMPORT.finditer(text):
        for item in match.group(1).split(","):
            words = item.split()
            if words:
                yield words[0]
    for match in _FROM.finditer(text):
        dots, module, names = match.groups()
        if dots:
            parts = package.split(".") if package else []
            parts = parts[: len(parts) - (len(dots) - 1)] if len(dots) > 1 else parts
            base = ".".join([*parts, module] if module else parts)
        else:
            base = module
        if not base:
            continue
        yield base
        for item in names.strip("()").split(","):
            words = item.split()
            if words and words[0] != "*":
                yield f"{base}.{words[0]}"


def _imported_test_packages(
    root: str, candidates: dict[str, str], scans: Scans | None = None
) -> set[str]:
    """The candidates (rel paths) that a module outside every candidate imports.

    Such a test package is part of what the distribution runs (a helper it
    exposes, a command that loads it), so removing it could break the app.
    ``scans`` knows what some packages' modules import, by their files.
    """
    dotted = {rel.replace("/", "."): rel for rel in candidates}
    inside = tuple(full + os.sep for full in candidates.values())
    tops = {rel.split("/", 1)[0] for rel in candidates}
    used: set[str] = set()
    for top in sorted(tops):
        tests = [rel for rel in candidates if rel.split("/", 1)[0] == top]
        imports = scans.imports(root, top, tests) if scans is not None else None
        if imports is None:
            imports = sorted(set(_test_like_imports(root, top, inside)))
            if scans is not None:
                scans.keep(root, top, tests, imports)
        for module in imports:
            for candidate, rel in dotted.items():
                if module == candidate or module.startswith(candidate + "."):
                    used.add(rel)
    return used


def _test_like_imports(root: str, top: str, inside: tuple[str, ...]) -> Iterator[str]:
    """What the modules of ``root/top`` outside the test packages import whose name could be
    a test package's (a textual scan, no execution)."""
    from wheelbarrow.ship.heroku.slugtests import test_like

    for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
        if (dirpath + os.sep).startswith(inside):
            dirnames[:] = []
            continue
        package = Path(os.path.relpath(dirpath, root)).as_posix().replace("/", ".")
        for name in filenames:
            # conftest.py is pytest's, part of the test suite wherever it sits.
            if not name.endswith(".py") or name == "conftest.py":
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            if "test" in text:
                yield from test_like(_imported_modules(text, package), TEST_DIRS)


def _is_environment(path: str) -> bool:
    """A virtual environment or a Python installation, whose bytecode is part of it."""
    if os.path.isfile(os.path.join(path, "pyvenv.cfg")):
        return True
    lib = os.path.join(path, "lib")
    if not os.path.isdir(os.path.join(path, "bin")) or not os.path.isdir(lib):
        return False
    try:
        names = os.listdir(lib)
    except OSError:
        return False
    return any(
        n.startswith("python3") and os.path.isfile(os.path.join(lib, n, "os.py")) for n in names
    )


def _app_caches(build_dir: str, skip: set[str]) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(build_dir):
        at_root = dirpath == build_dir
        keep: list[str] = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if (at_root and d in PROTECTED) or os.path.islink(full):
                continue
            if d in CACHE_DIRS:
                found.append(full)
            elif os.path.realpath(full) not in skip and not _is_environment(full):
                keep.append(d)
        dirnames[:] = keep
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".pyc"))
    return found


# --- sizes -------------------------------------------------------------------------


def _tree_size(path: str) -> tuple[int, int]:
    """Files and apparent bytes under ``path`` (or of ``path`` itself), links not followed."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return 1, st.st_size
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def slug_size(build_dir: Path) -> int:
    """The apparent size in bytes of what ships: file contents and link lengths.

    Symbolic links count as themselves, never as what they point to; a file
    with several hard links counts once; directories add nothing.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(build_dir)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                    continue
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
    return total
