"""Web apps' source files, for the tests of what reads them (web entry detection, bin/release)."""

from __future__ import annotations

from pathlib import Path

FLASK_APP = """\
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "hello"
"""

FASTAPI_APP = """\
from fastapi import FastAPI

app: FastAPI = FastAPI(title="demo")
"""

DJANGO_MANAGE = """\
#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
"""

DJANGO_WSGI = """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()
"""


def make_app(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root``; return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
