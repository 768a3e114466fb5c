"""Tests for wheelbarrow.ship.heroku.release: bin/release's default web process."""

from __future__ import annotations

from pathlib import Path

from support.webapps import DJANGO_MANAGE, DJANGO_WSGI, FASTAPI_APP, FLASK_APP, make_app

from wheelbarrow.ship.heroku.release import NOTHING, release_yaml


class TestReleaseYaml:
    def test_procfile_wins(self, tmp_path: Path) -> None:
        """With a Procfile nothing is offered, whatever the code holds."""
        app = make_app(tmp_path, {"Procfile": "web: python app.py\n", "app.py": FLASK_APP})
        assert release_yaml(app) == "---\ndefault_process_types: {}\n"

    def test_flask(self, tmp_path: Path) -> None:
        """A Flask app in app.py is served by gunicorn on $PORT."""
        app = make_app(tmp_path, {"app.py": FLASK_APP})
        assert release_yaml(app) == (
            "---\ndefault_process_types:\n  web: gunicorn --bind 0.0.0.0:$PORT app:app\n"
        )

    def test_fastapi(self, tmp_path: Path) -> None:
        """A FastAPI app in main.py is served by uvicorn on $PORT."""
        app = make_app(tmp_path, {"main.py": FASTAPI_APP})
        assert release_yaml(app) == (
            "---\ndefault_process_types:\n  web: uvicorn main:app --host 0.0.0.0 --port $PORT\n"
        )

    def test_django(self, tmp_path: Path) -> None:
        """A Django project is served through its project's wsgi module."""
        app = make_app(
            tmp_path,
            {
                "manage.py": DJANGO_MANAGE,
                "mysite/__init__.py": "",
                "mysite/settings.py": "DEBUG = False\n",
                "mysite/wsgi.py": DJANGO_WSGI,
                "polls/__init__.py": "",
            },
        )
        assert release_yaml(app) == (
            "---\ndefault_process_types:\n"
            "  web: gunicorn --bind 0.0.0.0:$PORT mysite.wsgi:application\n"
        )

    def test_nothing_to_offer(self, tmp_path: Path) -> None:
        """An app with no recognisable entry point gets an empty map, not an empty answer."""
        app = make_app(tmp_path, {"worker.py": "print('hi')\n", "requirements.txt": "rq\n"})
        assert release_yaml(app) == NOTHING == "---\ndefault_process_types: {}\n"
