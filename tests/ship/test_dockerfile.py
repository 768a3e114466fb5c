"""`wheelbarrow dockerfile`: a builder stage fills /wheelhouse, the app stage installs offline."""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import LocalIndex, make_wheel, serve_local_index
from support.apps import HOST_PYTHON, cli, make_app
from support.containers import Podman, require
from support.net import wait_for_json

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.config import read_build_config
from wheelbarrow.app.directory import App, read_app
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.cli import dockerfile as command
from wheelbarrow.ship.dockerfile import (
    DockerfileOptions,
    debian_packages,
    default_base,
    dependency_inputs,
    read_web_command,
    render_dockerfile,
    render_dockerignore,
)

REPO = Path(__file__).resolve().parents[2]
PY312 = PythonVersion(major=3, minor=12)
COMPILERS = ("apt-get", "build-essential", "gfortran", "pkg-config", "wheelbarrow build")


def app_at(root: Path, requirements: str = "flask==3.1.2\n", **files: str) -> App:
    """An app directory with requirements.txt, .python-version and ``files`` (name: text)."""
    make_app(root, requirements, python="3.12")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return read_app(root, environ={})


def render(app: App, **options: object) -> str:
    """The Dockerfile of ``app`` with ``python:3.12-slim-bookworm`` unless ``options`` say else."""
    settings: dict[str, object] = {"base": "python:3.12-slim-bookworm", "python": PY312}
    settings.update(options)
    return render_dockerfile(
        app,
        DockerfileOptions(**settings),  # type: ignore[arg-type]
        config=read_build_config(app.root),
    )


def stages(text: str) -> tuple[str, str]:
    """The builder stage's text and the app stage's text."""
    builder, _, app = text.partition("\nFROM python:3.12-slim-bookworm AS app\n")
    assert app, text
    return builder, app


def instructions(text: str) -> list[str]:
    """The instruction lines (no comments, no continuations), in order."""
    return [
        line
        for line in text.splitlines()
        if line and not line.startswith(("#", " ")) and not line.startswith("\t")
    ]


class TestStages:
    def test_the_first_line_selects_the_dockerfile_1_syntax(self, tmp_path):
        """The file starts with the syntax directive that enables RUN --mount."""
        text = render(app_at(tmp_path / "app"))
        assert text.splitlines()[0] == "# syntax=docker/dockerfile:1"

    def test_a_builder_stage_then_the_app_stage(self, tmp_path):
        """There are two stages: ``builder`` first, the app (the image built) last."""
        text = render(app_at(tmp_path / "app"))
        froms = [line for line in instructions(text) if line.startswith("FROM")]
        assert froms == [
            "FROM python:3.12-slim-bookworm AS builder",
            "FROM python:3.12-slim-bookworm AS app",
        ]

    def test_the_builder_may_have_a_base_of_its_own(self, tmp_path):
        """``builder_base`` changes the builder's FROM only."""
        text = render(app_at(tmp_path / "app"), builder_base="quay.io/pypa/manylinux_2_28_x86_64")
        froms = [line for line in instructions(text) if line.startswith("FROM")]
        assert froms == [
            "FROM quay.io/pypa/manylinux_2_28_x86_64 AS builder",
            "FROM python:3.12-slim-bookworm AS app",
        ]

    def test_the_default_base_is_the_slim_image_of_the_apps_python(self):
        """The default base is the official slim image of the target Python, on a pinned Debian."""
        assert default_base(PythonVersion(major=3, minor=12, micro=4)) == (
            "python:3.12-slim-bookworm"
        )

    def test_an_image_reference_with_shell_syntax_is_refused(self, tmp_path):
        """A base that is not a plain image reference is an input error, never written out."""
        with pytest.raises(InputError, match="not an image reference"):
            render(app_at(tmp_path / "app"), base="python:3.12\nRUN rm -rf /")

    def test_the_builder_builds_the_wheelhouse_with_the_target_python(self, tmp_path):
        """The builder runs ``wheelbarrow build`` for the target Python into /wheelhouse."""
        builder, _ = stages(render(app_at(tmp_path / "app")))
        assert (
            "    /opt/wheelbarrow/bin/wheelbarrow build /src --python 3.12 \\\n"
            "        --store /root/.cache/wheelbarrow --output /wheelhouse\n"
        ) in builder


class TestCacheFriendliness:
    def test_only_the_dependency_inputs_are_copied_before_the_build(self, tmp_path):
        """The builder copies the lock inputs, never the whole context, before building."""
        app = app_at(tmp_path / "app", **{"pylock.toml": "", "app.py": "", "Procfile": ""})
        builder, _ = stages(render(app))
        copies = [line for line in instructions(builder) if line.startswith("COPY")]
        assert copies == ["COPY .python-version pylock.toml requirements.txt /src/"]
        assert builder.index("COPY .python-version") < builder.index("wheelbarrow build")

    def test_the_apps_code_is_copied_after_the_environment_is_installed(self, tmp_path):
        """``COPY . /app`` comes after the venv, so a code change reuses the installed layer."""
        _, app_stage = stages(render(app_at(tmp_path / "app")))
        steps = instructions(app_stage)
        venv = next(i for i, s in enumerate(steps) if s.startswith("RUN --mount=type=bind"))
        code = steps.index("COPY --chown=10001:10001 . /app")
        assert venv < code
        assert [s for s in steps if s.startswith("COPY")] == [
            "COPY --from=builder /wheelhouse/wheelhouse.json /opt/wheelhouse.json",
            "COPY --chown=10001:10001 . /app",
        ]

    def test_included_files_local_packages_and_patches_are_inputs(self, tmp_path):
        """Every file the lock or a source build reads is copied to the same place under /src."""
        root = tmp_path / "app"
        app = app_at(
            root,
            "-r reqs/base.txt\n./pkgs/mine\n",
            **{
                "reqs/base.txt": "flask==3.1.2\n",
                "pkgs/mine/pyproject.toml": "",
                "patches/fix.patch": "",
                "wheelbarrow.toml": '[packages.mine]\npatches = ["patches/fix.patch"]\n',
            },
        )
        assert [str(p) for p in dependency_inputs(app, read_build_config(root))] == [
            ".python-version",
            "patches/fix.patch",
            "pkgs/mine",
            "reqs/base.txt",
            "requirements.txt",
            "wheelbarrow.toml",
        ]
        builder, _ = stages(render(app))
        assert [line for line in instructions(builder) if line.startswith("COPY")] == [
            "COPY .python-version requirements.txt wheelbarrow.toml /src/",
            "COPY patches/fix.patch /src/patches/fix.patch",
            "COPY pkgs/mine /src/pkgs/mine",
            "COPY reqs/base.txt /src/reqs/base.txt",
        ]

    def test_an_input_outside_the_app_directory_is_an_error(self, tmp_path):
        """A requirements file included from outside the build context is named in the error."""
        (tmp_path / "shared.txt").write_text("flask==3.1.2\n")
        app = app_at(tmp_path / "app", "-r ../shared.txt\n")
        with pytest.raises(InputError, match=r"outside the app directory.*shared\.txt"):
            render(app)


class TestBuilderStage:
    def test_the_toolchain_and_the_system_packages_are_installed_in_the_builder(self, tmp_path):
        """apt-get installs the compilers and the packages the caller maps from the settings."""
        builder, _ = stages(render(app_at(tmp_path / "app"), system_packages=["libopenblas-dev"]))
        assert (
            "    && apt-get install -y --no-install-recommends \\\n"
            "        build-essential gfortran pkg-config libopenblas-dev \\\n"
        ) in builder

    def test_a_system_package_that_is_not_a_debian_name_is_refused(self, tmp_path):
        """A package name with shell syntax never reaches the apt-get line."""
        with pytest.raises(InputError, match="not a Debian package name"):
            render(app_at(tmp_path / "app"), system_packages=["gcc; curl evil"])

    def test_wheelbarrow_is_installed_from_the_given_spec(self, tmp_path):
        """The builder's pip installs the spec, quoted for the shell."""
        builder, _ = stages(render(app_at(tmp_path / "app"), wheelbarrow_spec="wheelbarrow>=0.1"))
        assert "/opt/wheelbarrow/bin/pip install --no-cache-dir 'wheelbarrow>=0.1'\n" in builder

    def test_a_wheel_in_the_context_is_copied_in_before_it_is_installed(self, tmp_path):
        """A spec naming a wheel file copies it from the context and installs it by path."""
        wheel = "dist/wheelbarrow-0.1.0-py3-none-any.whl"
        builder, _ = stages(render(app_at(tmp_path / "app"), wheelbarrow_spec=wheel))
        installed = "/opt/wheelbarrow-dist/wheelbarrow-0.1.0-py3-none-any.whl"
        assert f"COPY {wheel} {installed}\n" in builder
        assert f"pip install --no-cache-dir {installed}\n" in builder

    def test_the_index_url_serves_both_wheelbarrow_and_the_apps_wheels(self, tmp_path):
        """``index_url`` goes to the pip that installs wheelbarrow and to ``wheelbarrow build``."""
        url = "http://127.0.0.1:8000/simple/"
        builder, app_stage = stages(render(app_at(tmp_path / "app"), index_url=url))
        assert f"pip install --no-cache-dir --index-url {url} wheelbarrow\n" in builder
        assert f"--output /wheelhouse --index-url {url}\n" in builder
        assert url not in app_stage

    def test_an_index_url_that_spans_lines_is_refused(self, tmp_path):
        """A newline would end the RUN instruction, so an index URL with one is an input error."""
        with pytest.raises(InputError, match="spans lines"):
            render(app_at(tmp_path / "app"), index_url="http://x/simple/\nRUN id")

    def test_an_index_url_with_credentials_is_refused_without_showing_them(self, tmp_path):
        """Credentials in a Dockerfile would stay in the image history: refused, and the
        message masks the password."""
        with pytest.raises(InputError, match="holds credentials") as caught:
            render(
                app_at(tmp_path / "app"), index_url="https://ci:s3cr3t-token@pypi.example/simple/"
            )
        assert "s3cr3t-token" not in caught.value.message

    def test_without_an_index_url_the_default_index_is_used(self, tmp_path):
        """No ``--index-url`` appears when none is given."""
        assert "--index-url" not in render(app_at(tmp_path / "app"))


class TestAppStage:
    def test_the_app_stage_has_no_compilers_and_no_wheelbarrow(self, tmp_path):
        """Nothing of the toolchain or the tool is installed in the image that ships."""
        _, app_stage = stages(render(app_at(tmp_path / "app"), system_packages=["libopenblas-dev"]))
        for word in (*COMPILERS, "libopenblas-dev", "/opt/wheelbarrow"):
            assert word not in app_stage

    def test_the_install_step_is_tied_to_the_wheelhouse_it_mounts(self, tmp_path):
        """The manifest is copied just before the bind-mount step, so a layer cache keyed
        by the step's text alone cannot reuse an install of another wheelhouse."""
        _, app_stage = stages(render(app_at(tmp_path / "app")))
        steps = instructions(app_stage)
        copy = steps.index("COPY --from=builder /wheelhouse/wheelhouse.json /opt/wheelhouse.json")
        assert steps[copy + 1].startswith("RUN --mount=type=bind,from=builder,source=/wheelhouse")

    def test_the_app_runs_as_a_numeric_non_root_user(self, tmp_path):
        """A user 10001 is created, owns the code, and is the image's user."""
        _, app_stage = stages(render(app_at(tmp_path / "app")))
        steps = instructions(app_stage)
        assert steps[0] == "RUN groupadd --gid 10001 app \\"
        assert "    && useradd --uid 10001 --gid 10001 --create-home app\n" in app_stage
        assert steps[-4:] == [
            "COPY --chown=10001:10001 . /app",
            "WORKDIR /app",
            "USER 10001:10001",
            "EXPOSE 8080",
        ]

    def test_the_environment_puts_the_venv_first_and_sets_the_port(self, tmp_path):
        """PATH starts with the venv (falling back to the system PATH), and PORT is 8080."""
        _, app_stage = stages(render(app_at(tmp_path / "app")))
        assert (
            "ENV PATH=/opt/venv/bin:${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
            ":/sbin:/bin} \\\n"
            "    VIRTUAL_ENV=/opt/venv \\\n"
            "    PYTHONUNBUFFERED=1 \\\n"
            "    PORT=8080\n"
        ) in app_stage

    def test_unrepaired_wheels_get_a_note_about_runtime_libraries(self, tmp_path):
        """With ``repair = "never"`` the app stage says where the runtime libraries go."""
        app = app_at(tmp_path / "app", **{"wheelbarrow.toml": 'repair = "never"\n'})
        _, app_stage = stages(render(app))
        assert '# repair = "never": wheels built from source use the builder\'s shared\n' in (
            app_stage
        )
        assert "repair" not in render(app_at(tmp_path / "other"))

    def test_bind_mounts_keep_the_wheels_out_of_every_layer(self, tmp_path):
        """By default the wheelhouse is bind-mounted from the builder and the store is a cache."""
        builder, app_stage = stages(render(app_at(tmp_path / "app")))
        assert "RUN --mount=type=cache,target=/root/.cache \\\n" in builder
        assert (
            "RUN --mount=type=bind,from=builder,source=/wheelhouse,target=/wheelhouse \\\n"
            "    python3 -m venv /opt/venv \\\n"
            "    && find /wheelhouse -maxdepth 1 -name '*.whl' -exec \\\n"
            "        /opt/venv/bin/pip install --no-index --no-deps --no-cache-dir --compile {} +\n"
        ) in app_stage
        # Only the wheelhouse's manifest is copied from the builder, never a wheel.
        copies = [line for line in app_stage.splitlines() if line.startswith("COPY --from")]
        assert copies == ["COPY --from=builder /wheelhouse/wheelhouse.json /opt/wheelhouse.json"]

    def test_without_bind_mounts_the_wheelhouse_is_copied_and_removed(self, tmp_path):
        """``bind_mounts=False`` renders no RUN --mount: COPY --from, install, then remove."""
        text = render(app_at(tmp_path / "app"), bind_mounts=False)
        _, app_stage = stages(text)
        assert "--mount" not in text
        assert (
            "COPY --from=builder /wheelhouse /wheelhouse\n"
            "RUN python3 -m venv /opt/venv \\\n"
            "    && find /wheelhouse -maxdepth 1 -name '*.whl' -exec \\\n"
            "        /opt/venv/bin/pip install --no-index --no-deps --no-cache-dir --compile {} +"
            " \\\n"
            "    && rm -rf /wheelhouse\n"
        ) in app_stage


class TestCmd:
    @pytest.mark.parametrize(
        ("web", "cmd"),
        [
            (
                "gunicorn app:app --workers 2",
                'CMD ["gunicorn", "app:app", "--workers", "2"]',
            ),
            (
                "gunicorn 'app:create()' -b 0.0.0.0:8080",
                'CMD ["gunicorn", "app:create()", "-b", "0.0.0.0:8080"]',
            ),
            (
                "gunicorn app:app --bind 0.0.0.0:$PORT",
                'CMD ["/bin/sh", "-c", "exec gunicorn app:app --bind 0.0.0.0:$PORT"]',
            ),
            (
                "gunicorn -b ${HOST:-0.0.0.0}:${PORT:-80} app:app",
                'CMD ["/bin/sh", "-c", "exec gunicorn -b ${HOST:-0.0.0.0}:${PORT:-80} app:app"]',
            ),
            (
                "{ migrate; serve; }",
                'CMD ["/bin/sh", "-c", "{ migrate; serve; }"]',
            ),
            (
                "python manage.py migrate && gunicorn app:app",
                'CMD ["/bin/sh", "-c", "python manage.py migrate && gunicorn app:app"]',
            ),
            (
                'gunicorn app:app --bind "0.0.0.0:$PORT"',
                'CMD ["/bin/sh", "-c", "exec gunicorn app:app --bind \\"0.0.0.0:$PORT\\""]',
            ),
            (
                "gunicorn app:app --log-format '$remote_addr'",
                'CMD ["gunicorn", "app:app", "--log-format", "$remote_addr"]',
            ),
            (
                "WEB_CONCURRENCY=2 gunicorn app:app",
                'CMD ["/bin/sh", "-c", "WEB_CONCURRENCY=2 gunicorn app:app"]',
            ),
        ],
    )
    def test_the_web_command_becomes_the_cmd(self, tmp_path, web, cmd):
        """Exec form without shell syntax; ``sh -c`` (exec'ing a simple command) with it."""
        text = render(app_at(tmp_path / "app"), web_command=web)
        assert instructions(text)[-1] == cmd

    def test_without_a_web_command_there_is_no_cmd_but_a_comment(self, tmp_path):
        """No web process means no CMD, and a comment that says to add one."""
        text = render(app_at(tmp_path / "app"))
        assert "CMD [" not in "\n".join(instructions(text))
        assert "# The Procfile has no web process, so there is no CMD: add one, e.g.\n" in text

    def test_the_web_command_is_read_from_the_procfile(self, tmp_path):
        """The ``web:`` line of the Procfile is the command; other processes are ignored."""
        (tmp_path / "Procfile").write_text(
            "release: python manage.py migrate\nweb: gunicorn app:app --bind :$PORT\n"
        )
        assert read_web_command(tmp_path) == "gunicorn app:app --bind :$PORT"

    def test_an_app_without_a_procfile_has_no_web_command(self, tmp_path):
        """No Procfile, no web command."""
        assert read_web_command(tmp_path) is None


class TestDebianPackages:
    def test_system_entries_map_to_debian_packages_once_each(self, tmp_path):
        """Programs, libraries and headers of every package map to their Debian packages."""
        app = app_at(
            tmp_path / "app",
            **{
                "wheelbarrow.toml": (
                    '[packages.scipy]\nsystem = ["gfortran", "lib:openblas", "header:cblas.h"]\n'
                    '[packages.crypto]\nsystem = ["lib:ssl", "header:ffi.h", "lib:openblas"]\n'
                )
            },
        )
        packages, unknown = debian_packages(app, read_build_config(app.root))
        assert packages == ("libssl-dev", "libffi-dev", "libopenblas-dev", "gfortran")
        assert unknown == ()

    def test_entries_no_package_provides_are_returned_apart(self, tmp_path):
        """A system entry without a known Debian package is reported, not guessed."""
        app = app_at(
            tmp_path / "app",
            **{"wheelbarrow.toml": '[packages.x]\nsystem = ["lib:frobnicate"]\n'},
        )
        assert debian_packages(app, read_build_config(app.root)) == ((), ("lib:frobnicate",))

    def test_a_git_requirement_needs_git_in_the_builder(self, tmp_path):
        """A ``git+`` requirement adds git, which the builder needs to clone it."""
        app = app_at(tmp_path / "app", "mine @ git+https://example.invalid/mine.git@v1\n")
        assert debian_packages(app, read_build_config(app.root)) == (("git",), ())


class TestDockerignore:
    def test_environments_caches_and_secrets_are_left_out_but_the_lock_stays(self, tmp_path):
        """.venv, bytecode, VCS data and .env are ignored; nothing ignores the lock inputs."""
        app = app_at(tmp_path / "app")
        lines = render_dockerignore(app).splitlines()
        for pattern in (".git", ".venv", "**/__pycache__", "**/*.py[cod]", ".env"):
            assert pattern in lines
        for kept in ("pylock.toml", "requirements.txt", "*.toml", "*.txt"):
            assert kept not in lines

    def test_the_build_files_do_not_ship_in_the_image(self, tmp_path):
        """The Dockerfile and .dockerignore are left out of the context, so not copied to /app."""
        lines = render_dockerignore(app_at(tmp_path / "app")).splitlines()
        assert "Dockerfile" in lines and ".dockerignore" in lines

    def test_other_virtual_environments_in_the_app_are_left_out(self, tmp_path):
        """A top-level directory with a pyvenv.cfg is ignored whatever its name."""
        app = app_at(tmp_path / "app", **{"env311/pyvenv.cfg": "home = /usr/bin\n"})
        assert "env311" in render_dockerignore(app).splitlines()


def run_command(*args: str | Path) -> tuple[int, str, str]:
    """``wheelbarrow dockerfile ARGS`` through the command module, output captured."""
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = command.run(parser.parse_args([str(a) for a in args]))
    return code, out.getvalue(), err.getvalue()


class TestCommand:
    def test_without_output_the_dockerfile_is_printed(self, tmp_path):
        """The Dockerfile goes to stdout, its base chosen from the app's .python-version."""
        app = app_at(tmp_path / "app", **{"Procfile": "web: gunicorn app:app\n"})
        code, out, _ = run_command(app.root)
        assert code == 0
        assert "FROM python:3.12-slim-bookworm AS app\n" in out
        assert out.endswith('CMD ["gunicorn", "app:app"]\n')
        assert not (app.root / ".dockerignore").exists()

    def test_options_reach_the_dockerfile(self, tmp_path):
        """Base, builder base, index URL, wheelbarrow spec and --no-bind-mounts are applied."""
        app = app_at(tmp_path / "app")
        _, out, _ = run_command(
            app.root,
            "--base",
            "debian:bookworm-slim",
            "--builder-base",
            "python:3.12-bookworm",
            "--index-url",
            "http://127.0.0.1:9/simple/",
            "--wheelbarrow",
            "wheelbarrow==0.1.0",
            "--no-bind-mounts",
        )
        assert "FROM python:3.12-bookworm AS builder\n" in out
        assert "FROM debian:bookworm-slim AS app\n" in out
        assert "pip install --no-cache-dir --index-url http://127.0.0.1:9/simple/ " in out
        assert "wheelbarrow==0.1.0\n" in out
        assert "--mount" not in out

    def test_writing_into_the_app_directory_adds_a_dockerignore(self, tmp_path):
        """--output in the app directory writes the Dockerfile and a .dockerignore beside it."""
        app = app_at(tmp_path / "app")
        code, out, _ = run_command(app.root, "--output", app.root / "Dockerfile")
        assert code == 0
        assert (app.root / "Dockerfile").read_text().startswith("# syntax=docker/dockerfile:1\n")
        assert (app.root / ".dockerignore").read_text() == render_dockerignore(app)
        assert out == f"Wrote {app.root / 'Dockerfile'}\nWrote {app.root / '.dockerignore'}\n"

    def test_an_existing_dockerignore_is_kept(self, tmp_path):
        """The user's own .dockerignore is never replaced."""
        app = app_at(tmp_path / "app", **{".dockerignore": "mine\n"})
        _, out, _ = run_command(app.root, "--output", app.root / "Dockerfile")
        assert (app.root / ".dockerignore").read_text() == "mine\n"
        assert f"Kept the existing {app.root / '.dockerignore'}\n" in out

    def test_writing_elsewhere_adds_no_dockerignore(self, tmp_path):
        """A Dockerfile written outside the app directory comes alone."""
        app = app_at(tmp_path / "app")
        run_command(app.root, "--output", tmp_path / "out" / "Dockerfile", "-q")
        assert (tmp_path / "out" / "Dockerfile").is_file()
        assert not (app.root / ".dockerignore").exists()
        assert not (tmp_path / "out" / ".dockerignore").exists()

    def test_a_system_entry_without_a_debian_package_is_warned_about(self, tmp_path):
        """An unmapped system entry is named on stderr, and left out of apt-get."""
        app = app_at(
            tmp_path / "app", **{"wheelbarrow.toml": '[packages.x]\nsystem = ["lib:frobnicate"]\n'}
        )
        _, out, err = run_command(app.root)
        assert "warning: no known Debian package provides lib:frobnicate" in err
        assert "frobnicate" not in out


def _tool_requirements() -> str:
    """wheelbarrow's own dependencies, as requirements (markers kept)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    return "\n".join(project["project"]["dependencies"]) + "\n"


def _wheelbarrow_wheel(directory: Path) -> Path:
    """This repository built into a wheel in ``directory``."""
    from uv import find_uv_bin

    subprocess.run(
        [find_uv_bin(), "build", "--wheel", "--out-dir", str(directory), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = directory.glob("wheelbarrow-*.whl")
    return wheel


@dataclass
class Built:
    """An app, the image built from its rendered Dockerfile, and how to build it again."""

    podman: Podman
    app: Path
    tag: str
    index: LocalIndex
    tmp: Path
    output: str = ""

    def build(self) -> str:
        """``buildah build`` of the app with its Dockerfile (layers cached); returns the log."""
        done = subprocess.run(
            [
                "buildah",
                "build",
                "--isolation=oci",
                "--network=host",
                "--layers",
                "-f",
                str(self.app / "Dockerfile"),
                "-t",
                self.tag,
                str(self.app),
            ],
            # TMPDIR keeps buildah's cache mounts (the store) private to this test.
            env={**self.podman.env, "TMPDIR": str(self.tmp)},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        log = done.stdout + done.stderr
        assert done.returncode == 0, log[-12000:]
        return log

    def run(self, *command: str) -> str:
        """The output of ``command`` (the image's CMD without one) in a container offline."""
        return self.podman.run(["run", "--rm", "--network=none", self.tag, *command]).stdout


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, debian_base: tuple[Podman, str]
) -> Iterator[Built]:
    """A tiny app whose Dockerfile is built by buildah from an index on 127.0.0.1.

    The index serves the app's one wheel, wheelbarrow (this repository as a
    wheel) and wheelbarrow's dependencies (fetched once from the real index).
    """
    require("buildah")
    root = tmp_path_factory.mktemp("dockerfile")
    podman, image = debian_base

    served = root / "served"
    served.mkdir()
    _wheelbarrow_wheel(served)
    tool = make_app(root / "tool", _tool_requirements(), python=HOST_PYTHON)
    result = cli("build", tool, "--store", root / "store", "--output", root / "tool-wheels")
    assert result.code == 0, result.err
    for wheel in (root / "tool-wheels").glob("*.whl"):
        shutil.copyfile(wheel, served / wheel.name)
    make_wheel(served, "tinypkg", "1.0", files={"tinypkg/__init__.py": "__version__ = '1.0'\n"})

    app = make_app(root / "app", "tinypkg==1.0\n", python=HOST_PYTHON)
    (app / "app.py").write_text(
        "import os, sys\nimport tinypkg\n"
        "print('tinypkg', tinypkg.__version__, sys.prefix, os.environ['PORT'])\n"
    )
    (app / "Procfile").write_text("web: python app.py\n")
    (app / "web.py").write_text(
        "import json, os\nimport tinypkg\nfrom wsgiref.simple_server import make_server\n\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'application/json')])\n"
        "    body = {'hello': 'world', 'tinypkg': tinypkg.__version__, 'user': os.getuid()}\n"
        "    return [json.dumps(body).encode()]\n\n"
        "make_server(os.environ['BIND_ADDRESS'], int(os.environ['PORT']), app).serve_forever()\n"
    )
    (root / "tmp").mkdir()
    tag = "localhost/wb-df-test:latest"
    with serve_local_index(served) as index:
        code, _, err = run_command(
            app,
            "--output",
            app / "Dockerfile",
            "--base",
            image,
            "--index-url",
            index.url,
            "--wheelbarrow",
            "wheelbarrow",
        )
        assert code == 0, err
        image_build = Built(podman=podman, app=app, tag=tag, index=index, tmp=root / "tmp")
        try:
            image_build.output = image_build.build()
            yield image_build
        finally:
            podman.run(["rmi", "-f", tag], check=False)


@pytest.mark.network
@pytest.mark.container
@pytest.mark.slow
class TestContainerBuild:
    def test_the_builder_fills_the_wheelhouse_from_the_index(self, built):
        """The builder installs wheelbarrow, locks and fetches the app's wheel from the index."""
        assert "Successfully installed" in built.output
        assert "Locking 1 requirement " in built.output
        assert "wheelbarrow-0.1.0-py3-none-any.whl" in built.index.downloads
        assert "tinypkg-1.0-py3-none-any.whl" in built.index.downloads

    def test_the_image_runs_the_web_command_from_the_venv(self, built):
        """The Procfile's web command is the CMD; it imports the app's package from /opt/venv."""
        assert built.run() == "tinypkg 1.0 /opt/venv 8080\n"

    def test_the_container_answers_an_http_request(self, built):
        """Served from the built image on 127.0.0.1, the app answers as a non-root user."""
        with built.podman.serving(built.tag, "python", "web.py") as port:
            answer = wait_for_json(
                f"http://127.0.0.1:{port}/", diagnose=lambda: built.podman.logs(port)
            )
        assert answer == {"hello": "world", "tinypkg": "1.0", "user": 10001}

    def test_the_app_runs_as_a_non_root_user_with_no_compilers_or_wheels(self, built):
        """whoami is the app user, owner of /app; no compiler, tool or /wheelhouse is left."""
        out = built.run(
            "sh",
            "-c",
            "whoami; id -u; stat -c %u /app; "
            "command -v gcc gfortran wheelbarrow || echo no-tools; "
            "test -e /wheelhouse || echo no-wheelhouse",
        )
        assert out.splitlines() == ["app", "10001", "10001", "no-tools", "no-wheelhouse"]

    def test_a_code_change_rebuilds_without_touching_the_wheelhouse(self, built):
        """After a code edit the builder stage is all cache: nothing locks, fetches or installs."""
        (built.app / "app.py").write_text("print('changed')\n")
        built.index.requests.clear()
        log = built.build()
        assert "Locking" not in log
        assert "Wheelhouse" not in log
        assert "Successfully installed" not in log
        assert built.index.requests == []
        assert built.run() == "changed\n"
