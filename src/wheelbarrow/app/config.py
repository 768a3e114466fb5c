"""Build settings: ``[tool.wheelbarrow]`` in pyproject.toml, or a standalone wheelbarrow.toml."""

from __future__ import annotations

import difflib
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from packaging.utils import InvalidName, NormalizedName, canonicalize_name

from wheelbarrow._core.digests import file_sha256, json_sha256
from wheelbarrow._core.errors import InputError
from wheelbarrow._core.redact import redact_urls

CONFIG_FILE = "wheelbarrow.toml"
RepairMode = Literal["auto", "never"]
# The portability check's settings (build/portability.py reads code against them).
PortableMode = Literal["warn", "error", "off"]
PORTABLE_MODES: tuple[PortableMode, ...] = get_args(PortableMode)
Baseline = Literal["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"]
BASELINES: tuple[Baseline, ...] = get_args(Baseline)
# numpy (2.4 and later) itself needs x86-64-v2 and refuses to import on less; every
# x86-64 CPU since 2009 has it. What -march=native adds on a build machine of the
# last ten years is AVX, AVX2, BMI, FMA (v3) and AVX-512 (v4), which this reports.
DEFAULT_BASELINE: Baseline = "x86-64-v2"
ALL = ":all:"
_TOP_KEYS = ("no-binary", "only-binary", "repair", "build-jobs", "require-blas", "portable",
             "cpu-baseline", "script-check", "remote", "push", "cluster",
             "packages")  # fmt: skip
_PACKAGE_KEYS = ("env", "config-settings", "system", "patches", "exclusive", "require-blas",
                 "portable")  # fmt: skip

ConfigValue = str | tuple[str, ...]
# `push = true` as an environment variable (or buildpack config var): 1 or 0.
PUSH_ENV_VAR = "WHEELBARROW_PUSH"
_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_REMOTE_FORMS = "s3://BUCKET/PREFIX or oci://REGISTRY/REPOSITORY"


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageSettings:
    """How to build one package from source."""

    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    config_settings: Mapping[str, ConfigValue] = field(default_factory=lambda: MappingProxyType({}))
    system: tuple[str, ...] = ()
    patches: tuple[Path, ...] = ()
    exclusive: bool = False
    # Whether a wheel built without BLAS is an error (None: the top-level setting decides).
    # It changes no wheel, so it is not in the digest.
    require_blas: bool | None = None
    # What code beyond the CPU baseline in its wheel is (None: the top-level setting).
    portable: PortableMode | None = None

    def digest(self) -> str:
        """A hash of everything that changes the built wheel (patch contents included)."""
        data = {
            "env": dict(sorted(self.env.items())),
            "config_settings": {k: self.config_settings[k] for k in sorted(self.config_settings)},
            "patches": [file_sha256(p) for p in self.patches],
        }
        return json_sha256(data)[:32]

    def config_settings_dict(self) -> dict[str, str | list[str]]:
        """The config settings in the form PEP 517 backends receive."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.config_settings.items()}


NO_SETTINGS = PackageSettings()


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildConfig:
    """Which packages to build from source, and how."""

    no_binary: frozenset[str] = frozenset()
    only_binary: frozenset[str] = frozenset()
    repair: RepairMode = "auto"
    jobs: int | None = None
    require_blas: bool = False
    portable: PortableMode = "warn"
    cpu_baseline: Baseline = DEFAULT_BASELINE
    # After an install the buildpacks import every console script's module; false skips
    # that (the dependency check stays). Not part of any key: it changes no wheel.
    script_check: bool = True
    # The remote store shared by machines, and whether builds upload to it. Not part of any
    # key: where a wheelhouse is kept changes none of its bytes.
    remote: str | None = None
    push: bool = False
    # The Dask scheduler that runs the source builds (tcp://HOST:PORT); None builds here.
    # Not part of any key either: a worker refuses a build whose key is not the head's.
    cluster: str | None = None
    packages: Mapping[NormalizedName, PackageSettings] = field(
        default_factory=lambda: MappingProxyType({})
    )
    source: Path | None = None

    def for_package(self, name: str) -> PackageSettings:
        """The settings of ``name`` (empty when it has none)."""
        return self.packages.get(canonicalize_name(name), NO_SETTINGS)

    def requires_blas(self, name: str) -> bool:
        """Whether a build of ``name`` without BLAS is an error rather than a warning."""
        own = self.for_package(name).require_blas
        return self.require_blas if own is None else own

    def expects_blas(self, name: str) -> bool:
        """Whether ``name``'s own settings say it must have a BLAS (whatever it is)."""
        return self.for_package(name).require_blas is True

    def portable_mode(self, name: str) -> PortableMode:
        """What code beyond the CPU baseline in the wheel of ``name`` is: warn, error or off."""
        own = self.for_package(name).portable
        return self.portable if own is None else own

    def forces_source(self, name: str) -> bool:
        """Whether ``name`` must be built from source even when a wheel exists."""
        canonical = canonicalize_name(name)
        if canonical in self.only_binary:
            return False
        return ALL in self.no_binary or canonical in self.no_binary

    def forbids_source(self, name: str) -> bool:
        """Whether ``name`` must never be built from source."""
        canonical = canonicalize_name(name)
        if canonical in self.no_binary:
            return False
        return ALL in self.only_binary or canonical in self.only_binary

    def with_overrides(
        self,
        *,
        no_binary: Iterable[str] = (),
        only_binary: Iterable[str] = (),
        repair: RepairMode | None = None,
        jobs: int | None = None,
    ) -> BuildConfig:
        """These settings with the command line's on top (names added, scalars replaced)."""
        return replace(
            self,
            no_binary=self.no_binary | _names(no_binary),
            only_binary=self.only_binary | _names(only_binary),
            repair=repair or self.repair,
            jobs=jobs or self.jobs,
        )

    def key_data(self) -> dict[str, object]:
        """What of these settings belongs in the wheelhouse key."""
        data: dict[str, object] = {
            "no_binary": sorted(self.no_binary),
            "only_binary": sorted(self.only_binary),
            "repair": self.repair,
            "packages": {name: s.digest() for name, s in sorted(self.packages.items())},
        }
        # Turning it on must check the wheels again; absent, the keys stay as they were.
        own = {n: s.require_blas for n, s in sorted(self.packages.items()) if s.require_blas}
        if self.require_blas or own:
            data["require_blas"] = {"all": self.require_blas, "packages": own}
        # The same for the portability check: the default leaves the keys as they were.
        modes = {n: s.portable for n, s in sorted(self.packages.items()) if s.portable}
        if self.portable != "warn" or self.cpu_baseline != DEFAULT_BASELINE or modes:
            data["portable"] = {
                "all": self.portable,
                "baseline": self.cpu_baseline,
                "packages": modes,
            }
        return data


def _names(values: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part:
                out.add(part if part == ALL else canonicalize_name(part))
    return frozenset(out)


def read_build_config(app_root: Path) -> BuildConfig:
    """Read wheelbarrow.toml, else ``[tool.wheelbarrow]`` of pyproject.toml, else defaults.

    Unknown keys and wrong types are errors naming the file and the key, so a
    typo never silently drops a setting.
    """
    standalone = app_root / CONFIG_FILE
    pyproject = app_root / "pyproject.toml"
    from_pyproject = None
    if pyproject.is_file():
        tool = _load(pyproject).get("tool", {})
        if not isinstance(tool, dict):
            raise InputError(
                f"{pyproject}: [tool] must be a table, not {type(tool).__name__}",
                hint="write [tool.NAME] tables under it, such as [tool.wheelbarrow]",
            )
        from_pyproject = tool.get("wheelbarrow")
    if standalone.is_file():
        if from_pyproject:
            raise InputError(
                f"{app_root}: build settings in both {CONFIG_FILE} and "
                "pyproject.toml [tool.wheelbarrow]",
                hint="keep them in one place",
            )
        return _parse(_load(standalone), standalone, prefix="")
    if isinstance(from_pyproject, dict):
        return _parse(from_pyproject, pyproject, prefix="tool.wheelbarrow.")
    if from_pyproject is not None:
        raise InputError(f"{pyproject}: [tool.wheelbarrow] must be a table")
    return BuildConfig()


def _load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc


def _parse(data: Mapping[str, Any], path: Path, *, prefix: str) -> BuildConfig:
    problems: list[str] = []

    def where(key: str) -> str:
        # A quoted TOML key may hold a newline or control characters: one line per problem.
        return f"{path}: {prefix}{key if key.isprintable() else repr(key)}"

    _unknown(data, _TOP_KEYS, where, problems)
    no_binary = _project_names(data.get("no-binary", []), where("no-binary"), problems)
    only_binary = _project_names(data.get("only-binary", []), where("only-binary"), problems)
    repair = data.get("repair", "auto")
    if repair not in ("auto", "never"):
        problems.append(f'{where("repair")}: must be "auto" or "never", not {repair!r}')
        repair = "auto"
    require_blas = data.get("require-blas", False)
    if not isinstance(require_blas, bool):
        problems.append(f"{where('require-blas')}: must be true or false")
        require_blas = False
    portable = _portable(data.get("portable", "warn"), where("portable"), problems) or "warn"
    script_check = data.get("script-check", True)
    if not isinstance(script_check, bool):
        problems.append(f"{where('script-check')}: must be true or false")
        script_check = True
    remote = _remote(data.get("remote"), where("remote"), problems)
    push = data.get("push", False)
    if not isinstance(push, bool):
        problems.append(f"{where('push')}: must be true or false")
        push = False
    cluster = _cluster(data.get("cluster"), where("cluster"), problems)
    cpu_baseline = data.get("cpu-baseline", DEFAULT_BASELINE)
    if cpu_baseline not in BASELINES:
        choices = ", ".join(f'"{b}"' for b in BASELINES)
        problems.append(f"{where('cpu-baseline')}: must be one of {choices}, not {cpu_baseline!r}")
        cpu_baseline = DEFAULT_BASELINE
    jobs = data.get("build-jobs")
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        problems.append(f"{where('build-jobs')}: must be a positive integer, not {jobs!r}")
        jobs = None
    packages: dict[NormalizedName, PackageSettings] = {}
    raw_packages = data.get("packages", {})
    if not isinstance(raw_packages, dict):
        problems.append(f"{where('packages')}: must be a table of package names")
        raw_packages = {}
    for name, raw in raw_packages.items():
        key = f"packages.{name}"
        if not isinstance(raw, dict):
            problems.append(f"{where(key)}: must be a table")
            continue
        try:
            canonical = canonicalize_name(name, validate=True)
        except InvalidName:
            problems.append(f"{where(key)}: {name!r} is not a project name")
            continue
        packages[canonical] = _package(raw, path, where, key, problems)
    if problems:
        raise InputError("\n".join(problems), hint="see the build settings in the README")
    return BuildConfig(
        no_binary=_names(no_binary),
        only_binary=_names(only_binary),
        repair=repair,
        jobs=jobs,
        require_blas=require_blas,
        portable=portable,
        cpu_baseline=cpu_baseline,
        script_check=script_check,
        remote=remote,
        push=push,
        cluster=cluster,
        packages=MappingProxyType(packages),
        source=path,
    )


def _package(
    raw: Mapping[str, Any], path: Path, where: Any, key: str, problems: list[str]
) -> PackageSettings:
    _unknown(raw, _PACKAGE_KEYS, lambda k: where(f"{key}.{k}"), problems)
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        problems.append(f"{where(key + '.env')}: must be a table of strings")
        env = {}
    for name, value in env.items():
        # What the kernel's environment block cannot hold: the build would fail to start.
        if not name or "=" in name or "\0" in name or "\0" in value:
            problems.append(
                f"{where(key + '.env.' + name)}: not a usable environment variable "
                "(a name without '=' and no NUL byte in it or its value)"
            )
    settings: dict[str, ConfigValue] = {}
    raw_settings = raw.get("config-settings", {})
    if not isinstance(raw_settings, dict):
        problems.append(f"{where(key + '.config-settings')}: must be a table")
        raw_settings = {}
    for k, v in raw_settings.items():
        if isinstance(v, str):
            settings[k] = v
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):
            settings[k] = tuple(v)
        else:
            problems.append(f"{where(key + '.config-settings.' + k)}: must be a string or strings")
    system = _string_list(raw.get("system", []), where(key + ".system"), problems)
    patches = []
    for patch in _string_list(raw.get("patches", []), where(key + ".patches"), problems):
        if (patch_path := _patch_file(path, patch, where(key + ".patches"), problems)) is not None:
            patches.append(patch_path)
    exclusive = raw.get("exclusive", False)
    if not isinstance(exclusive, bool):
        problems.append(f"{where(key + '.exclusive')}: must be true or false")
        exclusive = False
    require_blas = raw.get("require-blas")
    if require_blas is not None and not isinstance(require_blas, bool):
        problems.append(f"{where(key + '.require-blas')}: must be true or false")
        require_blas = None
    portable = raw.get("portable")
    if portable is not None:
        portable = _portable(portable, where(key + ".portable"), problems)
    return PackageSettings(
        env=MappingProxyType(dict(env)),
        config_settings=MappingProxyType(settings),
        system=tuple(system),
        patches=tuple(patches),
        exclusive=exclusive,
        require_blas=require_blas,
        portable=portable,
    )


def _remote(value: object, where: str, problems: list[str]) -> str | None:
    """The ``remote`` setting: an s3:// URL naming a bucket or an oci:// URL naming a registry
    and repository, without credentials (a settings file is committed); None with a problem
    noted."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: must be {_REMOTE_FORMS}, not {value!r}")
        return None
    try:
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname
    except ValueError:  # a malformed [IPv6] host or port
        host = None
    if (
        host is None
        or parts.scheme not in ("s3", "oci")
        or (parts.scheme == "oci" and not parts.path.strip("/"))
    ):
        problems.append(f"{where}: must be {_REMOTE_FORMS}, not {redact_urls(value)!r}")
        return None
    if "@" in parts.netloc:
        problems.append(
            f"{where}: holds credentials, which a settings file (committed with the app) "
            "must not: give them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or in "
            "~/.aws/credentials), or in the registry's auth file"
        )
        return None
    return value


def _cluster(value: object, where: str, problems: list[str]) -> str | None:
    """The ``cluster`` setting: a Dask scheduler's address, ``tcp://HOST:PORT`` (or ``tls://``);
    None with a problem noted."""
    if value is None:
        return None
    try:
        parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
        port = parts.port if parts is not None else None
    except ValueError:  # a port that is not a number
        parts, port = None, None
    if parts is None or parts.scheme not in ("tcp", "tls") or not parts.hostname or not port:
        problems.append(
            f"{where}: must be a Dask scheduler's address, tcp://HOST:PORT (the scheduler's "
            f"port is 8786 by default), not {value!r}"
        )
        return None
    return str(value)


def push_from_environ(environ: Mapping[str, str], name: str = PUSH_ENV_VAR) -> bool | None:
    """``$WHEELBARROW_PUSH`` as a yes (1, true, yes) or no (0, false, no); None when it is unset
    or empty, leaving the choice to the settings. Another value is an error naming it."""
    value = environ.get(name, "").strip()
    if not value:
        return None
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise InputError(
        f"{name}={value!r}: must be 1 or 0 (push the wheelhouse to the remote store, or not)",
        hint=f"set {name}=1 to push, or unset it",
    )


def _portable(value: object, where: str, problems: list[str]) -> PortableMode | None:
    """A ``portable`` setting's value, or None with a problem noted."""
    for mode in PORTABLE_MODES:
        if value == mode:
            return mode
    choices = ", ".join(f'"{m}"' for m in PORTABLE_MODES)
    problems.append(f"{where}: must be one of {choices}, not {value!r}")
    return None


def _unknown(
    data: Mapping[str, Any], known: tuple[str, ...], where: Any, problems: list[str]
) -> None:
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
        problems.append(f"{where(key)}: unknown setting{hint}")


def _patch_file(config: Path, patch: str, where: str, problems: list[str]) -> Path | None:
    """The patch file ``patch`` names, relative to the settings file; ``None`` with a problem."""
    if "\0" in patch:
        problems.append(f"{where}: {patch!r} holds a NUL byte, which no file name can")
        return None
    shown = patch if patch.isprintable() else repr(patch)
    patch_path = (config.parent / patch).resolve()
    try:
        is_file = patch_path.is_file()
    except OSError as exc:  # a name too long, a loop of links
        problems.append(f"{where}: {shown} cannot be read: {exc.strerror}")
        return None
    if not is_file:
        problems.append(f"{where}: {shown} does not exist")
        return None
    return patch_path


def _project_names(value: Any, where: str, problems: list[str]) -> list[str]:
    """A string or list of project names (comma-separated allowed, as pip) or ``:all:``."""
    names = _string_list(value, where, problems)
    for text in names:
        for part in text.split(","):
            part = part.strip()
            if part in ("", ALL):
                continue
            try:
                canonicalize_name(part, validate=True)
            except InvalidName:
                problems.append(f"{where}: {part!r} is not a project name or {ALL!r}")
    return names


def _string_list(value: Any, where: str, problems: list[str]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    problems.append(f"{where}: must be a string or a list of strings")
    return []
