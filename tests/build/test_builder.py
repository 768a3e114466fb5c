"""One PEP 517 build: what the backend is given, and how its failures read."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_wheel
from support.apps import build_cli, build_ok
from support.backends import PROBE_TOOL, make_env_probe_project, probe_report

from wheelbarrow.build.builder import known_cause


def probe_app(tmp_path: Path) -> Path:
    """An app with no Python pin whose one requirement is the local probe project."""
    app = tmp_path / "app"
    make_env_probe_project(app / "envprobe")
    (app / "requirements.txt").write_text("./envprobe\n", encoding="utf-8")
    return app


@pytest.fixture
def tool_index(tmp_path, local_index):
    """A local index with the probe's build requirement: a wheel with a console script."""
    wheel = make_wheel(
        tmp_path / "wheels",
        PROBE_TOOL,
        "1.0",
        files={f"{PROBE_TOOL}/__init__.py": "def main():\n    print('the probe tool ran')\n"},
        entry_points={PROBE_TOOL: f"{PROBE_TOOL}:main"},
    )
    return local_index([wheel])


class TestBackendEnvironment:
    def test_build_requirement_scripts_come_first_on_path(self, tmp_path, tool_index):
        """A backend runs its build requirements' scripts by name, from the build environment."""
        report = build_ok(probe_app(tmp_path), tmp_path / "store", tool_index.url)
        [built] = report["built"]
        seen = probe_report(Path(built["log"]))
        scripts = str(Path(str(seen["prefix"])) / "bin")
        assert seen["path0"] == scripts
        assert seen["tool"] == f"{scripts}/{PROBE_TOOL}"
        assert seen["tool_says"] == "the probe tool ran"

    def test_backend_gets_what_uv_gives_it_and_stays_offline(self, tmp_path, tool_index):
        """VIRTUAL_ENV names the build environment (as uv sets it); pip, uv, cargo are offline."""
        report = build_ok(probe_app(tmp_path), tmp_path / "store", tool_index.url)
        seen = probe_report(Path(report["built"][0]["log"]))
        assert seen["env"] == {
            "VIRTUAL_ENV": seen["prefix"],
            "CARGO_NET_OFFLINE": "true",
            "PYTHONIOENCODING": "utf-8:backslashreplace",
            "PIP_NO_INDEX": "1",
            "UV_OFFLINE": "1",
        }

    def test_a_virtual_env_of_the_caller_does_not_leak_in(self, tmp_path, tool_index, monkeypatch):
        """The caller's own VIRTUAL_ENV is replaced by the build environment's."""
        monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "callers-venv"))
        report = build_ok(probe_app(tmp_path), tmp_path / "store", tool_index.url)
        seen = probe_report(Path(report["built"][0]["log"]))
        assert seen["env"]["VIRTUAL_ENV"] == seen["prefix"]  # type: ignore[index]

    def test_backend_output_in_utf8_whatever_the_callers_encoding(
        self, tmp_path, tool_index, monkeypatch
    ):
        """A backend that prints emoji (maturin does) builds even if the caller asked for ASCII."""
        monkeypatch.setenv("PYTHONIOENCODING", "ascii")
        result = build_cli(probe_app(tmp_path), tmp_path / "store", tool_index.url, "--json")
        assert result.code == 0, result.err
        log = Path(result.json()["built"][0]["log"])
        assert "done \u2192 \U0001f40d" in log.read_text(encoding="utf-8")


CARGO_OFFLINE_LOG = """\
Running `maturin pep517 build-wheel -i python --compatibility off`
error: no matching package named `pyo3` found
location searched: registry `crates-io`
required by package `rpds-py v2026.9.1 (/src/rpds_py-2026.9.1)`
As a reminder, you're using offline mode (--offline) which can sometimes cause surprising \
resolution failures, if this error is too confusing you may wish to retry without `--offline`.
💥 maturin failed
"""

MESON_COMPILE_ERROR_LOG = """\
Run-time dependency libcsiphash-1 found: NO (tried pkg-config and cmake)
Looking for a fallback subproject for the dependency libcsiphash-1
../subprojects/libcsiphash-1/src/c-siphash.c:12:10: fatal error: foo.h: No such file
ERROR: Subproject libcsiphash-1 is buildable: NO
"""


class TestKnownCause:
    def test_cargo_offline_without_the_crate_is_named(self):
        """cargo's offline resolution failure becomes 'not vendored', naming the crate."""
        cause = known_cause(CARGO_OFFLINE_LOG)
        assert cause is not None
        reason, hint = cause
        assert reason == (
            "its crates are not vendored and cargo is offline (cargo has no copy of the crate pyo3)"
        )
        assert hint.startswith("vendor its crates: run `cargo vendor` in its source tree")

    def test_a_missing_crate_without_offline_mode_is_not_called_offline(self):
        """The same missing crate with cargo online (a typo, a yanked crate) is no known cause."""
        online = CARGO_OFFLINE_LOG.replace("offline mode (--offline)", "a registry")
        assert known_cause(online) is None

    def test_a_subproject_that_fails_to_compile_is_not_a_fetch_failure(self):
        """A meson subproject that is there but does not build is left to the generic hints."""
        assert known_cause(MESON_COMPILE_ERROR_LOG) is None
