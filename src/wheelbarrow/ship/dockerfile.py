"""A two-stage Dockerfile: a builder fills /wheelhouse, the app image installs from it offline."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.redact import redact_urls
from wheelbarrow.app.config import CONFIG_FILE, BuildConfig
from wheelbarrow.app.credentials import split_userinfo
from wheelbarrow.app.directory import PYLOCK, PYPROJECT, REQUIREMENTS_TXT, App
from wheelbarrow.app.procfile import read_procfile
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.system.toolchain import parse_system_requirement

# python:3.12-slim-bookworm: the Docker Official Image for the app's Python, on
# a pinned Debian release so that a rebuild months later gets the same glibc.
DEFAULT_BASE = "python:{python}-slim-bookworm"
# What source builds need whatever the package: C/C++ (build-essential also
# brings make and patch, which patches use), Fortran, and pkg-config.
TOOLCHAIN = ("build-essential", "gfortran", "pkg-config")
# The files a lock depends on besides the requirements files themselves.
LOCK_INPUTS = (
    REQUIREMENTS_TXT,
    PYPROJECT,
    PYLOCK,
    CONFIG_FILE,
    ".python-version",
    "runtime.txt",
)
APP_UID = 10001
PORT = 8080
TOOL_VENV = "/opt/wheelbarrow"
APP_VENV = "/opt/venv"
SOURCE_DIR = "/src"
WHEELHOUSE = "/wheelhouse"
CACHE_DIR = "/root/.cache"
# Used when the base image sets no PATH (an imported rootfs), so that
# prepending the venv never leaves PATH without the system directories.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Image references, Debian package names and context paths end up in
# Dockerfile instructions and shell commands: only plain forms are accepted.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_CONTEXT_PATH = re.compile(r"[A-Za-z0-9._+@=,-]+(?:/[A-Za-z0-9._+@=,-]+)*")
# Characters that only a shell gives meaning to; a command without them runs
# the same in exec form.
_SHELL_SYNTAX = frozenset("$`;&|<>*?~(){}[]!#\n")
_COMPOUND = frozenset(";&|(){}\n")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerfileOptions:
    """How to render the Dockerfile.

    ``wheelbarrow_spec`` is what the builder's pip installs: a requirement
    (``wheelbarrow==0.1.0``), a URL, or the path of a wheel inside the build
    context (``dist/wheelbarrow-0.1.0-py3-none-any.whl``), which is copied in
    first. ``index_url`` serves both that install and the app's wheels.
    ``bind_mounts=False`` renders no ``RUN --mount`` at all (neither the
    store's cache nor the wheelhouse's bind mount), for builders without
    BuildKit; the wheels then stay in a layer of the app image.
    """

    base: str
    python: PythonVersion
    builder_base: str | None = None
    web_command: str | None = None
    system_packages: Sequence[str] = ()
    index_url: str | None = None
    wheelbarrow_spec: str = "wheelbarrow"
    bind_mounts: bool = True


def default_base(python: PythonVersion) -> str:
    """The base image for ``python``: ``python:3.12-slim-bookworm``."""
    return DEFAULT_BASE.format(python=python.short)


def read_web_command(root: Path) -> str | None:
    """The ``web:`` process of the app's Procfile, or None without one."""
    procfile = read_procfile(root)
    return procfile.command("web") if procfile is not None else None


def debian_packages(app: App, config: BuildConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The Debian packages the build settings' ``system`` entries need, and entries none provides.

    ``git`` is added when a requirement is a ``git+`` URL: the builder clones it.
    """
    packages: list[str] = []
    unknown: list[str] = []
    where = str(config.source) if config.source else None
    for name in sorted(config.packages):
        for text in config.packages[name].system:
            requirement = parse_system_requirement(text, where=where)
            if requirement.debian_package is None:
                unknown.append(requirement.spec)
            else:
                packages.append(requirement.debian_package)
    if app.requirements is not None:
        lines = (*app.requirements.requirements, *app.requirements.constraints)
        if any((line.url or "").startswith("git+") for line in lines):
            packages.append("git")
    return tuple(dict.fromkeys(packages)), tuple(dict.fromkeys(unknown))


def dependency_inputs(app: App, config: BuildConfig) -> tuple[PurePosixPath, ...]:
    """What the wheelhouse depends on, as paths relative to the app: all the builder copies.

    The lock inputs that exist, every requirements file read (``-r``/``-c``
    includes), local requirements (``./mypkg``), local ``--find-links``
    directories and the patches of the build settings. Anything outside the
    app directory cannot be in the build context and is an error.
    """
    root = app.root.resolve()
    found: list[Path] = [root / name for name in LOCK_INPUTS if (root / name).is_file()]
    if config.source is not None:
        found.append(config.source)
    for settings in config.packages.values():
        found.extend(settings.patches)
    if app.requirements is not None:
        found.extend(app.requirements.files)
        for line in (*app.requirements.requirements, *app.requirements.constraints):
            if line.url and line.url.startswith("file:"):
                found.append(Path(unquote(urlsplit(line.url).path)))
        found.extend(Path(link) for link in app.requirements.index.find_links if "://" not in link)
    outside: list[str] = []
    relative: set[PurePosixPath] = set()
    for path in found:
        try:
            inside = path.resolve().relative_to(root)
        except ValueError:
            outside.append(str(path))
            continue
        relative.add(PurePosixPath(inside.as_posix()))
    if outside:
        raise InputError(
            f"{app.root}: the dependencies need files outside the app directory, which a "
            "Docker build cannot copy: " + ", ".join(sorted(set(outside))),
            hint="move them into the app directory (and refer to them from there)",
        )
    return tuple(sorted(relative))


def render_dockerfile(app: App, options: DockerfileOptions, *, config: BuildConfig) -> str:
    """The Dockerfile of ``app``: stage ``builder`` fills /wheelhouse, the last stage runs the app.

    The builder copies only :func:`dependency_inputs` before building, so a
    change to the app's code reuses the cached wheelhouse layer. The app stage
    has no compilers and no wheelbarrow: pip installs the wheelhouse offline.
    """
    for value, what in ((options.index_url, "index URL"), (options.wheelbarrow_spec, "spec")):
        if value is not None and any(c.isspace() and c != " " for c in value):
            raise InputError(
                f"the {what} {redact_urls(value)!r} spans lines", hint="give it on one line"
            )
    if options.index_url and split_userinfo(options.index_url)[1] is not None:
        raise InputError(
            f"--index-url {redact_urls(options.index_url)} holds credentials, which a Dockerfile "
            "would keep in the image's history for anyone who pulls it",
            hint="give the index URL without them, and hand the builder its credentials at "
            "build time as a secret (e.g. a netrc mounted with RUN --mount=type=secret)",
        )
    header = [
        "# syntax=docker/dockerfile:1",
        f"# Written by `wheelbarrow dockerfile` for {app.root.name} (Python {options.python}).",
        "# Build it in the app directory, which is the build context:",
        f"#   docker build -t {_tag(app.root.name)} .",
        "",
    ]
    builder = _builder_stage(options, [_context_path(p) for p in dependency_inputs(app, config)])
    return "\n".join([*header, *builder, "", *_app_stage(options, config)]) + "\n"


def _builder_stage(options: DockerfileOptions, inputs: Sequence[str]) -> list[str]:
    builder_base = _image(options.builder_base or options.base, "builder base")
    packages = list(dict.fromkeys([*TOOLCHAIN, *options.system_packages]))
    for package in packages:
        if not _DEBIAN_PACKAGE.fullmatch(package):
            raise InputError(f"{package!r} is not a Debian package name")
    index = f" --index-url {shlex.quote(options.index_url)}" if options.index_url else ""
    lines = [
        "# Stage 1, builder: compilers and wheelbarrow live here only. It fills",
        "# /wheelhouse with one wheel per locked package, building from source what",
        "# has no wheel, so that the app image never compiles anything.",
        f"FROM {builder_base} AS builder",
        "",
        "# The toolchain for source builds, and the system packages named in the",
        "# build settings.",
        "RUN apt-get update \\",
        "    && apt-get install -y --no-install-recommends \\",
        *_wrapped(packages, indent="        "),
        "    && rm -rf /var/lib/apt/lists/*",
        "",
        *_install_wheelbarrow(options.wheelbarrow_spec, index),
        "",
        "# Only what the lock depends on, never the app's code: a code change keeps",
        "# the wheelhouse layer below cached, and the wheelhouse is rebuilt only when",
        "# the requirements change.",
        f"WORKDIR {SOURCE_DIR}",
        *_copy_inputs(inputs),
        "",
        "# Lock again if the inputs changed, then fetch (and build) the wheels.",
    ]
    build = [
        f"{TOOL_VENV}/bin/wheelbarrow build {SOURCE_DIR} --python {options.python} \\",
        f"        --store {CACHE_DIR}/wheelbarrow --output {WHEELHOUSE}{index}",
    ]
    if not options.bind_mounts:
        return [*lines, f"RUN {build[0]}", build[1]]
    return [
        *lines,
        "# The store is a cache mount: a rebuild downloads and compiles only what",
        "# changed since the last one.",
        f"RUN --mount=type=cache,target={CACHE_DIR} \\",
        f"    {build[0]}",
        build[1],
    ]


def _app_stage(options: DockerfileOptions, config: BuildConfig) -> list[str]:
    lines = [
        "# Stage 2, the app: no compilers, no wheelbarrow, nothing fetched.",
        f"FROM {_image(options.base, 'base')} AS app",
        "",
        "# A user of its own, by number so that runAsNonRoot can check it.",
        f"RUN groupadd --gid {APP_UID} app \\",
        f"    && useradd --uid {APP_UID} --gid {APP_UID} --create-home app",
        "",
    ]
    if config.repair == "never":
        lines += [
            '# repair = "never": wheels built from source use the builder\'s shared',
            "# libraries as they are; install their runtime packages here.",
        ]
    lines += [
        "# The wheelhouse holds exactly the locked set, one wheel per package for",
        "# this Python and platform: installing all of them without resolving is the lock.",
    ]
    install = (
        f"find {WHEELHOUSE} -maxdepth 1 -name '*.whl' -exec \\\n"
        f"        {APP_VENV}/bin/pip install --no-index --no-deps --no-cache-dir --compile {{}} +"
    )
    if options.bind_mounts:
        lines += [
            "# It is bind-mounted from the builder, so no wheel lands in a layer. The",
            "# manifest is copied first because builders cache a RUN --mount step by its",
            "# text alone (buildah #4522): the copy ties that cache to this wheelhouse.",
            f"COPY --from=builder {WHEELHOUSE}/wheelhouse.json /opt/wheelhouse.json",
            f"RUN --mount=type=bind,from=builder,source={WHEELHOUSE},target={WHEELHOUSE} \\",
            f"    python3 -m venv {APP_VENV} \\",
            f"    && {install}",
        ]
    else:
        lines += [
            "# Copied from the builder: the wheels stay in this layer of the image (the",
            "# price of a builder that cannot mount one stage into another).",
            f"COPY --from=builder {WHEELHOUSE} {WHEELHOUSE}",
            f"RUN python3 -m venv {APP_VENV} \\",
            f"    && {install} \\",
            f"    && rm -rf {WHEELHOUSE}",
        ]
    return [
        *lines,
        "",
        f"ENV PATH={APP_VENV}/bin:${{PATH:-{SYSTEM_PATH}}} \\",
        f"    VIRTUAL_ENV={APP_VENV} \\",
        "    PYTHONUNBUFFERED=1 \\",
        f"    PORT={PORT}",
        "",
        "# The code last: it changes most often, and nothing above depends on it.",
        f"COPY --chown={APP_UID}:{APP_UID} . /app",
        "WORKDIR /app",
        f"USER {APP_UID}:{APP_UID}",
        f"EXPOSE {PORT}",
        *_cmd(options.web_command),
    ]


def render_dockerignore(app: App) -> str:
    """The .dockerignore beside the Dockerfile: local environments, caches, VCS data, secrets.

    The lock and the requirements stay in: the builder needs them. Any
    top-level virtual environment of the app (a directory with ``pyvenv.cfg``)
    is left out too.
    """
    venvs = sorted(
        p.name
        for p in app.root.iterdir()
        if p.is_dir() and (p / "pyvenv.cfg").is_file() and p.name != ".venv"
    )
    lines = [
        "# Written by `wheelbarrow dockerfile`: what the build context leaves out.",
        "# pylock.toml and the requirements stay in: the builder stage needs them.",
        "# The build files themselves need not land in /app.",
        "Dockerfile",
        ".dockerignore",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        *venvs,
        "**/__pycache__",
        "**/*.py[cod]",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        "*.egg-info",
        "# Local secrets (heroku local, foreman) never go into an image.",
        ".env",
    ]
    return "\n".join(lines) + "\n"


def _image(reference: str, what: str) -> str:
    if not _IMAGE.fullmatch(reference):
        raise InputError(
            f"{what} image {reference!r} is not an image reference",
            hint="write it as NAME[:TAG][@DIGEST], e.g. python:3.12-slim-bookworm",
        )
    return reference


def _context_path(path: PurePosixPath) -> str:
    text = path.as_posix()
    if not _CONTEXT_PATH.fullmatch(text):
        raise InputError(
            f"{text!r}: the Dockerfile cannot name this file safely "
            "(only letters, digits and . _ + @ = , - in its path)",
            hint="rename it",
        )
    return text


def _tag(name: str) -> str:
    tag = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return tag or "app"


def _wrapped(words: Sequence[str], *, indent: str, width: int = 80) -> list[str]:
    """``words`` over as many ``\\``-continued lines as the width needs."""
    lines: list[str] = []
    current = ""
    for word in words:
        if current and len(indent) + len(current) + 1 + len(word) + 2 > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return [f"{indent}{line} \\" for line in lines]


def _install_wheelbarrow(spec: str, index: str) -> list[str]:
    lines = ["# wheelbarrow in a virtual environment of its own."]
    target = spec
    if spec.endswith(".whl") and "://" not in spec:
        # A wheel in the build context: copied in under its own name, which pip needs.
        source = _context_path(PurePosixPath(spec))
        target = f"{TOOL_VENV}-dist/{PurePosixPath(source).name}"
        lines.append(f"COPY {source} {target}")
    lines += [
        f"RUN python3 -m venv {TOOL_VENV} \\",
        f"    && {TOOL_VENV}/bin/pip install --no-cache-dir{index} {shlex.quote(target)}",
    ]
    return lines


def _copy_inputs(inputs: Iterable[str]) -> list[str]:
    """COPY instructions that put each input at the same relative place under /src."""
    top = [path for path in inputs if "/" not in path]
    nested = [path for path in inputs if "/" in path]
    lines = [f"COPY {' '.join(top)} {SOURCE_DIR}/"] if top else []
    lines += [f"COPY {path} {SOURCE_DIR}/{path}" for path in nested]
    return lines


def _cmd(command: str | None) -> list[str]:
    """CMD in exec form, or through ``sh -c`` when the command needs a shell ($PORT, &&, ...)."""
    if command is None:
        return [
            "# The Procfile has no web process, so there is no CMD: add one, e.g.",
            '# CMD ["gunicorn", "--bind", "0.0.0.0:8080", "app:app"]',
        ]
    try:
        words = shlex.split(command)
    except ValueError:  # an unclosed quote: let the shell say so at start
        words = []
    special = _shell_syntax(command)
    simple = bool(words) and not _ASSIGNMENT.match(words[0])
    if simple and not special:
        return [f"CMD {json.dumps(words)}"]
    if simple and not special & _COMPOUND and words[0] != "exec":
        # exec: the server replaces the shell as PID 1, so it gets SIGTERM itself.
        command = f"exec {command}"
    return [f"CMD {json.dumps(['/bin/sh', '-c', command])}"]


def _shell_syntax(command: str) -> frozenset[str]:
    """The characters of ``command`` that the shell gives a meaning to, outside quotes.

    In double quotes only ``$`` and a backquote still expand; single quotes and
    backslashes (which shlex reads as sh does) protect everything. A
    ``${...}`` expansion counts as ``$`` alone: its braces group nothing.
    """
    found: set[str] = set()
    quote = ""
    escaped = False
    braces = 0  # depth inside ${...}
    previous = ""
    for char in command:
        if escaped:  # a quoted character: neither special nor the $ of a ${
            escaped = False
            previous = ""
            continue
        if quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            escaped = True
        elif char == "{" and previous == "$":
            braces += 1
        elif char == "}" and braces:
            braces -= 1
        elif quote == '"':
            if char == '"':
                quote = ""
            elif char in "$`":
                found.add(char)
        elif char in "'\"":
            quote = char
        elif char in _SHELL_SYNTAX:
            found.add(char)
        previous = char
    return frozenset(found)
