"""One PEP 517 build: what the backend is given, and how its failures read."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from support import make_failing_sdist, make_wheel
from support.apps import build_cli, build_ok
from support.backends import PROBE_TOOL, make_env_probe_project, probe_report
from support.sdists import MISSING_HEADER

from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.build.builder import BuildFailure, BuildRequest, build_wheel, known_cause
from wheelbarrow.cli.common import running_interpreter
from wheelbarrow.store.store import Store


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


DUMP_MARK = "ENVDUMP "

# An in-tree backend (stdlib only) that prints its whole environment, asks for the
# requirements in asks.json, and imports them while building.
_DUMP_BACKEND = r'''"""In-tree PEP 517 backend: prints its environment as one JSON line."""

import json
import os
import sys
import zipfile
from pathlib import Path

ASKS = json.loads(Path("asks.json").read_text())


def get_requires_for_build_wheel(config_settings=None):
    return ASKS


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    for name in ASKS:
        __import__(name)
    seen = {"prefix": sys.prefix, "environ": dict(os.environ)}
    print("@MARK@" + json.dumps(seen, sort_keys=True), flush=True)
    name = "dump-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        metadata = "Metadata-Version: 2.1\nName: dump\nVersion: 1.0\n"
        tags = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        wheel.writestr("dump-1.0.dist-info/METADATA", metadata)
        wheel.writestr("dump-1.0.dist-info/WHEEL", tags)
        wheel.writestr("dump-1.0.dist-info/RECORD", "")
    return name
'''.replace("@MARK@", DUMP_MARK)


def make_dump_project(directory: Path, asks: Sequence[str] = ()) -> Path:
    """A project ``dump`` whose backend logs its environment and asks for ``asks`` at build time."""
    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["_backend"]\n'
    )
    (directory / "asks.json").write_text(json.dumps(list(asks)))
    (directory / "_backend").mkdir()
    (directory / "_backend" / "backend.py").write_text(_DUMP_BACKEND)
    return directory


def dumped(log: Path) -> dict[str, object]:
    """The DUMP_MARK line of a build log, parsed."""
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith(DUMP_MARK):
            seen: dict[str, object] = json.loads(line.removeprefix(DUMP_MARK))
            return seen
    raise AssertionError(f"no {DUMP_MARK.strip()} line in {log}")


def no_more_wheels(requirements: Sequence[str]) -> list[Path]:
    raise AssertionError(f"the backend should ask for nothing, but asked for {requirements}")


def request_for(tmp_path: Path, source_dir: Path, **changes: object) -> BuildRequest:
    fields: dict[str, object] = {
        "label": "dump 1.0",
        "source_dir": source_dir,
        "interpreter": running_interpreter(),
        "wheels": [],
        "config_settings": {},
        "env": {},
        "log": tmp_path / "logs" / "build.log",
        "out_dir": tmp_path / "out",
    }
    fields.update(changes)
    return BuildRequest(**fields)  # type: ignore[arg-type]


class TestBuildWheel:
    def test_the_build_environment_is_first_on_path_and_is_the_virtual_env(self, tmp_path):
        """The backend runs in the build environment: its bin/ leads PATH, VIRTUAL_ENV names it,
        and the package's own build variables reach it over the caller's."""
        request = request_for(
            tmp_path, make_dump_project(tmp_path / "src"), env={"WB_SETTING": "from settings"}
        )
        environ = {
            **os.environ,
            "VIRTUAL_ENV": str(tmp_path / "callers-venv"),
            "PYTHONPATH": str(tmp_path / "callers-path"),
            "WB_SETTING": "from the caller",
            "WB_UNRELATED": "kept",
        }

        wheel = build_wheel(
            request,
            store=Store(tmp_path / "store"),
            runner=run_subprocess,
            environ=environ,
            more_wheels=no_more_wheels,
        )

        assert wheel == tmp_path / "out" / "dump-1.0-py3-none-any.whl" and wheel.is_file()
        seen = dumped(request.log)
        env = seen["environ"]
        assert isinstance(env, dict)
        prefix = Path(str(seen["prefix"]))
        assert prefix.parent == tmp_path / "store" / "envs"
        assert env["PATH"].split(os.pathsep)[0] == str(prefix / "bin")
        assert env["VIRTUAL_ENV"] == str(prefix)
        assert "PYTHONPATH" not in env
        assert (env["WB_SETTING"], env["WB_UNRELATED"]) == ("from settings", "kept")

    def test_the_backend_gets_source_date_epoch_and_prefix_maps_after_its_own_flags(self, tmp_path):
        """SOURCE_DATE_EPOCH is the request's (over the caller's), PYTHONHASHSEED is 0, and the
        compilers' prefix maps for the store, the build environment and the source tree (last,
        so it wins) follow the package's and the caller's own flags."""
        source = make_dump_project(tmp_path / "src")
        request = request_for(
            tmp_path, source, env={"CFLAGS": "-O1 -DFROM_SETTINGS"}, source_date_epoch=1_600_000_000
        )
        environ = {
            **os.environ,
            "SOURCE_DATE_EPOCH": "1",
            "CXXFLAGS": "-DFROM_CALLER",
            "RUSTFLAGS": "-C opt-level=2",
        }
        environ.pop("CARGO_ENCODED_RUSTFLAGS", None)
        environ.pop("FFLAGS", None)

        build_wheel(
            request,
            store=Store(tmp_path / "store"),
            runner=run_subprocess,
            environ=environ,
            more_wheels=no_more_wheels,
        )

        seen = dumped(request.log)
        env = seen["environ"]
        assert isinstance(env, dict)
        build_env = str(seen["prefix"])
        maps = [
            f"{tmp_path / 'store'}=/wheelbarrow/store",
            f"{build_env}=/wheelbarrow/build-env",
            f"{source}=/wheelbarrow/src",
        ]
        assert (env["SOURCE_DATE_EPOCH"], env["PYTHONHASHSEED"]) == ("1600000000", "0")
        c_maps = " ".join(f"-ffile-prefix-map={m}" for m in maps)
        assert env["CFLAGS"] == f"-O1 -DFROM_SETTINGS {c_maps}"
        assert env["CXXFLAGS"] == f"-DFROM_CALLER {c_maps}"
        assert env["FFLAGS"] == env["FCFLAGS"] == c_maps
        assert env["RUSTFLAGS"] == "-C opt-level=2 " + " ".join(
            f"--remap-path-prefix={m}" for m in maps
        )

    def test_a_packages_own_source_date_epoch_and_hash_seed_are_kept(self, tmp_path):
        """SOURCE_DATE_EPOCH and PYTHONHASHSEED from the package's build settings win over the
        ones wheelbarrow chooses."""
        request = request_for(
            tmp_path,
            make_dump_project(tmp_path / "src"),
            env={"SOURCE_DATE_EPOCH": "1234567890", "PYTHONHASHSEED": "7"},
            source_date_epoch=1_600_000_000,
        )

        build_wheel(
            request,
            store=Store(tmp_path / "store"),
            runner=run_subprocess,
            environ=os.environ,
            more_wheels=no_more_wheels,
        )

        env = dumped(request.log)["environ"]
        assert isinstance(env, dict)
        assert (env["SOURCE_DATE_EPOCH"], env["PYTHONHASHSEED"]) == ("1234567890", "7")

    def test_index_settings_and_their_credentials_do_not_reach_the_backend(self, tmp_path):
        """Index URLs, uv's index credentials and netrc stay out; pip, uv and cargo are offline."""
        request = request_for(tmp_path, make_dump_project(tmp_path / "src"))
        secrets = {
            "PIP_INDEX_URL": "https://user:s3cret-pip@index.example/simple",
            "PIP_EXTRA_INDEX_URL": "https://user:s3cret-extra@index.example/simple",
            "PIP_FIND_LINKS": "https://user:s3cret-links@index.example/links",
            "PIP_TRUSTED_HOST": "index.example",
            "UV_INDEX_URL": "https://user:s3cret-uv@index.example/simple",
            "UV_INDEX_PRIVATE_PASSWORD": "s3cret-uv-password",
            "UV_DEFAULT_INDEX": "https://user:s3cret-default@index.example/simple",
            "WHEELBARROW_INDEX_URL": "https://user:s3cret-wb@index.example/simple",
            "NETRC": str(tmp_path / "s3cret-netrc"),
        }

        build_wheel(
            request,
            store=Store(tmp_path / "store"),
            runner=run_subprocess,
            environ={**os.environ, **secrets},
            more_wheels=no_more_wheels,
        )

        env = dumped(request.log)["environ"]
        assert isinstance(env, dict)
        assert sorted(set(secrets) & set(env)) == []
        assert "s3cret" not in request.log.read_text()
        assert {name: env.get(name) for name in ("PIP_NO_INDEX", "UV_OFFLINE")} == {
            "PIP_NO_INDEX": "1",
            "UV_OFFLINE": "1",
        }
        assert env["CARGO_NET_OFFLINE"] == "true"

    def test_what_the_backend_asks_for_at_build_time_is_added(self, tmp_path):
        """Requirements the backend names beyond the request's wheels come from more_wheels and
        are installed before it builds; the log says so."""
        store = Store(tmp_path / "store")
        asked = make_wheel(tmp_path / "wheels", "askedfor", "1.0")
        in_store = store.named(store.add_file(asked), asked.name)
        calls: list[list[str]] = []

        def more_wheels(requirements: Sequence[str]) -> list[Path]:
            calls.append(list(requirements))
            return [in_store]

        request = request_for(tmp_path, make_dump_project(tmp_path / "src", asks=["askedfor"]))
        build_wheel(
            request, store=store, runner=run_subprocess, environ=os.environ, more_wheels=more_wheels
        )

        assert calls == [["askedfor"]]
        log = request.log.read_text()
        assert "# the backend also needs: askedfor\n" in log
        assert "# added to the build environment: askedfor-1.0-py3-none-any.whl\n" in log

    def test_a_failing_backend_is_a_build_failure_with_the_logs_tail(self, tmp_path):
        """A compile error in the backend raises BuildFailure naming the package and its log,
        with the log's last lines and a hint from them."""
        sdist = make_failing_sdist(tmp_path / "d")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp_path / "src", filter="data")
        request = request_for(tmp_path, tmp_path / "src" / "broken-1.0", label="broken 1.0")

        with pytest.raises(BuildFailure) as caught:
            build_wheel(
                request,
                store=Store(tmp_path / "store"),
                runner=run_subprocess,
                environ=os.environ,
                more_wheels=no_more_wheels,
            )

        failure = caught.value
        assert failure.message == f"broken 1.0: the build failed (log: {request.log})"
        assert (failure.label, failure.log) == ("broken 1.0", request.log)
        assert MISSING_HEADER in failure.tail
        assert failure.tail.splitlines()[-1].startswith("# build backend failed:")
        assert len(failure.tail.splitlines()) <= 25
        assert failure.hint is not None and MISSING_HEADER in failure.hint
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
