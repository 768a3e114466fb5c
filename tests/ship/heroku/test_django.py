"""Django's collectstatic after the install, in bin/compile and the CNB bin/build."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.heroku import compile_, restore_like_the_lifecycle
from support.heroku import run_cnb_build as run_build

from wheelbarrow.ship.heroku.django import find_manage_py, is_disabled

# An old Django, small and with wheels for every Python the tests run on.
DJANGO = "django==4.2.16"

SETTINGS = """\
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ["SECRET_KEY"]  # a config var: KeyError unless it reaches manage.py
INSTALLED_APPS = [@APPS@]
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "assets"]
"""

MANAGE = """\
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_conf.settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""


def make_django_app(root: Path, *, staticfiles: bool = True) -> Path:
    """A one-settings-file Django project with one static asset; no Python pin."""
    root.mkdir(parents=True)
    (root / "requirements.txt").write_text(DJANGO + "\n")
    (root / "manage.py").write_text(MANAGE)
    (root / "site_conf").mkdir()
    (root / "site_conf" / "__init__.py").write_text("")
    apps = '"django.contrib.staticfiles"' if staticfiles else ""
    (root / "site_conf" / "settings.py").write_text(SETTINGS.replace("@APPS@", apps))
    (root / "assets").mkdir()
    (root / "assets" / "robots.txt").write_text("User-agent: *\n")
    return root


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the module's classic builds: Django is fetched once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def django_app(tmp_path: Path, shared_cache: Path):
    """A Django app, the shared cache and an ENV_DIR with SECRET_KEY: (build, cache, env, home)."""
    build = make_django_app(tmp_path / "build_1234")
    env = tmp_path / "env"
    env.mkdir()
    (env / "SECRET_KEY").write_text("not-secret")
    return build, shared_cache, env, tmp_path / "app"


@pytest.mark.network
class TestCollectstaticInBinCompile:
    def test_collectstatic_runs_with_the_config_vars(self, django_app):
        """collectstatic --noinput runs after the install, with SECRET_KEY from ENV_DIR."""
        build, cache, env, home = django_app
        code, out = compile_(build, cache, env, home)
        assert code == 0, out
        assert (
            "-----> $ python manage.py collectstatic --noinput\n"
            f"       1 static file copied to '{build}/staticfiles'.\n"
        ) in out
        assert (build / "staticfiles" / "robots.txt").read_text() == "User-agent: *\n"
        # The official order: the environment is checked first, the slug finished after.
        assert out.index("Checking the installed environment") < out.index("collectstatic")
        assert out.index("collectstatic") < out.index("-----> Slug:")

    def test_a_failing_collectstatic_fails_the_build_after_its_output(self, django_app):
        """Without the config var the settings raise: the traceback's end, then the error."""
        build, cache, env, home = django_app
        (env / "SECRET_KEY").unlink()
        code, out = compile_(build, cache, env, home)
        assert code == 1, out
        lines = out.splitlines()
        start = lines.index("-----> $ python manage.py collectstatic --noinput")
        assert lines[start + 1] == "       Traceback (most recent call last):"
        assert "       KeyError: 'SECRET_KEY'" in lines[start:]
        assert lines[-5:] == [
            "",
            " !     Unable to generate Django static files: the 'python manage.py collectstatic "
            "--noinput' Django management command failed (exit status 1).",
            " !     See the traceback above for details.",
            " !     Hint: fix the app's code or Django settings, or disable collectstatic for this "
            "app: heroku config:set DISABLE_COLLECTSTATIC=1 "
            "(https://devcenter.heroku.com/articles/django-assets)",
            "",
        ]

    def test_disable_collectstatic_skips_it(self, django_app):
        """DISABLE_COLLECTSTATIC=1 skips with the official message; '0' would not."""
        build, cache, env, home = django_app
        (env / "DISABLE_COLLECTSTATIC").write_text("1")
        code, out = compile_(build, cache, env, home)
        assert code == 0, out
        assert (
            "-----> Skipping Django collectstatic since the env var DISABLE_COLLECTSTATIC is set.\n"
        ) in out
        assert not (build / "staticfiles").exists()

    def test_no_manage_py_and_no_staticfiles_app_skip_it(self, django_app, tmp_path):
        """Django without manage.py, or without django.contrib.staticfiles: skipped, saying why."""
        build, cache, env, home = django_app
        (build / "manage.py").unlink()
        code, out = compile_(build, cache, env, home)
        assert code == 0, out
        assert "-----> Skipping Django collectstatic since no manage.py file found.\n" in out

        other = make_django_app(tmp_path / "build_5678", staticfiles=False)
        code, out = compile_(other, cache, env, tmp_path / "app2")
        assert code == 0, out
        assert (
            "-----> Skipping Django collectstatic since the 'django.contrib.staticfiles' feature "
            "is not enabled in your app's Django configuration.\n"
        ) in out


@pytest.mark.network
class TestCollectstaticInCnbBuild:
    def test_collectstatic_runs_on_every_build_even_with_the_layer_reused(self, tmp_path):
        """bin/build collects into the app dir; a rebuild with the venv layer reused does too."""
        app = make_django_app(tmp_path / "workspace")
        platform = tmp_path / "platform"
        (platform / "env").mkdir(parents=True)
        (platform / "env" / "SECRET_KEY").write_text("not-secret")
        layers = tmp_path / "layers"
        out = run_build(app, layers, platform)
        assert (
            "-----> $ python manage.py collectstatic --noinput\n"
            f"       1 static file copied to '{app}/staticfiles'.\n"
        ) in out
        restore_like_the_lifecycle(layers)
        shutil.rmtree(app / "staticfiles")  # the next build starts from the source again
        out = run_build(app, layers, platform)
        assert "Reusing the environment layer (metadata matches)" in out
        assert f"       1 static file copied to '{app}/staticfiles'.\n" in out
        assert (app / "staticfiles" / "robots.txt").is_file()


class TestFindManagePy:
    def test_the_shallowest_manage_py_within_three_levels_wins(self, tmp_path):
        """As the classic buildpack's find: the root first, then by depth, ties by path."""
        (tmp_path / "b" / "deep").mkdir(parents=True)
        (tmp_path / "a").mkdir()
        (tmp_path / "b" / "deep" / "manage.py").write_text("")
        assert find_manage_py(tmp_path) == tmp_path / "b" / "deep" / "manage.py"
        (tmp_path / "b" / "manage.py").write_text("")
        (tmp_path / "a" / "manage.py").write_text("")
        assert find_manage_py(tmp_path) == tmp_path / "a" / "manage.py"
        (tmp_path / "manage.py").write_text("")
        assert find_manage_py(tmp_path) == tmp_path / "manage.py"

    def test_deeper_and_the_slugs_own_environment_do_not_count(self, tmp_path):
        """Four levels down, or under .heroku/, is no app's manage.py."""
        (tmp_path / "a" / "b" / "c").mkdir(parents=True)
        (tmp_path / "a" / "b" / "c" / "manage.py").write_text("")
        (tmp_path / ".heroku" / "venv").mkdir(parents=True)
        (tmp_path / ".heroku" / "venv" / "manage.py").write_text("")
        assert find_manage_py(tmp_path) is None

    def test_disable_collectstatic_values(self):
        """Set to anything but empty or 0 disables it, as the official buildpack reads it."""
        assert [is_disabled(v) for v in (None, "", "0", "1", "true")] == [
            False,
            False,
            False,
            True,
            True,
        ]
