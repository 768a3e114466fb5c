"""Which BLAS a built wheel has: from its own build config, or from what its code links."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name, parse_wheel_filename

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow._core.report import Reporter

INSTALL_HINT = "apt-get install libopenblas-dev pkg-config"
"""What gives meson the BLAS numpy and scipy look for, on Debian and Ubuntu."""

# Packages whose builds look for a BLAS and fall back without one (numpy's meson
# build does, silently): without a build config to read, their code must link one.
_BLAS_USERS = frozenset({"numpy", "scipy"})

# Library file names (sonames, or auditwheel's vendored copies such as
# libopenblas-1a2b3c4d.so.0.3) of BLAS and LAPACK implementations, and what to call them.
_LIBRARIES = (
    (re.compile(r"^libscipy_openblas"), "scipy-openblas"),
    (re.compile(r"^libopenblas"), "openblas"),
    (re.compile(r"^libflexiblas"), "flexiblas"),
    (re.compile(r"^libmkl_"), "mkl"),
    (re.compile(r"^libblis"), "blis"),
    (re.compile(r"^libarmpl"), "armpl"),
    (re.compile(r"^lib[st]atlas"), "atlas"),
    (re.compile(r"^libc?blas[.-]"), "blas"),
)
_LAPACK_LIBRARY = re.compile(r"^liblapack[.-]")
_ELF_MAGIC = b"\x7fELF"


class BlasMissingError(WheelbarrowError):
    """A wheel that should link a BLAS was built without one, and a setting requires it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BlasFinding:
    """What a wheel says about its BLAS and LAPACK.

    ``expected`` is whether the wheel should have a BLAS at all: its build
    config has a BLAS entry (numpy's and scipy's ``__config__.py``), or it is
    numpy or scipy. ``blas`` and ``lapack`` name what was found (``"openblas
    0.3.21"``), ``None`` when none was. ``libraries`` are the BLAS and LAPACK
    libraries its code links or that it vendors. ``evidence`` says where this
    was read, for messages.
    """

    wheel: str
    package: str
    expected: bool
    blas: str | None
    lapack: str | None
    libraries: tuple[str, ...]
    evidence: str
    lapack_expected: bool = False

    @property
    def missing(self) -> tuple[str, ...]:
        """What an expected build lacks: ``("BLAS",)``, ``("LAPACK",)``, both or nothing."""
        if not self.expected:
            return ()
        gone = [] if self.blas else ["BLAS"]
        if self.lapack_expected and not self.lapack:
            gone.append("LAPACK")
        return tuple(gone)

    def describe(self) -> str:
        """One line for reports: ``"openblas 0.3.21 (vendored: libopenblas-….so.0)"``."""
        if not (self.blas or self.lapack):
            return "none"
        found = self.blas or "no BLAS"
        if self.lapack and self.lapack != self.blas:
            found += f", LAPACK {self.lapack}"
        elif not self.lapack and self.lapack_expected:
            found += ", no LAPACK"
        return found + (f" ({', '.join(self.libraries)})" if self.libraries else "")

    def as_json(self) -> dict[str, object]:
        """For the build report and the build cache (:meth:`from_json` reads it back)."""
        return {
            "wheel": self.wheel,
            "package": self.package,
            "expected": self.expected,
            "lapack_expected": self.lapack_expected,
            "blas": self.blas,
            "lapack": self.lapack,
            "libraries": list(self.libraries),
            "missing": list(self.missing),
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: object) -> BlasFinding | None:
        """A finding recorded by :meth:`as_json`, or None when ``data`` is not one."""
        if not isinstance(data, dict):
            return None
        try:
            libraries = data["libraries"]
            found = cls(
                wheel=str(data["wheel"]),
                package=str(data["package"]),
                expected=bool(data["expected"]),
                lapack_expected=bool(data["lapack_expected"]),
                blas=None if data["blas"] is None else str(data["blas"]),
                lapack=None if data["lapack"] is None else str(data["lapack"]),
                libraries=tuple(str(x) for x in libraries),
                evidence=str(data["evidence"]),
            )
        except (KeyError, TypeError):
            return None
        return found


def inspect_wheel(path: Path) -> BlasFinding:
    """What BLAS the wheel at ``path`` was built with.

    A meson build config in the wheel (``<package>/__config__.py``, as numpy
    and scipy write it) is read without running it; otherwise the wheel's
    ELF files are read for the libraries they link (``DT_NEEDED``) and the
    libraries auditwheel vendored (``<package>.libs/``).
    """
    name = canonicalize_name(parse_wheel_filename(path.name)[0])
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        vendored = tuple(
            sorted(
                PurePosixPath(n).name
                for n in names
                if _is_vendored(n) and _kind(PurePosixPath(n).name) is not None
            )
        )
        for member in sorted(n for n in names if _is_build_config(n)):
            config = _read_build_config(archive.read(member))
            if config is not None:
                return _from_config(path.name, name, member, config, vendored)
        linked = _linked_libraries(archive, names)
    libraries = tuple(sorted({*vendored, *linked}))
    kinds = {kind for lib in libraries if (kind := _kind(lib)) is not None}
    blas_names = sorted(k for k in kinds if k != "lapack")
    blas = blas_names[0] if blas_names else None
    lapack = "lapack" if "lapack" in kinds else blas
    if libraries:
        evidence = "its code links " + ", ".join(libraries)
    else:
        evidence = "no extension module links a BLAS library"
    return BlasFinding(
        wheel=path.name,
        package=name,
        expected=name in _BLAS_USERS,
        blas=blas,
        lapack=lapack,
        libraries=libraries,
        evidence=evidence,
    )


def check_finding(
    finding: BlasFinding, *, label: str, required: bool, expected: bool = False
) -> str | None:
    """A warning when an expected BLAS (or LAPACK) is missing; an error when ``required``.

    ``expected`` (a package's own ``require-blas``) makes a wheel that would not
    otherwise be expected to have a BLAS (a package of your own) need one.
    """
    checked = _expecting(finding) if expected and not finding.expected else finding
    missing = checked.missing
    if not missing:
        return None
    what = " and ".join(missing)
    if required:
        raise BlasMissingError(
            f"{label}: built without {what} ({finding.evidence}), and require-blas is set",
            hint=f"install OpenBLAS and pkg-config ({INSTALL_HINT}) and build again; "
            "nothing was stored",
        )
    return (
        f"{label} was built without {what} ({finding.evidence}): its linear algebra "
        f"runs on slow fallback loops. Install OpenBLAS and pkg-config ({INSTALL_HINT}) "
        "and build again (require-blas = true makes this an error)"
    )


def check_built_wheel(
    wheel: Path,
    *,
    label: str,
    required: bool,
    log: Path | None,
    reporter: Reporter,
    finding: BlasFinding | None = None,
    expected: bool = False,
) -> BlasFinding:
    """Inspect a built wheel (unless ``finding`` was recorded), warn or raise, note it in ``log``.

    ``log`` is None for a wheel reused from the build cache, whose log is kept as it was.

    The warning goes to ``reporter`` and the log; with ``required``, a missing
    BLAS raises :class:`BlasMissingError` (noted in the log first). ``expected``
    is as for :func:`check_finding`.
    """
    if finding is None:
        finding = inspect_wheel(wheel)
    try:
        warning = check_finding(finding, label=label, required=required, expected=expected)
    except BlasMissingError as exc:
        _note(log, f"# {exc.message}")
        raise
    if warning is not None:
        _note(log, f"# warning: {warning}")
        reporter.message("warning", warning)
    elif finding.blas or finding.lapack:
        _note(log, f"# BLAS: {finding.describe()}; from {finding.evidence}")
    return finding


def _note(log: Path | None, line: str) -> None:
    if log is None:
        return
    with contextlib.suppress(OSError), log.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def _expecting(finding: BlasFinding) -> BlasFinding:
    return BlasFinding(
        wheel=finding.wheel,
        package=finding.package,
        expected=True,
        blas=finding.blas,
        lapack=finding.lapack,
        libraries=finding.libraries,
        evidence=finding.evidence,
        lapack_expected=finding.lapack_expected,
    )


def _is_build_config(member: str) -> bool:
    parts = PurePosixPath(member).parts
    return len(parts) == 2 and parts[1] == "__config__.py"


def _is_vendored(member: str) -> bool:
    parts = PurePosixPath(member).parts
    return len(parts) == 2 and parts[0].endswith(".libs")


def _kind(library: str) -> str | None:
    """``"openblas"``, ``"lapack"``…, or ``None`` for a library that is neither."""
    if _LAPACK_LIBRARY.match(library):
        return "lapack"
    for pattern, kind in _LIBRARIES:
        if pattern.match(library):
            return kind
    return None


def _linked_libraries(archive: zipfile.ZipFile, names: list[str]) -> set[str]:
    """The BLAS and LAPACK libraries the wheel's ELF files need (``DT_NEEDED``)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    found: set[str] = set()
    for member in names:
        base = PurePosixPath(member).name
        if not (base.endswith(".so") or ".so." in base) or _is_vendored(member):
            continue
        data = archive.read(member)
        if not data.startswith(_ELF_MAGIC):
            continue
        try:
            elf = ELFFile(io.BytesIO(data))
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    # pyelftools sets ``needed`` on DT_NEEDED tags as it parses them.
                    needed = (str(getattr(t, "needed", "")) for t in section.iter_tags("DT_NEEDED"))
                    found.update(n for n in needed if _kind(n) is not None)
        except ELFError:
            continue  # not a loadable object: it links nothing
    return found


def _read_build_config(source: bytes) -> dict[str, dict[str, object]] | None:
    """The "Build Dependencies" table of a meson ``__config__.py``, without running it."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "Build Dependencies"
                    and isinstance(value, ast.Dict)
                ):
                    return _dependencies(value)
    return None


def _dependencies(node: ast.Dict) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and isinstance(value, ast.Dict):
            out[str(key.value)] = {
                str(k.value): _value(v)
                for k, v in zip(value.keys, value.values, strict=True)
                if isinstance(k, ast.Constant)
            }
    return out


def _value(node: ast.expr) -> object:
    """A literal, or meson's ``bool("@FOUND@".lower().replace("false", ""))`` evaluated."""
    if isinstance(node, ast.Constant):
        return node.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "bool"
        and len(node.args) == 1
    ):
        # The string the method calls start from: "True".lower().replace(...).
        inner = node.args[0]
        while isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute):
            inner = inner.func.value
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            return inner.value.strip().lower() not in ("", "false", "0", "no")
    return None


def _from_config(
    wheel: str,
    package: str,
    member: str,
    config: dict[str, dict[str, object]],
    vendored: tuple[str, ...],
) -> BlasFinding:
    blas_entry, lapack_entry = config.get("blas"), config.get("lapack")
    blas, lapack = _found(blas_entry), _found(lapack_entry)
    if blas_entry is None and lapack_entry is None:
        evidence = f"{member} names no BLAS"
    else:
        said = [
            f"{what} {entry.get('name')!s} " + ("found" if found else "not found")
            for what, entry, found in (
                ("blas", blas_entry, blas),
                ("lapack", lapack_entry, lapack),
            )
            if entry is not None
        ]
        evidence = f"{member}: " + ", ".join(said)
    return BlasFinding(
        wheel=wheel,
        package=package,
        expected=blas_entry is not None or package in _BLAS_USERS,
        blas=blas,
        lapack=lapack,
        libraries=vendored,
        evidence=evidence,
        lapack_expected=lapack_entry is not None,
    )


def _found(entry: dict[str, object] | None) -> str | None:
    """``"openblas 0.3.21"`` for an entry meson found, else ``None``."""
    if entry is None:
        return None
    found = entry.get("found")
    if found is None:  # an older layout without the flag: a version means found
        found = bool(entry.get("version"))
    if not found:
        return None
    name, version = entry.get("name") or "unknown", entry.get("version")
    return f"{name} {version}" if version else str(name)
