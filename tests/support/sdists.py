"""Real sdists that build offline with an in-tree PEP 517 backend: C, Fortran, build chains."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

from packaging.utils import canonicalize_name
from packaging.version import Version

__all__ = [
    "BUILD_HELPER_FUNCTION",
    "DEFAULT_GREETING",
    "DEFINE_SETTING",
    "DEFINE_VARIABLE",
    "GREETING_VARIABLE",
    "MALICIOUS_KINDS",
    "MISSING_HEADER",
    "MaliciousKind",
    "backend_source",
    "build_helper_stamp",
    "make_build_helper_sdist",
    "make_c_extension_sdist",
    "make_dependent_sdist",
    "make_failing_sdist",
    "make_fortran_sdist",
    "make_malicious_sdist",
]

GREETING_VARIABLE: Final = "FIXTURE_GREETING"
"""Environment variable whose value at build time becomes the built package's ``GREETING``."""

DEFAULT_GREETING: Final = "hello"
"""``GREETING`` of a package built without :data:`GREETING_VARIABLE` set."""

DEFINE_SETTING: Final = "define"
"""``config_settings`` key: ``"NAME=value"`` (or a list of them) added as ``-D`` to C compiles."""

DEFINE_VARIABLE: Final = "FIXTURE_VALUE"
"""The C macro a fixture extension reports through ``_speedups.build_define()``."""

MISSING_HEADER: Final = "definitely_missing_header.h"
"""The header :func:`make_failing_sdist` includes, so its build log names it."""

BUILD_HELPER_FUNCTION: Final = "stamp"
"""The function of a build helper that a dependent's backend calls during ``build_wheel``."""

MaliciousKind = Literal["dotdot", "absolute", "symlink", "hardlink"]
MALICIOUS_KINDS: Final[tuple[MaliciousKind, ...]] = get_args(MaliciousKind)

# Same fixed time as the other test artefacts (2020-01-01, after 1980 so zip accepts it).
_TAR_MTIME: Final = 1_577_836_800

# The backend shipped in every fixture sdist as ``_backend/backend.py``. It is a
# template: the factory substitutes the dynamic build requirements. It runs in the
# build environment with the standard library alone (tomli before Python 3.11), so
# it is plain unannotated Python.
_BACKEND_TEMPLATE: Final = r'''"""In-tree PEP 517 backend of fixture sdists: stdlib only, offline.

It reads ``[project]`` (name, version, dependencies) and ``[tool.fixture]`` from
pyproject.toml:

- ``package``: the import package directory copied into the wheel;
- ``defines``: C macros for every compile; ``config_settings["define"]``
  (``"NAME=value"`` or a list of them) adds to and overrides them;
- ``c_extensions``: ``{module, sources, link_args}`` compiled with sysconfig's CC into
  ``<module path><EXT_SUFFIX>`` (``link_args`` follow the sources: ``-L``, ``-l``);
- ``fortran_libraries``: ``{path, sources}`` compiled with gfortran into a shared
  library at ``path`` inside the wheel;
- ``import_at_build`` / ``call_at_build``: a module the build imports (failing
  loudly if the build environment lacks it) and a function of it whose return
  value is baked into the package.

Every wheel gets ``<package>/_build_info.py`` with GREETING (from the
FIXTURE_GREETING environment variable), CONFIG_SETTINGS, DEFINES and BUILD_VALUE.
``FIXTURE_BUILD_SECONDS`` in the build's environment makes ``build_wheel`` take
that long (a slow build, for tests of what runs while it builds).
"""

import base64
import gzip
import hashlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

# Written by the fixture factory: the answer of get_requires_for_build_wheel.
DYNAMIC_BUILD_REQUIRES = __FIXTURE_DYNAMIC_BUILD_REQUIRES__

GREETING_VARIABLE = "FIXTURE_GREETING"
SECONDS_VARIABLE = "FIXTURE_BUILD_SECONDS"
DEFAULT_GREETING = "hello"
DEFINE_SETTING = "define"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
TAR_MTIME = 1_577_836_800


class FixtureBuildError(RuntimeError):
    """A step of a fixture build failed; the message carries the tool's output."""


def _log(message):
    sys.stdout.write(f"[fixture-backend] {message}\n")
    sys.stdout.flush()


def _load():
    with Path("pyproject.toml").open("rb") as f:
        data = tomllib.load(f)
    return data["project"], data.get("tool", {}).get("fixture", {})


def _stem(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_info(project):
    return f"{_stem(project['name'])}-{project['version']}.dist-info"


def _is_pure(fixture):
    return not (fixture.get("c_extensions") or fixture.get("fortran_libraries"))


def _tag(fixture):
    if _is_pure(fixture):
        return "py3-none-any"
    interpreter = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{interpreter}-{interpreter}-{platform}"


def _metadata(project):
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    lines += [f"Requires-Dist: {req}" for req in project.get("dependencies", [])]
    return "\n".join(lines) + "\n\n"


def _wheel_file(fixture):
    purelib = "true" if _is_pure(fixture) else "false"
    return (
        "Wheel-Version: 1.0\n"
        "Generator: wheelbarrow-fixture-backend\n"
        f"Root-Is-Purelib: {purelib}\n"
        f"Tag: {_tag(fixture)}\n"
    )


def _record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _settings_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _defines(fixture, config_settings):
    defines = dict(fixture.get("defines", {}))
    for item in _settings_list(config_settings.get(DEFINE_SETTING)):
        name, _, value = item.partition("=")
        defines[name] = value
    return dict(sorted(defines.items()))


def _run(command):
    _log("+ " + shlex.join(command))
    try:
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise FixtureBuildError(f"cannot run {command[0]!r}: {exc}") from exc
    if result.stdout:
        sys.stderr.write(result.stdout)
        sys.stderr.flush()
    if result.returncode != 0:
        raise FixtureBuildError(
            f"command failed with exit code {result.returncode}: {shlex.join(command)}\n"
            f"{result.stdout}"
        )


def _compile_c(extension, defines, out_dir):
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    target = extension["module"].replace(".", "/") + sysconfig.get_config_var("EXT_SUFFIX")
    output = str(Path(out_dir, target.replace("/", "_")))
    flags = [f"-D{name}={value}" if value else f"-D{name}" for name, value in defines.items()]
    _run(
        [
            *compiler,
            "-shared",
            "-fPIC",
            "-I",
            sysconfig.get_paths()["include"],
            *flags,
            *extension["sources"],
            *extension.get("link_args", []),
            "-o",
            output,
        ]
    )
    return target, output


def _compile_fortran(library, out_dir):
    target = library["path"]
    output = str(Path(out_dir, target.replace("/", "_")))
    _run(["gfortran", "-shared", "-fPIC", *library["sources"], "-o", output])
    return target, output


def _call_build_requirement(project, fixture):
    module_name = fixture.get("import_at_build")
    if not module_name:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FixtureBuildError(
            f"build requirement {module_name!r} is not importable in the build environment"
            f" ({exc}); was it installed from [build-system] requires? sys.path={sys.path!r}"
        ) from exc
    _log(f"imported build requirement {module_name} from {module.__file__}")
    function_name = fixture.get("call_at_build")
    if not function_name:
        return None
    value = getattr(module, function_name)(project["name"])
    _log(f"{module_name}.{function_name}({project['name']!r}) returned {value!r}")
    return value


def _build_info(greeting, config_settings, defines, build_value):
    return (
        '"""Facts the fixture backend baked in at build time."""\n\n'
        f"GREETING = {greeting!r}\n"
        f"CONFIG_SETTINGS = {dict(sorted(config_settings.items()))!r}\n"
        f"DEFINES = {defines!r}\n"
        f"BUILD_VALUE = {build_value!r}\n"
    )


def _package_files(package):
    files = {}
    for path in sorted(Path(package).rglob("*"), key=lambda p: p.as_posix()):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.as_posix()] = (path.read_bytes(), False)
    return files


def get_requires_for_build_wheel(config_settings=None):
    _log(f"dynamic build requirements: {DYNAMIC_BUILD_REQUIRES!r}")
    return list(DYNAMIC_BUILD_REQUIRES)


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project, fixture = _load()
    dist_info = Path(metadata_directory, _dist_info(project))
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(_metadata(project), encoding="utf-8")
    (dist_info / "WHEEL").write_text(_wheel_file(fixture), encoding="utf-8")
    return dist_info.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project, fixture = _load()
    settings = dict(config_settings or {})
    name, version = project["name"], project["version"]
    tag = _tag(fixture)
    _log(f"building {name} {version} ({tag}) with config_settings={settings!r}")
    if os.environ.get(SECONDS_VARIABLE):
        _log(f"taking {os.environ[SECONDS_VARIABLE]}s, as {SECONDS_VARIABLE} says")
        time.sleep(float(os.environ[SECONDS_VARIABLE]))
    greeting = os.environ.get(GREETING_VARIABLE, DEFAULT_GREETING)
    _log(f"{GREETING_VARIABLE}={greeting!r}")
    build_value = _call_build_requirement(project, fixture)
    defines = _defines(fixture, settings)

    package = fixture["package"]
    files = _package_files(package)
    info = _build_info(greeting, settings, defines, build_value)
    files[f"{package}/_build_info.py"] = (info.encode("utf-8"), False)
    with tempfile.TemporaryDirectory(prefix="fixture-build-") as out_dir:
        built = [_compile_c(ext, defines, out_dir) for ext in fixture.get("c_extensions", [])]
        built += [_compile_fortran(lib, out_dir) for lib in fixture.get("fortran_libraries", [])]
        for target, output in built:
            files[target] = (Path(output).read_bytes(), True)

    dist_info = _dist_info(project)
    files = dict(sorted(files.items()))
    files[f"{dist_info}/METADATA"] = (_metadata(project).encode("utf-8"), False)
    files[f"{dist_info}/WHEEL"] = (_wheel_file(fixture).encode("utf-8"), False)
    record_path = f"{dist_info}/RECORD"
    record = "".join(
        f"{path},{_record_hash(data)},{len(data)}\n" for path, (data, _) in files.items()
    )
    files[record_path] = ((record + f"{record_path},,\n").encode("utf-8"), False)

    filename = f"{_stem(name)}-{version}-{tag}.whl"
    with zipfile.ZipFile(Path(wheel_directory, filename), "w") as archive:
        for path, (data, executable) in files.items():
            member = zipfile.ZipInfo(path, date_time=ZIP_DATE)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = (0o755 if executable else 0o644) << 16
            archive.writestr(member, data)
    _log(f"wrote {filename} ({len(files)} files)")
    return filename


def build_sdist(sdist_directory, config_settings=None):
    project, _ = _load()
    base = f"{_stem(project['name'])}-{project['version']}"
    out_dir = Path(sdist_directory).resolve()
    members = {}
    for path in Path().rglob("*"):
        skipped = "__pycache__" in path.parts or path.parts[0] in {"build", "dist", ".git"}
        if skipped or not path.is_file() or out_dir in path.resolve().parents:
            continue
        members[path.as_posix()] = path.read_bytes()
    members.setdefault("PKG-INFO", _metadata(project).encode("utf-8"))
    filename = f"{base}.tar.gz"
    with (
        Path(sdist_directory, filename).open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path in sorted(members):
            data = members[path]
            member = tarfile.TarInfo(f"{base}/{path}")
            member.size = len(data)
            member.mtime = TAR_MTIME
            member.mode = 0o644
            archive.addfile(member, io.BytesIO(data))
    _log(f"wrote {filename}")
    return filename
'''

_SPEEDUPS_C: Final = f"""\
/* A real CPython extension module for wheelbarrow's fixture sdists. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define FIXTURE_STR_(x) #x
#define FIXTURE_STR(x) FIXTURE_STR_(x)
#ifndef {DEFINE_VARIABLE}
#define {DEFINE_VARIABLE} unset
#endif

static PyObject *add(PyObject *self, PyObject *args) {{
    long long a, b;
    if (!PyArg_ParseTuple(args, "LL", &a, &b)) {{
        return NULL;
    }}
    return PyLong_FromLongLong(a + b);
}}

static PyObject *build_define(PyObject *self, PyObject *Py_UNUSED(ignored)) {{
    return PyUnicode_FromString(FIXTURE_STR({DEFINE_VARIABLE}));
}}

static PyMethodDef methods[] = {{
    {{"add", add, METH_VARARGS, "Return a + b."}},
    {{"build_define", build_define, METH_NOARGS,
     "The {DEFINE_VARIABLE} macro the extension was compiled with, as a string."}},
    {{NULL, NULL, 0, NULL}},
}};

static struct PyModuleDef module = {{
    PyModuleDef_HEAD_INIT, "_speedups", "Compiled helpers of a fixture package.", -1, methods,
}};

PyMODINIT_FUNC PyInit__speedups(void) {{
    return PyModule_Create(&module);
}}
"""

_FSUM_F90: Final = """\
! Summation for wheelbarrow's Fortran fixture, callable from C (and ctypes) as dsum.
subroutine dsum(n, x, s) bind(C, name="dsum")
    use, intrinsic :: iso_c_binding, only: c_int, c_double
    implicit none
    integer(c_int), value, intent(in) :: n
    real(c_double), intent(in) :: x(*)
    real(c_double), intent(out) :: s
    if (n < 0) then
        ! Formatted output lives in libgfortran: the library must really need it,
        ! so that repairing the wheel has to vendor libgfortran.
        write (*, '(a, i0)') 'dsum: negative length ', n
        s = 0.0_c_double
        return
    end if
    s = sum(x(1:n))
end subroutine dsum
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Fixture:
    """What one fixture sdist holds, before it is written as a tarball."""

    name: str
    version: str
    files: Mapping[str, str]
    package: str
    requires: Sequence[str] = ()
    build_requires: Sequence[str] = ()
    dynamic_build_requires: Sequence[str] = ()
    defines: Mapping[str, str] = field(default_factory=dict)
    c_extensions: Sequence[tuple[str, Sequence[str]]] = ()
    link_args: Sequence[str] = ()  # for every C extension, after its sources
    fortran_libraries: Sequence[tuple[str, Sequence[str]]] = ()
    import_at_build: str | None = None
    call_at_build: str | None = None


def _stem(name: str) -> str:
    """The name as it appears in sdist filenames and as the import package: ``my_pkg``."""
    return canonicalize_name(name).replace("-", "_")


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _toml_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_toml_string(v) for v in values) + "]"


def backend_source(dynamic_build_requires: Sequence[str] = ()) -> str:
    """The in-tree backend's source; ``get_requires_for_build_wheel`` answers the given list."""
    return _BACKEND_TEMPLATE.replace(
        "__FIXTURE_DYNAMIC_BUILD_REQUIRES__", json.dumps(list(dynamic_build_requires))
    )


def _pyproject(fixture: _Fixture) -> str:
    lines = [
        "[build-system]",
        f"requires = {_toml_list(fixture.build_requires)}",
        'build-backend = "backend"',
        'backend-path = ["_backend"]',
        "",
        "[project]",
        f"name = {_toml_string(fixture.name)}",
        f"version = {_toml_string(fixture.version)}",
        f"dependencies = {_toml_list(fixture.requires)}",
        "",
        "[tool.fixture]",
        f"package = {_toml_string(fixture.package)}",
    ]
    if fixture.defines:
        pairs = ", ".join(
            f"{_toml_string(k)} = {_toml_string(v)}" for k, v in sorted(fixture.defines.items())
        )
        lines.append(f"defines = {{ {pairs} }}")
    if fixture.import_at_build is not None:
        lines.append(f"import_at_build = {_toml_string(fixture.import_at_build)}")
    if fixture.call_at_build is not None:
        lines.append(f"call_at_build = {_toml_string(fixture.call_at_build)}")
    for module, sources in fixture.c_extensions:
        lines += [
            "",
            "[[tool.fixture.c_extensions]]",
            f"module = {_toml_string(module)}",
            f"sources = {_toml_list(sources)}",
        ]
        if fixture.link_args:
            lines.append(f"link_args = {_toml_list(fixture.link_args)}")
    for path, sources in fixture.fortran_libraries:
        lines += [
            "",
            "[[tool.fixture.fortran_libraries]]",
            f"path = {_toml_string(path)}",
            f"sources = {_toml_list(sources)}",
        ]
    return "\n".join(lines) + "\n"


def _pkg_info(name: str, version: str, requires: Sequence[str]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    return "\n".join(lines) + "\n\n"


def _regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    return info, b""


def _fixture_members(fixture: _Fixture) -> list[tuple[tarfile.TarInfo, bytes]]:
    base = f"{_stem(fixture.name)}-{fixture.version}"
    contents = {
        "PKG-INFO": _pkg_info(fixture.name, fixture.version, fixture.requires),
        "pyproject.toml": _pyproject(fixture),
        "_backend/backend.py": backend_source(fixture.dynamic_build_requires),
        **fixture.files,
    }
    return [_regular(f"{base}/{path}", text.encode("utf-8")) for path, text in contents.items()]


def _write_tarball(path: Path, members: Iterable[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """Write members sorted by name with fixed mtime and root ownership: same input, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        path.open("wb") as raw,
        # gzip stores a timestamp and the file name in its header: fix both.
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for info, data in sorted(members, key=lambda member: member[0].name):
            info.mtime = _TAR_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _write_fixture(directory: Path, fixture: _Fixture) -> Path:
    path = directory / f"{_stem(fixture.name)}-{fixture.version}.tar.gz"
    return _write_tarball(path, _fixture_members(fixture))


def _parse_define(define: str | None) -> dict[str, str]:
    if define is None:
        return {}
    name, _, value = define.partition("=")
    return {name: value}


def _init_py(docstring: str, version: str, imports: Sequence[str] = (), body: str = "") -> str:
    lines = [f'"""{docstring}"""', "", *imports, "", f'__version__ = "{version}"', ""]
    return "\n".join(lines) + (f"\n{body}" if body else "")


_BUILD_INFO_IMPORT: Final = (
    "from ._build_info import BUILD_VALUE, CONFIG_SETTINGS, DEFINES, GREETING"
)


def make_c_extension_sdist(
    directory: Path,
    name: str = "cext",
    version: str = "1.0",
    *,
    define: str | None = None,
    requires: Sequence[str] = (),
    build_requires: Sequence[str] = (),
    dynamic_build_requires: Sequence[str] = (),
    import_at_build: str | None = None,
    link_args: Sequence[str] = (),
) -> Path:
    """Write an sdist whose C extension ``<pkg>._speedups`` exposes ``add(a, b)``; return its path.

    The package re-exports ``add`` and ``build_define`` (the ``FIXTURE_VALUE``
    macro as compiled, ``"unset"`` by default) with the build facts ``GREETING``,
    ``CONFIG_SETTINGS``, ``DEFINES`` and ``BUILD_VALUE``. ``define``
    (``"FIXTURE_VALUE=x"``) is passed to every compile; the ``define`` config
    setting overrides it. ``requires`` become Requires-Dist, ``build_requires``
    the ``[build-system] requires``, ``dynamic_build_requires`` the answer of
    ``get_requires_for_build_wheel``; ``import_at_build`` names a module the
    backend must import during ``build_wheel``; ``link_args`` (``-L DIR``,
    ``-lNAME``) link the extension against a library.
    """
    package = _stem(name)
    version = str(Version(version))
    init = _init_py(
        f"{name}: a fixture package with a C extension.",
        version,
        [_BUILD_INFO_IMPORT, "from ._speedups import add, build_define"],
    )
    fixture = _Fixture(
        name=name,
        version=version,
        package=package,
        files={f"{package}/__init__.py": init, "src/speedups.c": _SPEEDUPS_C},
        requires=requires,
        build_requires=build_requires,
        dynamic_build_requires=dynamic_build_requires,
        defines=_parse_define(define),
        c_extensions=[(f"{package}._speedups", ["src/speedups.c"])],
        link_args=link_args,
        import_at_build=import_at_build,
    )
    return _write_fixture(directory, fixture)


def make_fortran_sdist(directory: Path, name: str = "fext", version: str = "1.0") -> Path:
    """Write an sdist whose gfortran-built ``<pkg>/libfsum.so`` backs ``<pkg>.dsum(values)``.

    The library links libgfortran, so repairing the wheel must vendor it; the
    package loads it with ctypes.
    """
    package = _stem(name)
    version = str(Version(version))
    body = (
        '_LIB = ctypes.CDLL(str(Path(__file__).with_name("libfsum.so")))\n'
        "_LIB.dsum.argtypes = [\n"
        "    ctypes.c_int,\n"
        "    ctypes.POINTER(ctypes.c_double),\n"
        "    ctypes.POINTER(ctypes.c_double),\n"
        "]\n"
        "_LIB.dsum.restype = None\n"
        "\n\n"
        "def dsum(values):\n"
        '    """The sum of ``values``, computed by the Fortran library."""\n'
        "    items = [float(v) for v in values]\n"
        "    total = ctypes.c_double()\n"
        "    _LIB.dsum(len(items), (ctypes.c_double * len(items))(*items), ctypes.byref(total))\n"
        "    return total.value\n"
    )
    init = _init_py(
        f"{name}: a fixture package whose Fortran library is loaded with ctypes.",
        version,
        ["import ctypes", "from pathlib import Path", "", _BUILD_INFO_IMPORT],
        body,
    )
    fixture = _Fixture(
        name=name,
        version=version,
        package=package,
        files={f"{package}/__init__.py": init, "src/fsum.f90": _FSUM_F90},
        fortran_libraries=[(f"{package}/libfsum.so", ["src/fsum.f90"])],
    )
    return _write_fixture(directory, fixture)


def build_helper_stamp(
    dependent: str, helper_name: str = "buildhelper", version: str = "1.0"
) -> str:
    """The value a dependent named ``dependent`` bakes in when built with that helper."""
    return f"{dependent} built with {helper_name} {Version(version)}"


def make_build_helper_sdist(
    directory: Path, name: str = "buildhelper", version: str = "1.0"
) -> Path:
    """Write a pure sdist whose module ``<pkg>.stamp(name)`` a dependent's backend calls."""
    package = _stem(name)
    version = str(Version(version))
    body = (
        f"def {BUILD_HELPER_FUNCTION}(name):\n"
        '    """The value a dependent bakes into its wheel, naming this helper."""\n'
        f'    return f"{{name}} built with {name} {{__version__}}"\n'
    )
    init = _init_py(f"{name}: a pure build requirement of fixture sdists.", version, body=body)
    fixture = _Fixture(
        name=name,
        version=version,
        package=package,
        files={f"{package}/__init__.py": init},
    )
    return _write_fixture(directory, fixture)


def make_dependent_sdist(
    directory: Path,
    name: str = "dependent",
    version: str = "1.0",
    build_requires: Sequence[str] = ("buildhelper",),
    install_requires: Sequence[str] = (),
    *,
    helper_module: str = "buildhelper",
) -> Path:
    """Write a pure sdist whose build imports ``helper_module`` and bakes its ``stamp`` value in.

    ``build_requires`` is its ``[build-system] requires``; without the helper
    importable the build fails, naming it. The built package's ``BUILD_VALUE``
    is :func:`build_helper_stamp` of its name.
    """
    package = _stem(name)
    version = str(Version(version))
    init = _init_py(
        f"{name}: a fixture package built with the help of {helper_module}.",
        version,
        [_BUILD_INFO_IMPORT],
    )
    fixture = _Fixture(
        name=name,
        version=version,
        package=package,
        files={f"{package}/__init__.py": init},
        requires=install_requires,
        build_requires=build_requires,
        import_at_build=helper_module,
        call_at_build=BUILD_HELPER_FUNCTION,
    )
    return _write_fixture(directory, fixture)


def make_failing_sdist(directory: Path, name: str = "broken", version: str = "1.0") -> Path:
    """Write an sdist whose C extension includes :data:`MISSING_HEADER`, so its build fails."""
    package = _stem(name)
    version = str(Version(version))
    source = f"#include <{MISSING_HEADER}>\n" + _SPEEDUPS_C
    fixture = _Fixture(
        name=name,
        version=version,
        package=package,
        files={
            f"{package}/__init__.py": _init_py(f"{name}: never builds.", version),
            "src/speedups.c": source,
        },
        c_extensions=[(f"{package}._speedups", ["src/speedups.c"])],
    )
    return _write_fixture(directory, fixture)


def make_malicious_sdist(
    directory: Path, kind: MaliciousKind, *, name: str | None = None, version: str = "1.0"
) -> Path:
    """Write an otherwise valid sdist with one member escaping the extraction root; return its path.

    ``dotdot``: a file ``../evil.txt``; ``absolute``: a file ``/tmp/evil.txt``;
    ``symlink``: ``<root>/link`` pointing to ``../../../etc/passwd``;
    ``hardlink``: ``<root>/hardlink`` linking to ``../outside.txt``. The name
    defaults to ``evil-<kind>``.
    """
    if kind not in MALICIOUS_KINDS:
        raise ValueError(
            f"unknown malicious sdist kind {kind!r}: expected one of {MALICIOUS_KINDS}"
        )
    name = name if name is not None else f"evil-{kind}"
    package = _stem(name)
    version = str(Version(version))
    base = f"{package}-{version}"
    fixture = _Fixture(
        name=name,
        version=version,
        package=package,
        files={f"{package}/__init__.py": _init_py(f"{name}: a hostile archive.", version)},
    )
    members = _fixture_members(fixture)
    evil = b"written outside the extraction root\n"
    if kind == "dotdot":
        members.append(_regular("../evil.txt", evil))
    elif kind == "absolute":
        members.append(_regular("/tmp/evil.txt", evil))
    elif kind == "symlink":
        members.append(_link(f"{base}/link", "../../../etc/passwd", tarfile.SYMTYPE))
    else:
        members.append(_link(f"{base}/hardlink", "../outside.txt", tarfile.LNKTYPE))
    return _write_tarball(directory / f"{base}.tar.gz", members)


SimdVariant = Literal["plain", "pragma", "target", "clones"]
SIMD_VARIANTS: Final[tuple[SimdVariant, ...]] = get_args(SimdVariant)

SIMD_C: Final = """\
/* A fixture extension summing int32 buffers, with AVX2 used in one of four ways.
 *
 * SIMD_PRAGMA: the package's own flags target AVX2 (as -mavx2 does) for all the code;
 * SIMD_TARGET: one function is compiled for AVX2 and chosen by __builtin_cpu_supports;
 * SIMD_CLONES: GCC's target_clones makes an AVX2 and a default variant, an ifunc picks;
 * none of them: plain C, compiled for whatever CFLAGS (e.g. -march=native) ask.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>

#if defined(SIMD_PRAGMA)
#pragma GCC target("avx2")
#endif

#if defined(SIMD_PRAGMA) || defined(SIMD_TARGET)
#if defined(SIMD_TARGET)
__attribute__((target("avx2")))
#endif
static long long sum_avx2(const int *v, Py_ssize_t n) {
    __m256i acc = _mm256_setzero_si256();
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc = _mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i *)(v + i)));
    }
    int lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, acc);
    long long total = 0;
    for (int k = 0; k < 8; k++) {
        total += lanes[k];
    }
    for (; i < n; i++) {
        total += v[i];
    }
    return total;
}
#endif

#if defined(SIMD_CLONES)
__attribute__((target_clones("avx2", "default")))
#endif
static long long sum_plain(const int *v, Py_ssize_t n) {
    double total = 0; /* floating point: code for AVX CPUs uses VEX-encoded adds */
    for (Py_ssize_t i = 0; i < n; i++) {
        total += v[i];
    }
    return (long long)total;
}

static PyObject *total(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    if (!PyArg_ParseTuple(args, "y*", &buffer)) {
        return NULL;
    }
    const int *values = buffer.buf;
    Py_ssize_t n = buffer.len / (Py_ssize_t)sizeof(int);
    long long sum;
#if defined(SIMD_TARGET)
    sum = __builtin_cpu_supports("avx2") ? sum_avx2(values, n) : sum_plain(values, n);
#elif defined(SIMD_PRAGMA)
    sum = sum_avx2(values, n);
#else
    sum = sum_plain(values, n);
#endif
    PyBuffer_Release(&buffer);
    return PyLong_FromLongLong(sum);
}

static PyMethodDef methods[] = {
    {"total", total, METH_VARARGS, "The sum of a buffer of native int32 values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_simd", "Sums with AVX2, one way or another.", -1, methods,
};

PyMODINIT_FUNC PyInit__simd(void) {
    return PyModule_Create(&module);
}
"""
"""The C source of :func:`make_simd_sdist`'s extension; ``-DSIMD_<VARIANT>`` picks the variant."""

_SIMD_DEFINES: Final[Mapping[SimdVariant, str]] = {
    "plain": "SIMD_PLAIN",
    "pragma": "SIMD_PRAGMA",
    "target": "SIMD_TARGET",
    "clones": "SIMD_CLONES",
}


def simd_define(variant: SimdVariant) -> str:
    """The macro that selects ``variant`` in :data:`SIMD_C`."""
    return _SIMD_DEFINES[variant]


def make_simd_sdist(
    directory: Path, name: str = "simdext", version: str = "1.0", *, variant: SimdVariant
) -> Path:
    """Write an sdist whose extension ``<pkg>._simd`` sums int32 buffers (``total(b)``).

    ``variant`` is how it uses AVX2 (see :data:`SIMD_C`). Its backend also passes
    ``CFLAGS`` from the environment to the compiler, as setuptools and meson do,
    so build settings such as ``env = { CFLAGS = "-march=native" }`` reach it.
    """
    if variant not in SIMD_VARIANTS:
        raise ValueError(f"unknown SIMD variant {variant!r}: expected one of {SIMD_VARIANTS}")
    package = _stem(name)
    version = str(Version(version))
    fixture = _Fixture(
        name=name,
        version=version,
        package=package,
        files={
            f"{package}/__init__.py": _init_py(
                f"{name}: sums with AVX2 ({variant}).", version, ["from ._simd import total"]
            ),
            "src/simd.c": SIMD_C,
        },
        defines={simd_define(variant): "1"},
        c_extensions=[(f"{package}._simd", ["src/simd.c"])],
    )
    members = []
    for info, data in _fixture_members(fixture):
        if info.name.endswith("/_backend/backend.py"):
            text = data.decode("utf-8")
            flags = "            *flags,\n"
            if text.count(flags) != 1:
                raise AssertionError("the fixture backend's C compile line changed")
            text = text.replace(
                flags, flags + '            *shlex.split(os.environ.get("CFLAGS", "")),\n'
            )
            info, data = _regular(info.name, text.encode("utf-8"))
        members.append((info, data))
    return _write_tarball(directory / f"{package}-{version}.tar.gz", members)


def unpack_into(sdist: Path, dest: Path) -> Path:
    """A project directory at ``dest`` holding what the sdist holds (as a checkout would)."""
    import tarfile

    with tarfile.open(sdist) as tar:
        tar.extractall(dest.parent / ".unpack", filter="data")
    [tree] = (dest.parent / ".unpack").iterdir()
    tree.rename(dest)
    (dest.parent / ".unpack").rmdir()
    return dest
