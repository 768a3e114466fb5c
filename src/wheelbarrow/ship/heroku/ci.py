"""Heroku CI's bin/test-compile: the app built with its test dependencies.

As the official buildpack's ``bin/test-compile``, it runs bin/compile with
``INSTALL_TEST=1`` (and ``DISABLE_COLLECTSTATIC=1``). Then a pip app gets
``requirements-test.txt`` beside ``requirements.txt`` (``pip install -r
requirements.txt -r requirements-test.txt``), and a uv, Poetry or Pipenv app
its dev dependencies: uv's ``dev`` group (``uv sync --locked``), Poetry's dev
group (``poetry sync``), Pipfile's ``[dev-packages]`` (``pipenv install
--deploy --dev``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from wheelbarrow._core.text import plural
from wheelbarrow.app.directory import App
from wheelbarrow.app.managers import Groups
from wheelbarrow.app.requirements import Requirements
from wheelbarrow.app.requirements_file import parse_requirements_file

TEST_VAR = "INSTALL_TEST"
REQUIREMENTS_TEST = "requirements-test.txt"


def in_ci(environ: Mapping[str, str]) -> bool:
    """Whether this build is bin/test-compile's (``INSTALL_TEST`` set, as Heroku's sets it)."""
    return environ.get(TEST_VAR, "") not in ("", "0")


def ci_groups(environ: Mapping[str, str]) -> Groups:
    """The parts of a manager's lock to deploy: the dev ones too under bin/test-compile."""
    return Groups(dev=True) if in_ci(environ) else Groups()


def with_test_requirements(app: App, *, environ: Mapping[str, str]) -> tuple[App, str | None]:
    """``app`` with ``requirements-test.txt`` added when it is a pip app; and what was added.

    ``environ`` expands ``${VAR}`` in the file, as for requirements.txt.
    Apps of other managers are returned as they are: their dev parts are
    groups of their lock (see :func:`ci_groups`).
    """
    extra = app.root / REQUIREMENTS_TEST
    if app.requirements is None or app.locked_by_manager or not extra.is_file():
        return app, None
    tests = parse_requirements_file(extra, environ=environ)
    return dataclasses.replace(app, requirements=_merged(app.requirements, tests)), (
        f"{REQUIREMENTS_TEST}: {plural(len(tests.requirements), 'more requirement')} for the tests"
    )


def _merged(first: Requirements, second: Requirements) -> Requirements:
    """Both files' entries, as pip reads ``-r first -r second``: options apply to both."""
    return Requirements(
        requirements=first.requirements + second.requirements,
        constraints=first.constraints + second.constraints,
        index=first.index.overridden_by(second.index),
        pre=first.pre or second.pre,
        prefer_binary=first.prefer_binary or second.prefer_binary,
        require_hashes=first.require_hashes or second.require_hashes,
        only_binary=first.only_binary | second.only_binary,
        no_binary=first.no_binary | second.no_binary,
        files=first.files + tuple(f for f in second.files if f not in first.files),
    )
