"""Tests for wheelbarrow.app.webentry: the web entry point, read from the app's code."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.webapps import DJANGO_MANAGE, DJANGO_WSGI, FASTAPI_APP, FLASK_APP, make_app

from wheelbarrow.app.webentry import Entry, detect_entry


class TestDetectEntry:
    def test_entry_names_the_server(self, tmp_path: Path) -> None:
        """The entry says which server its command runs, for the caller to check requirements."""
        app = make_app(tmp_path, {"app.py": FLASK_APP})
        assert detect_entry(app) == Entry(
            kind="wsgi",
            module="app",
            attribute="app",
            server="gunicorn",
            command="gunicorn --bind 0.0.0.0:$PORT app:app",
        )

    @pytest.mark.parametrize(
        ("files", "kind", "target"),
        [
            pytest.param(
                {"main.py": "import fastapi\napp = fastapi.FastAPI()\n"},
                "asgi",
                "main:app",
                id="dotted-constructor",
            ),
            pytest.param(
                {
                    "app.py": "from starlette.applications import Starlette as S\n"
                    "application = S(routes=[])\n"
                },
                "asgi",
                "app:application",
                id="aliased-starlette",
            ),
            pytest.param(
                {"wsgi.py": "def application(environ, start_response):\n    return []\n"},
                "wsgi",
                "wsgi:application",
                id="wsgi-function",
            ),
            pytest.param(
                {"main.py": "async def app(scope, receive, send):\n    pass\n"},
                "asgi",
                "main:app",
                id="asgi-coroutine",
            ),
            pytest.param(
                {
                    "app.py": "from flask import Flask\nfrom .factory import create_app\n"
                    "app = create_app()\n"
                },
                "wsgi",
                "app:app",
                id="factory-in-a-flask-file",
            ),
            pytest.param(
                {"wsgi.py": "from myproject import app\n"},
                "wsgi",
                "wsgi:app",
                id="wsgi-py-by-name",
            ),
            pytest.param(
                {"application.py": "import bottle\napp = bottle.default_app()\n"},
                "wsgi",
                "application:app",
                id="bottle",
            ),
            pytest.param(
                {
                    "app.py": "this is not python",
                    "main.py": FASTAPI_APP,
                },
                "asgi",
                "main:app",
                id="unparsable-file-skipped",
            ),
        ],
    )
    def test_entry_points(
        self, tmp_path: Path, files: dict[str, str], kind: str, target: str
    ) -> None:
        """Apps made by constructors, factories and plain callables are recognised."""
        entry = detect_entry(make_app(tmp_path, files))
        assert entry is not None
        assert (entry.kind, f"{entry.module}:{entry.attribute}") == (kind, target)

    def test_import_without_framework_is_not_guessed(self, tmp_path: Path) -> None:
        """main.py re-exporting an app from elsewhere, with no framework in sight, is no entry."""
        assert detect_entry(make_app(tmp_path, {"main.py": "from core import app\n"})) is None

    def test_django_settings_in_a_package(self, tmp_path: Path) -> None:
        """Split settings (config.settings.production) still lead to config/wsgi.py."""
        manage = DJANGO_MANAGE.replace("mysite.settings", "config.settings.production")
        app = make_app(
            tmp_path,
            {
                "manage.py": manage,
                "config/__init__.py": "",
                "config/settings/__init__.py": "",
                "config/wsgi.py": DJANGO_WSGI,
                "other/wsgi.py": DJANGO_WSGI,
            },
        )
        entry = detect_entry(app)
        assert entry is not None
        assert entry.command == "gunicorn --bind 0.0.0.0:$PORT config.wsgi:application"

    def test_django_without_settings_module_in_manage(self, tmp_path: Path) -> None:
        """Without a settings module in manage.py, the project directory holding settings wins."""
        app = make_app(
            tmp_path,
            {
                "manage.py": "import sys\n",
                "aaa/wsgi.py": "application = None\n",
                "shop/settings.py": "",
                "shop/wsgi.py": DJANGO_WSGI,
            },
        )
        entry = detect_entry(app)
        assert entry is not None
        assert entry.module == "shop.wsgi"

    def test_code_is_never_run(self, tmp_path: Path) -> None:
        """Detection reads the code: a module with side effects is not executed."""
        marker = tmp_path / "ran"
        app = make_app(
            tmp_path,
            {
                "app.py": f"open({str(marker)!r}, 'w').close()\n"
                "raise SystemExit(3)\n"
                "from flask import Flask\n"
                "app = Flask(__name__)\n"
            },
        )
        entry = detect_entry(app)
        assert entry is not None
        assert entry.module == "app"
        assert not marker.exists()

    def test_invalid_escapes_do_not_warn(self, tmp_path: Path) -> None:
        """Users' code with invalid string escapes is read without warnings."""
        app = make_app(tmp_path, {"app.py": 'import re\nP = "\\d+"\n' + FLASK_APP})
        entry = detect_entry(app)
        assert entry is not None
