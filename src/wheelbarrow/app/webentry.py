"""The app's web entry point and its server, found by reading (never running) its code."""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Entry", "Kind", "detect_entry"]

Kind = Literal["wsgi", "asgi"]

# Files that conventionally hold the app object, in the order they are tried.
ENTRY_FILES = ("app.py", "wsgi.py", "asgi.py", "main.py", "application.py")
# Names the app object conventionally has, in order of preference.
APP_NAMES = ("app", "application")

# Callables that return an app, by qualified name.
FACTORIES: dict[str, Kind] = {
    "flask.Flask": "wsgi",
    "django.core.wsgi.get_wsgi_application": "wsgi",
    "bottle.Bottle": "wsgi",
    "bottle.default_app": "wsgi",
    "falcon.App": "wsgi",
    "falcon.API": "wsgi",
    "fastapi.FastAPI": "asgi",
    "starlette.applications.Starlette": "asgi",
    "quart.Quart": "asgi",
    "litestar.Litestar": "asgi",
    "falcon.asgi.App": "asgi",
    "django.core.asgi.get_asgi_application": "asgi",
}
# Frameworks whose import says what an app made some other way is.
FRAMEWORKS: dict[str, Kind] = {
    "flask": "wsgi",
    "django": "wsgi",
    "bottle": "wsgi",
    "falcon": "wsgi",
    "pyramid": "wsgi",
    "fastapi": "asgi",
    "starlette": "asgi",
    "quart": "asgi",
    "litestar": "asgi",
}

# Bigger files are not parsed: an entry module is small, generated data is not.
MAX_SOURCE_BYTES = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """The app's entry point: ``module:attribute``, how to serve it, and with what.

    ``server`` is the distribution the command runs (``gunicorn``,
    ``uvicorn``), for the caller to check against the app's requirements.
    """

    kind: Kind
    module: str
    attribute: str
    server: str
    command: str

    def command_with_port_default(self, port: int) -> str:
        """The command, listening on ``port`` where the platform sets no ``PORT``.

        >>> entry.command_with_port_default(8080)
        'gunicorn --bind 0.0.0.0:${PORT:-8080} app:app'
        """
        return self.command.replace("$PORT", f"${{PORT:-{port}}}")


def _entry(kind: Kind, module: str, attribute: str) -> Entry:
    target = f"{module}:{attribute}"
    if kind == "asgi":
        # uvicorn takes its number of workers from WEB_CONCURRENCY, as gunicorn does.
        return Entry(
            kind=kind,
            module=module,
            attribute=attribute,
            server="uvicorn",
            command=f"uvicorn {target} --host 0.0.0.0 --port $PORT",
        )
    return Entry(
        kind=kind,
        module=module,
        attribute=attribute,
        server="gunicorn",
        command=f"gunicorn --bind 0.0.0.0:$PORT {target}",
    )


def _parse(path: Path) -> ast.Module | None:
    """The file's syntax tree, or ``None`` when it is missing, too big or not Python."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_SOURCE_BYTES:
            return None
        source = path.read_bytes()
        with warnings.catch_warnings():
            # Users' code may carry invalid escapes and the like; not ours to report.
            warnings.simplefilter("ignore")
            return ast.parse(source, filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _is_identifier_path(dotted: str) -> bool:
    return bool(dotted) and all(part.isidentifier() for part in dotted.split("."))


class _Module:
    """What one file binds at its top level, and what it imports."""

    def __init__(self, tree: ast.Module) -> None:
        self.bindings: dict[str, ast.AST] = {}
        self.imports: dict[str, str] = {}  # local name -> qualified name
        self.frameworks: set[Kind] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.bindings[target.id] = node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                if isinstance(node.target, ast.Name):
                    self.bindings[node.target.id] = node.value
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.bindings[node.name] = node
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".", 1)[0]
                    self.imports[local] = alias.name if alias.asname else local
                    self._framework(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                self._framework(node.module)
                for alias in node.names:
                    local = alias.asname or alias.name
                    self.imports[local] = f"{node.module}.{alias.name}"
                    self.bindings[local] = node

    def _framework(self, module: str) -> None:
        kind = FRAMEWORKS.get(module.split(".", 1)[0])
        if kind is not None:
            self.frameworks.add(kind)

    def qualified(self, node: ast.expr) -> str | None:
        """``flask.Flask`` for ``Flask`` (from flask import Flask) or ``flask.Flask``."""
        if isinstance(node, ast.Name):
            return self.imports.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    def kind_of(self, name: str, seen: frozenset[str] = frozenset()) -> Kind | None:
        """What the top-level ``name`` is, as far as the code says without running it."""
        node = self.bindings.get(name)
        if node is None or name in seen:
            return None
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            params = [a.arg for a in node.args.posonlyargs + node.args.args]
            if isinstance(node, ast.AsyncFunctionDef) and len(params) == 3:
                return "asgi"
            if isinstance(node, ast.FunctionDef) and len(params) == 2:
                return "wsgi"
            return None
        if isinstance(node, ast.Call):
            qualified = self.qualified(node.func)
            if qualified in FACTORIES:
                return FACTORIES[qualified]
        if isinstance(node, ast.Name):
            return self.kind_of(node.id, seen | {name})
        if isinstance(node, ast.ClassDef):
            return None
        # Made some other way (a factory of the app's own, an import): the
        # framework the file imports tells, when it imports only one kind.
        return next(iter(self.frameworks)) if len(self.frameworks) == 1 else None


def _find_in_file(app_dir: Path, filename: str) -> Entry | None:
    tree = _parse(app_dir / filename)
    if tree is None:
        return None
    module = _Module(tree)
    stem = filename.removesuffix(".py")
    for name in APP_NAMES:
        if name not in module.bindings:
            continue
        kind = module.kind_of(name)
        if kind is None and stem in ("wsgi", "asgi"):
            # The file's name is the convention's own answer.
            kind = "wsgi" if stem == "wsgi" else "asgi"
        if kind is not None:
            return _entry(kind, stem, name)
    return None


def _django_settings_module(tree: ast.Module) -> str | None:
    """``mysite.settings``, from manage.py's ``setdefault("DJANGO_SETTINGS_MODULE", ...)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) == 2:
            key, value = (a.value if isinstance(a, ast.Constant) else None for a in node.args)
            if (
                key == "DJANGO_SETTINGS_MODULE"
                and isinstance(value, str)
                and _is_identifier_path(value)
            ):
                return value
    return None


def _find_django(app_dir: Path) -> Entry | None:
    manage = _parse(app_dir / "manage.py")
    if manage is None:
        return None
    candidates: list[str] = []
    settings = _django_settings_module(manage)
    if settings is not None:
        parts = settings.split(".")
        # config.settings.production -> config/settings/wsgi.py, then config/wsgi.py.
        candidates += [".".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]
    # Else, or when that names no wsgi.py: a project directory beside manage.py,
    # the one with the settings first.
    found = sorted(p.parent.name for p in app_dir.glob("*/wsgi.py"))
    found.sort(
        key=lambda d: not any((app_dir / d / s).exists() for s in ("settings.py", "settings"))
    )
    candidates += found
    for package in candidates:
        wsgi = app_dir / package.replace(".", "/") / "wsgi.py"
        if not _is_identifier_path(package) or not wsgi.is_file():
            continue
        tree = _parse(wsgi)
        attribute = "application"
        if tree is not None:
            bound = _Module(tree).bindings
            attribute = next((n for n in APP_NAMES[::-1] if n in bound), attribute)
        return _entry("wsgi", f"{package}.wsgi", attribute)
    return None


def detect_entry(app_dir: Path) -> Entry | None:
    """The app's web entry point, read from its source with :mod:`ast`, or ``None``.

    A Django project (``manage.py`` and its project's ``wsgi.py``) first, then
    the first of ``app.py``, ``wsgi.py``, ``asgi.py``, ``main.py`` and
    ``application.py`` binding ``app`` or ``application`` at its top level to
    an app: made by a framework's constructor (``Flask(__name__)``,
    ``FastAPI()``, ``get_wsgi_application()``), a WSGI function
    ``(environ, start_response)`` or an ASGI coroutine ``(scope, receive,
    send)``, or anything else in a file importing only WSGI or only ASGI
    frameworks (or named ``wsgi.py``/``asgi.py``). WSGI apps are served by
    gunicorn, ASGI apps by uvicorn. No code of the app is imported.
    """
    entry = _find_django(app_dir)
    if entry is not None:
        return entry
    for filename in ENTRY_FILES:
        entry = _find_in_file(app_dir, filename)
        if entry is not None:
            return entry
    return None
