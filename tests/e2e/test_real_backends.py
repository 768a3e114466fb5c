"""Real build backends from the package index: real sdists built offline, repaired, installed, used.

One small package per backend, each pinned, each built from its sdist with
``--no-binary`` by an app with no Python pin; the build log must show a
compiler at work (a reused wheel proves nothing). The store is shared by the
module so build requirements (setuptools, numpy, Cython, maturin) download once.

- setuptools with a C extension: mmh3 (two C files, no Python dependencies).
- setuptools + Cython, numpy as a build requirement: pykdtree (one .pyx, one .c).
- meson-python with Cython and numpy: PyWavelets, the smallest real one found
  (about a minute; siphash24 is smaller but fetches its meson subproject from git).
- scikit-build-core with cmake and ninja as wheels: mapbox-earcut (one C++ file
  with nanobind).
- maturin: crates written here (no crate registry is reachable) and rpds-py, a
  small PyO3 sdist whose crates are not vendored.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from support.apps import Result, cli
from support.backends import RUST_FUNCTION, make_rust_cffi_crate

pytestmark = pytest.mark.network

BUILD_ENV_BIN = r"/envs/build-[0-9a-f]+/bin/"
GCC = r"(\S+-)?gcc"  # setuptools runs sysconfig's CC: gcc, or x86_64-linux-gnu-gcc on Debian


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for the module: build requirements are fetched once, each package built once."""
    return tmp_path_factory.mktemp("real-backends") / "store"


def make_unpinned_app(directory: Path, requirements: str) -> Path:
    """An app as a stranger writes one: requirements.txt and no Python pin."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "requirements.txt").write_text(requirements, encoding="utf-8")
    return directory


def build(app: Path, store: Path, *args: str) -> Result:
    return cli("build", app, "--store", store, "--json", *args)


def built_from_source(app: Path, store: Path, name: str) -> str:
    """Build ``app`` with ``--no-binary NAME`` (built now and repaired); return NAME's build log."""
    result = build(app, store, "--no-binary", name)
    assert result.code == 0, result.err
    [built] = [b for b in result.json()["built"] if b["name"] == name]
    assert built["reused"] is False, "a reused wheel proves nothing about the backend"
    assert built["repair"].startswith("repaired to manylinux"), built["repair"]
    return Path(built["log"]).read_text(encoding="utf-8")


def installed(app: Path, store: Path, into: Path) -> Path:
    """A fresh environment of ``app`` made by ``wheelbarrow install``; its python."""
    result = cli("install", app, "--store", store, "--into", into)
    assert result.code == 0, result.err
    return into / "bin" / "python"


def run(python: Path, code: str) -> str:
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class TestSetuptoolsCExtension:
    def test_mmh3_compiles_with_gcc_and_hashes(self, tmp_path, store):
        """mmh3 5.3.1 from its sdist: gcc compiles its C files; the installed module hashes."""
        app = make_unpinned_app(tmp_path / "app", "mmh3==5.3.1\n")
        log = built_from_source(app, store, "mmh3")
        assert log.startswith("# mmh3 5.3.1 from mmh3-5.3.1.tar.gz\n")
        assert re.search(rf"^{GCC} .* -c \S*mmh3module\.c ", log, re.M), log[-3000:]
        python = installed(app, store, tmp_path / "env")
        code = "import mmh3; print(mmh3.__file__.endswith('.so'), mmh3.hash('foo'))"
        assert run(python, code) == "True -156908512"


class TestSetuptoolsCython:
    def test_pykdtree_cythonizes_against_numpy_from_the_index(self, tmp_path, store):
        """pykdtree 1.4.3: Cython and numpy (a wheel from the index) in its build environment."""
        app = make_unpinned_app(tmp_path / "app", "pykdtree==1.4.3\n")
        log = built_from_source(app, store, "pykdtree")
        [environment] = [line for line in log.splitlines() if line.startswith("# build env")]
        assert "numpy-2." in environment and "cython-3." in environment
        # gcc compiles the C that Cython wrote, against the build environment's numpy headers.
        numpy_include = r"/envs/build-[0-9a-f]+/lib/python3\.\d+/site-packages/numpy/_core/include"
        assert re.search(rf"^{GCC} .*-I\S*{numpy_include}.* -c \S*kdtree\.c ", log, re.M), log
        python = installed(app, store, tmp_path / "env")
        code = (
            "import numpy as np; from pykdtree.kdtree import KDTree\n"
            "tree = KDTree(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))\n"
            "distance, index = tree.query(np.array([[0.9, 0.8]]), k=1)\n"
            "print(int(index[0]), round(float(distance[0]), 4))"
        )
        assert run(python, code) == "1 0.2236"


class TestMesonPython:
    def test_pywavelets_finds_meson_cython_and_numpy_in_its_build_environment(
        self, tmp_path, store
    ):
        """PyWavelets 1.8.0: meson finds cython, numpy-config on PATH; ninja compiles; dwt runs."""
        app = make_unpinned_app(tmp_path / "app", "pywavelets==1.8.0\n")
        log = built_from_source(app, store, "pywavelets")
        assert re.search(rf"Program cython found: YES \(\S*{BUILD_ENV_BIN}cython\)", log)
        assert re.search(rf"numpy-config found: YES \(\S*{BUILD_ENV_BIN}numpy-config\)", log)
        assert "Run-time dependency numpy found: YES 2." in log
        compiled = re.findall(r"^\[\d+/\d+\] Compiling C object .*_dwt\.c\.o$", log, re.M)
        assert compiled, log[-3000:]
        python = installed(app, store, tmp_path / "env")
        code = "import pywt; a, d = pywt.dwt([1.0, 2.0, 3.0, 4.0], 'haar'); print(a.round(4))"
        assert run(python, code) == "[2.1213 4.9497]"

    def test_a_subproject_meson_must_fetch_is_a_clear_error(self, tmp_path, store, monkeypatch):
        """siphash24 1.9 ships only a .wrap for its C library: the error says so and what to do."""
        # git clones nothing over the network, here or on a machine that could reach the host.
        monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
        app = make_unpinned_app(tmp_path / "app", "siphash24==1.9\n")
        result = build(app, store, "--no-binary", "siphash24")
        assert result.code == 1
        error = json.loads(result.out)
        assert (
            "siphash24 1.9: its meson subproject libcsiphash-1 is not in its source (only "
            "subprojects/libcsiphash-1.wrap is), and meson could not fetch it"
        ) in error["message"]
        assert (
            "siphash24 1.9: install the library that libcsiphash-1 stands in for" in (error["hint"])
        )
        assert "meson subprojects download" in error["hint"]


class TestScikitBuildCore:
    def test_mapbox_earcut_with_cmake_and_ninja_as_wheels(self, tmp_path, store):
        """mapbox-earcut 2.1.0: the backend asks for cmake and ninja, which come as wheels."""
        app = make_unpinned_app(tmp_path / "app", "mapbox-earcut==2.1.0\n")
        # Newer than Debian 12's cmake 3.25 and ninja 1.11, so that on any machine the
        # backend asks for them at build time, as it does where none is installed.
        (app / "wheelbarrow.toml").write_text(
            "[packages.mapbox-earcut]\n"
            'config-settings = { "cmake.version" = ">=3.26", "ninja.version" = ">=1.12" }\n',
            encoding="utf-8",
        )
        log = built_from_source(app, store, "mapbox-earcut")
        assert "# the backend also needs: cmake>=3.26, ninja>=1.12\n" in log
        [added] = [line for line in log.splitlines() if line.startswith("# added to the build")]
        cmake = re.search(r"\bcmake-(\d+\.\d+\.\d+)-", added)
        assert cmake is not None and "ninja-1." in added, added
        assert f"using CMake {cmake.group(1)}" in log
        assert re.search(r"^\[\d+/\d+\] Building CXX object .*main\.cpp\.o$", log, re.M), log
        python = installed(app, store, tmp_path / "env")
        code = (
            "import numpy as np, mapbox_earcut as earcut\n"
            "square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)\n"
            "print(earcut.triangulate_float32(square, np.array([4], dtype=np.uint32)).tolist())"
        )
        assert run(python, code) == "[2, 3, 0, 2, 0, 1]"


@pytest.fixture
def no_crate_cache(tmp_path, monkeypatch):
    """An empty CARGO_HOME: no crate a developer's cargo once fetched can stand in for vendoring."""
    home = tmp_path / "cargo-home"
    home.mkdir()
    monkeypatch.setenv("CARGO_HOME", str(home))


class TestMaturin:
    def test_cffi_crate_builds_offline_and_is_called(self, tmp_path, store):
        """A crate with no dependencies builds through maturin from the index; Python calls it."""
        app = make_unpinned_app(tmp_path / "app", "./wbrust\n")
        make_rust_cffi_crate(app / "wbrust")
        log = built_from_source(app, store, "wbrust")
        assert "# the backend also needs: cffi" in log  # maturin asks for it for cffi bindings
        assert re.search(r"^\s+Compiling wbrust v0\.1\.0 \(", log, re.M), log
        python = installed(app, store, tmp_path / "env")
        code = f"from wbrust import lib; print(lib.{RUST_FUNCTION}(40, 2))"
        assert run(python, code) == "42"

    def test_vendored_crates_build_offline(self, tmp_path, store, no_crate_cache):
        """A crate whose registry dependency is vendored (.cargo/config.toml) builds offline."""
        app = make_unpinned_app(tmp_path / "app", "./wbvendored\n")
        make_rust_cffi_crate(
            app / "wbvendored", "wbvendored", dependency="wbtinydep", vendored=True
        )
        log = built_from_source(app, store, "wbvendored")
        assert re.search(r"^\s+Compiling wbtinydep v1\.0\.0$", log, re.M), log
        python = installed(app, store, tmp_path / "env")
        code = f"from wbvendored import lib; print(lib.{RUST_FUNCTION}(40, 2))"
        assert run(python, code) == "1042"

    def test_crates_not_vendored_are_a_clear_error(self, tmp_path, store, no_crate_cache):
        """A crate needing its registry without vendoring fails at once, naming it and the crate."""
        app = make_unpinned_app(tmp_path / "app", "./wbunvendored\n")
        make_rust_cffi_crate(app / "wbunvendored", "wbunvendored", dependency="wbtinydep")
        result = build(app, store)
        assert result.code == 1
        error = json.loads(result.out)
        assert (
            "wbunvendored 0.1.0: its crates are not vendored and cargo is offline "
            "(cargo has no copy of the crate wbtinydep)"
        ) in error["message"]
        assert "cargo vendor" in error["hint"] and "provide a wheel" in error["hint"]
        assert "spurious network error" not in result.err  # cargo did not try the network

    def test_pyo3_sdist_from_the_index_needs_its_crates_vendored(
        self, tmp_path, store, no_crate_cache
    ):
        """rpds-py (PyO3) from its sdist: the error names it, says why, and what to do."""
        app = make_unpinned_app(tmp_path / "app", "rpds-py==2026.9.1\n")
        result = build(app, store, "--no-binary", "rpds-py")
        assert result.code == 1
        error = json.loads(result.out)
        assert (
            "rpds-py 2026.9.1: its crates are not vendored and cargo is offline" in error["message"]
        )
        assert "rpds-py 2026.9.1: vendor its crates" in error["hint"], error["hint"]
        assert "cargo vendor" in error["hint"] and "provide a wheel" in error["hint"]
