"""Tests of wheelbarrow.ship.heroku.runtime: the app's Python from a tarball, the stack or uv."""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.runtimes import (
    STANDALONE_VERSION,
    Served,
    downloads_json,
    make_standalone_python,
    serve_directory,
    standalone_name,
)

from wheelbarrow._core.errors import (
    FetchError,
    HashMismatchError,
    PythonRuntimeError,
    TargetError,
    UnsafeArchiveError,
    UnsupportedPythonError,
)
from wheelbarrow._core.runner import Completed, Runner, run_subprocess
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.build.sdist import unpack_sdist
from wheelbarrow.ship.heroku.provide_python import provide_runtime
from wheelbarrow.ship.heroku.runtime import (
    SHA256_VAR,
    TARBALL_VAR,
    URL_VAR,
    Runtime,
    read_env_dir,
)

RUNNING = PythonVersion.parse(STANDALONE_VERSION)
RUNNING_MINOR = PythonVersion(major=RUNNING.major, minor=RUNNING.minor)
OTHER_MINOR = PythonVersion(major=3, minor=RUNNING.minor + 1 if RUNNING.minor < 14 else 13)
OTHER_MICRO = PythonVersion(
    major=RUNNING.major, minor=RUNNING.minor, micro=(RUNNING.micro or 0) + 1
)
TEMPLATE_NAME = "cpython-{version}-{arch}-unknown-linux-gnu-install_only.tar.gz"
VERSION_CHECK = "import sys; print('.'.join(map(str, sys.version_info[:3])), sys.prefix)"


def no_stack(name: str) -> str | None:
    """A ``which`` for a stack without any Python."""
    return None


def stack_of(paths: Mapping[str, str]) -> Callable[[str], str | None]:
    """A ``which`` that knows only ``paths`` (command name -> path)."""
    return paths.get


@dataclass(slots=True)
class FakeRunner:
    """A Runner that answers each program with a canned version and records the calls."""

    versions: Mapping[str, str]
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Completed:
        self.calls.append(tuple(args))
        return Completed(
            args=tuple(args), returncode=0, stdout=f"{self.versions[args[0]]}\n", stderr=""
        )


def refusing_runner(
    args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Completed:
    """A Runner for cases that must be decided without running anything."""
    raise AssertionError(f"nothing should run, but {args} did")


@pytest.fixture(scope="session")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The relocatable install_only tarball of the running CPython."""
    return make_standalone_python(tmp_path_factory.mktemp("standalone"))


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    """A BUILD_DIR holding a minimal app."""
    path = tmp_path / "build"
    path.mkdir()
    (path / "requirements.txt").write_text("flask\n")
    return path


@pytest.fixture
def served(tarball: Path, tmp_path: Path) -> Iterator[Served]:
    """The tarball served over HTTP from a fresh directory."""
    directory = tmp_path / "www"
    directory.mkdir()
    shutil.copyfile(tarball, directory / tarball.name)
    with serve_directory(directory) as server:
        yield server


def provide(
    version: PythonVersion,
    build_dir: Path,
    config: Mapping[str, str],
    *,
    cache_dir: Path | None = None,
    which: Callable[[str], str | None] = no_stack,
    runner: Runner = run_subprocess,
) -> Runtime:
    """``provide_runtime`` with the real runner, no stack and a cache beside ``build_dir``."""
    return provide_runtime(
        version,
        build_dir=build_dir,
        cache_dir=cache_dir or build_dir.parent / "cache",
        config=config,
        which=which,
        runner=runner,
    )


def run_version(python: Path) -> tuple[str, Path]:
    """The full version and ``sys.prefix`` the interpreter reports."""
    done = run_subprocess([str(python), "-I", "-c", VERSION_CHECK])
    assert done.returncode == 0, done.stderr
    version, prefix = done.stdout.split()
    return version, Path(prefix)


def entries(directory: Path) -> list[str]:
    """Every path under ``directory``, relative and sorted."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TestStandaloneTarball:
    def test_tarball_runs_from_any_place_it_is_unpacked(
        self, tarball: Path, tmp_path: Path
    ) -> None:
        """The test tarball unpacked in two places runs in both, each with its own prefix."""
        assert tarball.name == standalone_name()
        for place in (tmp_path / "one", tmp_path / "elsewhere" / "two"):
            # wheelbarrow's own safe unpacking: tarfile's filters need Python 3.11.4+.
            assert unpack_sdist(tarball, place, label="the test tarball") == place / "python"
            version, prefix = run_version(place / "python" / "bin" / "python3")
            assert version == STANDALONE_VERSION
            assert prefix == place / "python"


class TestStandalone:
    def test_local_tarball_lands_in_the_slug_and_runs_after_the_build_dir_moves(
        self, tarball: Path, build_dir: Path, tmp_path: Path
    ) -> None:
        """A tarball path unpacks to BUILD_DIR/.heroku/python and runs after BUILD_DIR moves."""
        runtime = provide(RUNNING_MINOR, build_dir, {TARBALL_VAR: str(tarball)})

        assert runtime.kind == "standalone"
        assert runtime.home == build_dir / ".heroku" / "python"
        assert runtime.python == build_dir / ".heroku" / "python" / "bin" / "python3"
        assert runtime.version == STANDALONE_VERSION
        assert runtime.source == str(tarball)
        assert runtime.slug_python(build_dir) == "/app/.heroku/python/bin/python3"
        assert sorted(p.name for p in (build_dir / ".heroku").iterdir()) == ["python"]

        moved = tmp_path / "elsewhere" / "app"
        moved.parent.mkdir()
        shutil.move(build_dir, moved)
        version, prefix = run_version(moved / runtime.python.relative_to(build_dir))
        assert version == STANDALONE_VERSION
        assert prefix == moved / ".heroku" / "python"

    def test_file_url_template_is_filled_in(self, tarball: Path, build_dir: Path) -> None:
        """A file:// URL template in WHEELBARROW_PYTHON_URL gets {version} and {arch} filled in."""
        template = f"file://{tarball.parent}/{TEMPLATE_NAME}"

        runtime = provide(RUNNING, build_dir, {URL_VAR: template})

        assert runtime.source == str(tarball)
        assert runtime.version == STANDALONE_VERSION
        assert run_version(runtime.python)[0] == STANDALONE_VERSION

    def test_relative_tarball_path_is_inside_the_app(self, tarball: Path, build_dir: Path) -> None:
        """A relative WHEELBARROW_PYTHON_TARBALL is looked up inside BUILD_DIR."""
        (build_dir / "vendor").mkdir()
        shutil.copyfile(tarball, build_dir / "vendor" / "python.tar.gz")

        runtime = provide(RUNNING_MINOR, build_dir, {TARBALL_VAR: "vendor/python.tar.gz"})

        assert runtime.source == str(build_dir / "vendor" / "python.tar.gz")

    def test_http_url_template_is_downloaded_and_checked(
        self, served: Served, tarball: Path, build_dir: Path
    ) -> None:
        """An http URL template with {version} is filled in, downloaded and checked by sha256."""
        config = {URL_VAR: f"{served.url}/{TEMPLATE_NAME}", SHA256_VAR: sha256_of(tarball)}

        runtime = provide(RUNNING, build_dir, config)

        assert runtime.source == f"{served.url}/{standalone_name()}"
        assert served.requests == [f"/{standalone_name()}"]
        assert run_version(runtime.python)[0] == STANDALONE_VERSION

    def test_second_build_uses_the_cached_download(self, served: Served, tmp_path: Path) -> None:
        """Two builds with one CACHE_DIR download the tarball once."""
        config = {URL_VAR: f"{served.url}/{TEMPLATE_NAME}"}
        cache = tmp_path / "cache"
        for name in ("build1", "build2"):
            (tmp_path / name).mkdir()
            runtime = provide(RUNNING, tmp_path / name, config, cache_dir=cache)
            assert runtime.home == tmp_path / name / ".heroku" / "python"

        assert served.requests == [f"/{standalone_name()}"]

    def test_cached_download_that_fails_the_sha256_is_fetched_again(
        self, served: Served, tarball: Path, tmp_path: Path
    ) -> None:
        """A cached tarball that no longer matches WHEELBARROW_PYTHON_SHA256 is downloaded again."""
        cache = tmp_path / "cache"
        (tmp_path / "build1").mkdir()
        provide(
            RUNNING,
            tmp_path / "build1",
            {URL_VAR: f"{served.url}/{TEMPLATE_NAME}"},
            cache_dir=cache,
        )
        (cached,) = cache.rglob("*.tar.gz")
        cached.write_bytes(b"corrupted")

        (tmp_path / "build2").mkdir()
        config = {URL_VAR: f"{served.url}/{TEMPLATE_NAME}", SHA256_VAR: sha256_of(tarball)}
        runtime = provide(RUNNING, tmp_path / "build2", config, cache_dir=cache)

        assert len(served.requests) == 2
        assert runtime.version == STANDALONE_VERSION
        assert sha256_of(cached) == sha256_of(tarball)

    def test_local_sha256_mismatch_is_refused_and_leaves_nothing(
        self, tarball: Path, build_dir: Path
    ) -> None:
        """A local tarball whose sha256 differs is refused before BUILD_DIR is touched."""
        before = entries(build_dir)
        config = {TARBALL_VAR: str(tarball), SHA256_VAR: "0" * 64}

        with pytest.raises(HashMismatchError, match="differs from WHEELBARROW_PYTHON_SHA256"):
            provide(RUNNING, build_dir, config, runner=refusing_runner)

        assert entries(build_dir) == before

    def test_downloaded_sha256_mismatch_is_refused_and_leaves_nothing(
        self, served: Served, build_dir: Path, tmp_path: Path
    ) -> None:
        """A download whose sha256 differs leaves nothing in BUILD_DIR nor in the cache."""
        before = entries(build_dir)
        config = {URL_VAR: f"{served.url}/{TEMPLATE_NAME}", SHA256_VAR: "ab" * 32}

        with pytest.raises(HashMismatchError) as caught:
            provide(RUNNING, build_dir, config, cache_dir=tmp_path / "cache")

        assert caught.value.hint is not None and SHA256_VAR in caught.value.hint
        assert entries(build_dir) == before
        assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]

    @pytest.mark.parametrize("wanted", [OTHER_MINOR, OTHER_MICRO], ids=str)
    def test_tarball_of_another_version_is_refused_and_leaves_nothing(
        self, wanted: PythonVersion, tarball: Path, build_dir: Path
    ) -> None:
        """A tarball whose Python is not the one the app asks for is refused and removed."""
        before = entries(build_dir)

        with pytest.raises(PythonRuntimeError) as caught:
            provide(wanted, build_dir, {TARBALL_VAR: str(tarball)})

        assert f"holds Python {STANDALONE_VERSION}" in str(caught.value)
        assert f"asks for Python {wanted}" in str(caught.value)
        assert entries(build_dir) == before

    def test_unsafe_tarball_is_refused_and_leaves_nothing(
        self, build_dir: Path, tmp_path: Path
    ) -> None:
        """A tarball with a member escaping its root is refused, and BUILD_DIR stays as it was."""
        evil = tmp_path / "evil.tar.gz"
        with tarfile.open(evil, "w:gz") as tar:
            info = tarfile.TarInfo("python/../../escaped")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        before = entries(build_dir)

        with pytest.raises(UnsafeArchiveError, match=r"'\.\.' component"):
            provide(RUNNING, build_dir, {TARBALL_VAR: str(evil)}, runner=refusing_runner)

        assert entries(build_dir) == before

    def test_tarball_without_an_interpreter_is_refused(
        self, build_dir: Path, tmp_path: Path
    ) -> None:
        """A tarball without bin/python3 is not taken for an install_only build."""
        other = tmp_path / "other.tar.gz"
        with tarfile.open(other, "w:gz") as tar:
            info = tarfile.TarInfo("python/README")
            tar.addfile(info, io.BytesIO(b""))

        with pytest.raises(PythonRuntimeError, match="no bin/python3"):
            provide(RUNNING, build_dir, {TARBALL_VAR: str(other)}, runner=refusing_runner)

        assert not (build_dir / ".heroku").exists()

    def test_previous_runtime_is_replaced(self, tarball: Path, build_dir: Path) -> None:
        """A .heroku/python left in BUILD_DIR is replaced by the new runtime."""
        stale = build_dir / ".heroku" / "python" / "stale.txt"
        stale.parent.mkdir(parents=True)
        stale.write_text("old")

        runtime = provide(RUNNING, build_dir, {TARBALL_VAR: str(tarball)})

        assert not stale.exists()
        assert runtime.python.exists()

    def test_missing_file_names_the_path(self, build_dir: Path, tmp_path: Path) -> None:
        """A configured file that does not exist is named in the error."""
        missing = tmp_path / "nope.tar.gz"

        with pytest.raises(PythonRuntimeError, match=r"nope\.tar\.gz, which is not a file"):
            provide(RUNNING, build_dir, {URL_VAR: f"file://{missing}"})

    def test_http_error_is_a_fetch_error(self, served: Served, build_dir: Path) -> None:
        """A URL that answers 404 fails with the URL and the status."""
        config = {URL_VAR: f"{served.url}/cpython-{{minor}}-missing.tar.gz"}

        with pytest.raises(FetchError, match=r"cpython-3\.\d+-missing\.tar\.gz answered HTTP 404"):
            provide(RUNNING, build_dir, config)

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            ({URL_VAR: "https://x.invalid/{python}.tar.gz"}, "cannot be filled in"),
            ({URL_VAR: "https://x.invalid/{version", TARBALL_VAR: ""}, "cannot be filled in"),
            ({URL_VAR: "/a.tar.gz", TARBALL_VAR: "/b.tar.gz"}, "both"),
            ({URL_VAR: "ftp://x.invalid/a.tar.gz"}, "neither an http"),
            ({SHA256_VAR: "0" * 64}, "no standalone Python is configured"),
            ({TARBALL_VAR: "/a.tar.gz", SHA256_VAR: "xyz"}, "is not a sha256"),
        ],
        ids=["placeholder", "brace", "both", "scheme", "sha-alone", "sha-form"],
    )
    def test_bad_configuration_is_explained(
        self, config: dict[str, str], message: str, build_dir: Path
    ) -> None:
        """Unusable config vars are refused with what is wrong, before anything runs."""
        with pytest.raises(PythonRuntimeError, match=message):
            provide(RUNNING, build_dir, config, runner=refusing_runner)


class TestStack:
    def test_matching_stack_interpreter_is_used(self, build_dir: Path) -> None:
        """The stack's python3.X is used when its version is the app's, and nothing ships."""
        which = stack_of({f"python{RUNNING.short}": sys.executable})
        before = entries(build_dir)

        runtime = provide(RUNNING_MINOR, build_dir, {}, which=which)

        assert runtime == Runtime(
            python=Path(sys.executable),
            version=STANDALONE_VERSION,
            kind="stack",
            home=None,
            source=sys.executable,
        )
        assert runtime.slug_python(build_dir) == sys.executable
        assert entries(build_dir) == before

    def test_python3_is_tried_after_python3x(self, build_dir: Path) -> None:
        """Without python3.X on PATH, python3 is probed and used when it matches."""
        runner = FakeRunner({"/usr/bin/python3": "(3, 12, 4)"})

        runtime = provide(
            PythonVersion.parse("3.12.4"),
            build_dir,
            {},
            which=stack_of({"python3": "/usr/bin/python3"}),
            runner=runner,
        )

        assert (runtime.kind, runtime.version, runtime.source) == (
            "stack",
            "3.12.4",
            "/usr/bin/python3",
        )
        assert [call[0] for call in runner.calls] == ["/usr/bin/python3"]

    def test_configured_tarball_wins_over_a_matching_stack(
        self, tarball: Path, build_dir: Path
    ) -> None:
        """An explicit standalone configuration is used even when the stack would do."""
        which = stack_of({f"python{RUNNING.short}": sys.executable, "python3": sys.executable})

        runtime = provide(RUNNING_MINOR, build_dir, {TARBALL_VAR: str(tarball)}, which=which)

        assert runtime.kind == "standalone"

    def test_stack_of_another_version_without_url_names_both(self, build_dir: Path) -> None:
        """With only another Python on the stack, the error names it and the config var to set."""
        runner = FakeRunner({"/usr/bin/python3": "(3, 11, 2)"})

        with pytest.raises(PythonRuntimeError) as caught:
            provide(
                PythonVersion.parse("3.12"),
                build_dir,
                {},
                which=stack_of({"python3": "/usr/bin/python3"}),
                runner=runner,
            )

        assert str(caught.value) == (
            "Python 3.12 is not available: the stack has Python 3.11.2 (/usr/bin/python3), "
            "and no standalone Python is configured"
        )
        assert caught.value.hint is not None and URL_VAR in caught.value.hint
        assert not isinstance(caught.value, UnsupportedPythonError)

    def test_pinned_micro_must_match_the_stack(self, build_dir: Path) -> None:
        """An app pinning 3.X.Y does not get the stack's 3.X.Z."""
        which = stack_of({f"python{RUNNING.short}": sys.executable})

        with pytest.raises(PythonRuntimeError, match=f"the stack has Python {STANDALONE_VERSION}"):
            provide(OTHER_MICRO, build_dir, {}, which=which)

    def test_stack_without_python_says_so(self, build_dir: Path) -> None:
        """With no python3 on the stack, the error says so."""
        with pytest.raises(PythonRuntimeError, match="the stack has no python3, and no standalone"):
            provide(RUNNING, build_dir, {}, runner=refusing_runner)

    def test_stack_interpreter_that_does_not_run_is_reported(
        self, build_dir: Path, tmp_path: Path
    ) -> None:
        """A python3 on PATH that fails to start is reported, not used."""
        broken = tmp_path / "python3"
        broken.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
        broken.chmod(0o755)

        with pytest.raises(PythonRuntimeError, match=r"does not run \(exit status 3: broken\)"):
            provide(RUNNING, build_dir, {}, which=stack_of({"python3": str(broken)}))


class TestUnsupportedVersions:
    @pytest.mark.parametrize(
        ("major", "minor"), [(3, 8), (4, 0), (2, 7), (3, 15)], ids=["3.8", "4.0", "2.7", "3.15"]
    )
    def test_unsupported_version_names_the_supported_range(
        self, major: int, minor: int, build_dir: Path
    ) -> None:
        """A version outside 3.9 to 3.14 is refused with the range and how to pin one."""
        version = PythonVersion(major=major, minor=minor)

        with pytest.raises(UnsupportedPythonError) as caught:
            provide(
                version,
                build_dir,
                {},
                which=stack_of({"python3": "/usr/bin/python3"}),
                runner=refusing_runner,
            )

        assert str(caught.value) == (
            f"Python {major}.{minor} is not supported: wheelbarrow provides CPython 3.9 to 3.14"
        )
        assert caught.value.hint is not None and ".python-version" in caught.value.hint
        assert isinstance(caught.value, TargetError)
        assert caught.value.exit_code == 2


class TestReadEnvDir:
    def test_one_file_per_variable(self, tmp_path: Path) -> None:
        """Each file is a variable; only one final newline is dropped from its value."""
        (tmp_path / "WHEELBARROW_PYTHON_URL").write_text("https://example.invalid/x\n")
        (tmp_path / "MULTI").write_text("a\nb\n\n")
        (tmp_path / "EMPTY").write_text("")
        (tmp_path / "_private2").write_text("  spaced  ")

        assert read_env_dir(tmp_path) == {
            "EMPTY": "",
            "MULTI": "a\nb\n",
            "WHEELBARROW_PYTHON_URL": "https://example.invalid/x",
            "_private2": "  spaced  ",
        }

    def test_directories_and_invalid_names_are_skipped(self, tmp_path: Path) -> None:
        """Directories and names that are not variable names are not config vars."""
        (tmp_path / "DIR").mkdir()
        (tmp_path / ".gitkeep").write_text("")
        (tmp_path / "my-var").write_text("x")
        (tmp_path / "9LIVES").write_text("x")
        (tmp_path / "OK").write_text("yes")

        assert read_env_dir(tmp_path) == {"OK": "yes"}

    def test_missing_env_dir_has_no_variables(self, tmp_path: Path) -> None:
        """A missing ENV_DIR means no config vars."""
        assert read_env_dir(tmp_path / "missing") == {}


class TestManagedPython:
    def test_uv_installs_the_version_from_a_private_list(
        self, tarball: Path, served: Served, build_dir: Path, tmp_path: Path
    ) -> None:
        """With no stack Python, uv installs it from UV_PYTHON_DOWNLOADS_JSON_URL; the copy in
        BUILD_DIR runs, and a second build takes it from the cache without downloading."""
        from uv import find_uv_bin

        from wheelbarrow.ship.heroku.runtime import DOWNLOADS_JSON_VAR

        (served.directory / "downloads.json").write_text(downloads_json(tarball, served.url))
        config = {DOWNLOADS_JSON_VAR: f"{served.url}/downloads.json"}
        for _ in range(2):
            runtime = provide_runtime(
                RUNNING_MINOR,
                build_dir=build_dir,
                cache_dir=tmp_path / "cache",
                config=config,
                which=no_stack,
                runner=run_subprocess,
                uv=str(find_uv_bin()),
                environ={"PATH": "/usr/bin:/bin"},
            )
            assert (runtime.kind, runtime.version) == ("standalone", STANDALONE_VERSION)
            assert run_version(runtime.python) == (
                STANDALONE_VERSION,
                build_dir / ".heroku" / "python",
            )
        assert served.requests.count(f"/{tarball.name}") == 1

    def test_a_version_the_list_lacks_names_the_list_and_the_stack(
        self, build_dir: Path, tmp_path: Path
    ) -> None:
        """uv's refusal is quoted with the list it read, after what the stack has."""
        from uv import find_uv_bin

        from wheelbarrow.ship.heroku.runtime import DOWNLOADS_JSON_VAR

        listing = tmp_path / "downloads.json"
        listing.write_text("{}")
        with pytest.raises(PythonRuntimeError) as caught:
            provide_runtime(
                RUNNING_MINOR,
                build_dir=build_dir,
                cache_dir=tmp_path / "cache",
                config={DOWNLOADS_JSON_VAR: str(listing)},
                which=no_stack,
                runner=run_subprocess,
                uv=str(find_uv_bin()),
                environ={"PATH": "/usr/bin:/bin"},
            )
        message = caught.value.message
        assert message.startswith(
            f"Python {RUNNING_MINOR} is not available: the stack has no python3"
        )
        assert f"; and uv could not install it from {listing}: error: No download found" in message
        assert not (build_dir / ".heroku").exists()
