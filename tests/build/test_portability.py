"""Portability: code beyond the target's CPU baseline is found, run-time dispatch is not flagged."""

from __future__ import annotations

import json
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import PLATFORM, build_cli, build_ok, cli, make_app
from support.sdists import SIMD_C, SimdVariant, make_simd_sdist, simd_define

from wheelbarrow.app.config import BASELINES
from wheelbarrow.build.elfcode import inspect_elf
from wheelbarrow.build.hostcpu import (
    asks_for_native,
    cpu_digest,
    cpu_key_part,
    cpu_problem,
    parse_cpu_flags,
)
from wheelbarrow.build.portability import (
    NotPortableError,
    PortabilityFinding,
    check_finding,
    inspect_wheel,
)
from wheelbarrow.build.x86features import beyond, level_needed, shown

WHEEL_TAG = "cp311-cp311-manylinux_2_28_x86_64"


def compile_so(
    directory: Path, source: str, *flags: str, name: str = "ext", python: bool = False
) -> Path:
    """Compile C ``source`` into ``directory/NAME.so`` with gcc and ``flags``."""
    directory.mkdir(parents=True, exist_ok=True)
    c_file = directory / f"{name}.c"
    c_file.write_text(source)
    out = directory / f"{name}.so"
    include = ["-I", sysconfig.get_paths()["include"]] if python else []
    done = subprocess.run(
        ["gcc", "-shared", "-fPIC", *include, str(c_file), *flags, "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=directory,
    )
    assert done.returncode == 0, done.stderr
    return out


def simd_module(directory: Path, variant: SimdVariant, *flags: str) -> bytes:
    """The fixture sdists' AVX2 extension, compiled as ``variant`` with ``flags``."""
    path = compile_so(
        directory, SIMD_C, f"-D{simd_define(variant)}=1", *flags, name=variant, python=True
    )
    return path.read_bytes()


def finding(data: bytes):
    found = inspect_elf(data)
    assert found is not None
    return found


# An AVX2 function and a plain one, for the dispatch patterns below.
VARIANTS = r"""
#include <immintrin.h>
__attribute__((target("avx2"))) long sum_avx2(const int *v, long n) {
    __m256i acc = _mm256_setzero_si256();
    for (long i = 0; i + 8 <= n; i += 8)
        acc = _mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i *)(v + i)));
    int lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, acc);
    return lanes[0] + lanes[7];
}
long sum_plain(const int *v, long n) {
    long t = 0;
    for (long i = 0; i < n; i++) t += v[i];
    return t;
}
static int data[64];
"""


class TestLevels:
    def test_features_are_named_as_people_write_them(self):
        """iced-x86's CPUID names read as AVX-512F, SSE4.1, SHA-NI and AVX-512 VBMI2."""
        assert [shown(f) for f in ("AVX512F", "SSE4_1", "SHA", "AVX512_VBMI2", "AVX2")] == [
            "AVX-512F",
            "SSE4.1",
            "SHA-NI",
            "AVX-512 VBMI2",
            "AVX2",
        ]

    def test_the_level_needed_is_the_highest_feature_s(self):
        """SSE4.2 needs x86-64-v2, AVX2 v3, AVX-512F v4, AES no level at all."""
        assert level_needed(["SSE4_2"]) == "x86-64-v2"
        assert level_needed(["SSE4_2", "AVX2"]) == "x86-64-v3"
        assert level_needed(["AVX512F", "BMI2"]) == "x86-64-v4"
        assert level_needed(["AES"]) == "more than x86-64-v4"
        assert level_needed([]) == "x86-64"

    def test_beyond_keeps_what_the_baseline_lacks(self):
        """Against x86-64-v2, SSE4.1 is in and AVX2 is out; against v3 only AVX-512F is out."""
        used = ["SSE4_1", "AVX2", "AVX512F"]
        assert beyond(used, "x86-64-v2") == ["AVX2", "AVX512F"]
        assert beyond(used, "x86-64-v3") == ["AVX512F"]
        assert beyond(used, "x86-64") == used
        assert BASELINES[0] == "x86-64"


class TestInspectElf:
    """The fixture sdists' extension, compiled the four ways, and other dispatch patterns."""

    def test_avx2_everywhere_from_the_package_s_own_flags_is_flagged(self, tmp_path):
        """`#pragma GCC target("avx2")` (what -mavx2 does to a file) is found, naming sum_avx2."""
        found = finding(simd_module(tmp_path, "pragma"))
        assert found.unguarded == ("AVX", "AVX2")
        assert found.functions == ("sum_avx2",)

    @pytest.mark.parametrize("flags", [("-mavx2",), ("-O2", "-mavx2"), ("-O2", "-march=haswell")])
    def test_plain_c_compiled_for_avx2_is_flagged(self, tmp_path, flags):
        """Plain C compiled with -mavx2 or -march=haswell (what -march=native gives on such a
        CPU) uses VEX-encoded instructions where nothing checks the CPU."""
        assert "AVX" in finding(simd_module(tmp_path, "plain", *flags)).unguarded

    def test_march_native_on_this_machine_is_flagged_when_it_has_avx(self, tmp_path):
        """-march=native on this build machine gives code beyond x86-64-v2 when its CPU has AVX."""
        flags = parse_cpu_flags(Path("/proc/cpuinfo").read_text())
        if "avx" not in flags:
            pytest.skip("this CPU has no AVX: -march=native adds nothing to flag")
        found = finding(simd_module(tmp_path, "plain", "-O2", "-march=native"))
        assert beyond(found.unguarded, "x86-64-v2")

    def test_the_same_c_for_the_baseline_is_clean(self, tmp_path):
        """Without target flags the extension uses no extension at all."""
        found = finding(simd_module(tmp_path, "plain", "-O2"))
        assert (found.unguarded, found.guarded) == ((), ())

    @pytest.mark.parametrize("flags", [(), ("-O2",), ("-O2", "-s")])
    def test_a_target_function_chosen_by_builtin_cpu_supports_is_not_flagged(self, tmp_path, flags):
        """__attribute__((target("avx2"))) picked by __builtin_cpu_supports: AVX2 is guarded
        (stripped of symbols too)."""
        found = finding(simd_module(tmp_path, "target", *flags))
        assert found.unguarded == ()
        assert "AVX2" in found.guarded

    @pytest.mark.parametrize("flags", [(), ("-O2",), ("-O2", "-s")])
    def test_target_clones_are_not_flagged(self, tmp_path, flags):
        """GCC's target_clones("avx2", "default"): the AVX2 clone is reached only by its ifunc."""
        found = finding(simd_module(tmp_path, "clones", *flags))
        assert found.unguarded == ()
        assert "AVX" in found.guarded

    def test_a_target_function_called_without_a_check_is_flagged(self, tmp_path):
        """The target attribute alone guards nothing: called unconditionally, it is found."""
        source = VARIANTS + "long PyInit_direct(void) { return sum_avx2(data, 64); }\n"
        found = finding(compile_so(tmp_path, source, "-O2").read_bytes())
        assert "AVX2" in found.unguarded and found.functions == ("sum_avx2",)

    def test_a_table_of_variants_indexed_by_a_cpu_check_is_not_flagged(self, tmp_path):
        """A const table of function pointers, indexed by __builtin_cpu_supports, is guarded."""
        source = VARIANTS + (
            "static long (*const impls[2])(const int *, long) = {sum_plain, sum_avx2};\n"
            "long PyInit_table(void) {\n"
            '    return impls[__builtin_cpu_supports("avx2") ? 1 : 0](data, 64);\n'
            "}\n"
        )
        found = finding(compile_so(tmp_path, source, "-O2").read_bytes())
        assert found.unguarded == () and "AVX2" in found.guarded

    def test_an_ifunc_resolver_s_choice_is_not_flagged(self, tmp_path):
        """An ifunc whose resolver returns the AVX2 variant when the CPU has it is guarded."""
        source = VARIANTS + (
            "static void *resolve(void) {\n"
            "    __builtin_cpu_init();\n"
            '    return __builtin_cpu_supports("avx2") ? (void *)sum_avx2 : (void *)sum_plain;\n'
            "}\n"
            'long sum(const int *v, long n) __attribute__((ifunc("resolve")));\n'
            "long PyInit_ifunc(void) { return sum(data, 64); }\n"
        )
        found = finding(compile_so(tmp_path, source, "-O2").read_bytes())
        assert found.unguarded == () and "AVX2" in found.guarded

    def test_a_hand_written_cpuid_check_is_not_flagged(self, tmp_path):
        """A function that runs cpuid itself and then calls the AVX2 variant is a dispatcher."""
        source = (
            "#include <cpuid.h>\n"
            + VARIANTS
            + (
                "long PyInit_cpuid(void) {\n"
                "    unsigned a, b, c, d;\n"
                "    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX2))\n"
                "        return sum_avx2(data, 64);\n"
                "    return sum_plain(data, 64);\n"
                "}\n"
            )
        )
        found = finding(compile_so(tmp_path, source, "-O2").read_bytes())
        assert found.unguarded == () and "AVX2" in found.guarded

    def test_tzcnt_is_not_bmi1(self, tmp_path):
        """`rep bsf`, which GCC emits for __builtin_ctz on any CPU, decodes as tzcnt: not BMI1."""
        source = "int PyInit_ctz(unsigned x) { return __builtin_ctz(x | 1); }\n"
        path = compile_so(tmp_path, source, "-O2")
        disassembly = subprocess.run(
            ["objdump", "-d", str(path)], capture_output=True, text=True, check=True
        ).stdout
        assert "tzcnt" in disassembly or "rep bsf" in disassembly
        assert finding(path.read_bytes()).unguarded == ()

    def test_other_machines_and_other_files_are_not_inspected(self, tmp_path):
        """An AArch64 ELF header, a text file and a truncated ELF give no finding (None)."""
        data = bytearray(simd_module(tmp_path, "pragma"))
        data[18:20] = (183).to_bytes(2, "little")  # e_machine: EM_AARCH64
        assert inspect_elf(bytes(data)) is None
        assert inspect_elf(b"print('hello')\n") is None
        assert inspect_elf(b"\x7fELF\x02\x01\x01") is None


class TestInspectWheel:
    def _library_wheel(self, tmp_path: Path, calls: str) -> Path:
        """A wheel with an extension module calling ``calls`` in its vendored library, which
        exports an AVX2 and a plain sum."""
        libs = tmp_path / "build"
        compile_so(libs, VARIANTS, "-O2", "-Wl,-soname,libfast-1a2b3c.so", name="libfast-1a2b3c")
        module = compile_so(
            libs,
            f"long {calls}(const int *, long);\nstatic int v[8];\n"
            f"long PyInit__mod(void) {{ return {calls}(v, 8); }}\n",
            f"-L{libs}",
            "-l:libfast-1a2b3c.so",
            name="mod",
        )
        return make_wheel(
            tmp_path / "dist",
            "fastpkg",
            "1.0",
            tag=WHEEL_TAG,
            files={
                "fastpkg/__init__.py": "",
                "fastpkg/_mod.cpython-311-x86_64-linux-gnu.so": module.read_bytes(),
                "fastpkg.libs/libfast-1a2b3c.so": (libs / "libfast-1a2b3c.so").read_bytes(),
                "fastpkg/README.txt": "not code\n",
            },
        )

    def test_a_library_is_entered_by_what_the_wheel_calls(self, tmp_path):
        """The vendored library's exported AVX2 sum is not flagged while the module calls the
        plain one."""
        found = inspect_wheel(self._library_wheel(tmp_path, "sum_plain"))
        assert found.portable and found.inspected == 2
        assert "AVX2" in found.guarded

    def test_a_library_function_the_wheel_calls_is_flagged_in_the_library(self, tmp_path):
        """When the module calls the AVX2 export unconditionally, the library file is named."""
        found = inspect_wheel(self._library_wheel(tmp_path, "sum_avx2"))
        [file] = found.files
        assert file.file == "fastpkg.libs/libfast-1a2b3c.so"
        assert "AVX2" in file.extensions and file.functions == ("sum_avx2",)
        assert found.needs_cpuinfo() == ("avx", "avx2")

    def test_an_extension_module_linked_by_another_is_entered_by_its_calls_too(self, tmp_path):
        """A module exporting an AVX2 function is clean alone, and flagged when another module
        of the wheel links it and calls that function unconditionally."""
        build = tmp_path / "build"
        first = compile_so(
            build,
            VARIANTS + "long PyInit__first(void) { return sum_plain(data, 64); }\n",
            "-O2",
            "-Wl,-soname,_first.so",
            name="_first",
        )
        second = compile_so(
            build,
            "long sum_avx2(const int *, long);\nstatic int v[8];\n"
            "long PyInit__second(void) { return sum_avx2(v, 8); }\n",
            f"-L{build}",
            "-l:_first.so",
            name="_second",
        )
        alone = {"pkg/_first.so": first.read_bytes()}
        assert inspect_wheel(make_wheel(tmp_path / "a", "pkg", "1.0", files=alone)).portable
        both = {**alone, "pkg/_second.so": second.read_bytes()}
        [file] = inspect_wheel(make_wheel(tmp_path / "b", "pkg", "1.0", files=both)).files
        assert file.file == "pkg/_first.so" and file.functions == ("sum_avx2",)

    def test_a_wheel_without_x86_64_code_says_so(self, tmp_path):
        """A pure wheel (or one for another machine) has nothing to inspect, and says that."""
        found = inspect_wheel(make_wheel(tmp_path, "purepkg", "1.0"))
        assert found.portable and found.inspected == 0
        assert found.describe() == "CPU: no x86-64 code to inspect"

    def test_the_finding_survives_the_build_cache(self, tmp_path):
        """as_json and from_json give the same finding back (it is recorded with the wheel)."""
        found = inspect_wheel(self._library_wheel(tmp_path, "sum_avx2"))
        again = PortabilityFinding.from_json(json.loads(json.dumps(found.as_json())))
        assert again == found
        assert PortabilityFinding.from_json({"wheel": "x"}) is None


class TestCheckFinding:
    def _finding(self, tmp_path: Path) -> PortabilityFinding:
        data = simd_module(tmp_path, "pragma")
        wheel = make_wheel(
            tmp_path / "dist",
            "simdext",
            "1.0",
            tag=WHEEL_TAG,
            files={"simdext/_simd.cpython-311-x86_64-linux-gnu.so": data},
        )
        return inspect_wheel(wheel)

    def test_the_warning_names_package_file_extensions_and_the_fix(self, tmp_path):
        """The warning says which file needs AVX and AVX2, and how to build for the baseline."""
        warning = check_finding(
            self._finding(tmp_path), label="simdext 1.0", mode="warn", package="simdext"
        )
        assert warning is not None
        lines = warning.splitlines()
        assert lines[0] == (
            "simdext 1.0: its code uses AVX, AVX2 without checking the CPU first, beyond the "
            "target's baseline (x86-64-v2): on CPUs without them it stops with 'Illegal "
            "instruction'"
        )
        assert lines[1] == (
            "  - simdext/_simd.cpython-311-x86_64-linux-gnu.so: AVX, AVX2 (x86-64-v3) in 1 "
            "function, e.g. sum_avx2"
        )
        assert "remove -march=native" in lines[2]
        assert '"-O2 -march=x86-64-v2" in [tool.wheelbarrow.packages.simdext.env]' in lines[2]
        assert 'cpu-baseline = "x86-64-v3"' in lines[2]
        assert 'portable = "error" makes this an error' in lines[2]

    def test_error_mode_raises_with_the_fix_as_hint(self, tmp_path):
        """portable = "error": NotPortableError naming the package, the fix in its hint."""
        with pytest.raises(NotPortableError) as caught:
            check_finding(self._finding(tmp_path), label="simdext 1.0", mode="error", package="x")
        assert caught.value.message.startswith("simdext 1.0: its code uses AVX, AVX2")
        assert caught.value.hint is not None and "remove -march=native" in caught.value.hint

    def test_off_and_a_portable_wheel_say_nothing(self, tmp_path):
        """Mode "off" and a wheel within the baseline give no warning."""
        found = self._finding(tmp_path)
        assert check_finding(found, label="x", mode="off", package="x") is None
        clean = PortabilityFinding(wheel="x.whl", baseline="x86-64-v2", inspected=1)
        assert check_finding(clean, label="x", mode="error", package="x") is None


class TestCpuFeatures:
    CPUINFO = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
        "flags\t\t: fpu sse sse2 pni ssse3 sse4_1 sse4_2 popcnt avx avx2 bmi1 hypervisor "
        "constant_tsc avx512f avx512_vnni\nbugs\t\t: sysret_ss_attrs\n\n"
        "processor\t: 1\nflags\t\t: fpu sse\n"
    )

    def test_cpuinfo_gives_the_instruction_set_flags_of_the_first_cpu(self):
        """Only instruction set flags count (not hypervisor, constant_tsc or bugs)."""
        flags = parse_cpu_flags(self.CPUINFO)
        assert flags == {
            "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "avx2", "bmi1",
            "avx512f", "avx512_vnni",
        }  # fmt: skip
        assert parse_cpu_flags("Features\t: fp asimd sve\n") == {"fp", "asimd", "sve"}
        assert parse_cpu_flags("") == frozenset()

    def test_native_flags_are_recognised_wherever_they_are(self):
        """-march=native, -mcpu=native, -mtune=native and target-cpu=native target this machine."""
        assert asks_for_native(["-O2 -march=native"])
        assert asks_for_native(["-C target-cpu=native"])
        assert asks_for_native(["-Dcpu-baseline=native"])  # numpy's and scipy's meson option
        assert not asks_for_native(["-O2 -march=x86-64-v2", "-mnative-ish"])

    def test_a_different_feature_set_gives_a_different_key_part(self):
        """With -march=native in a build's env, two CPUs give two key parts; without, none."""
        native = {"CFLAGS": "-O2 -march=native"}
        one = cpu_key_part(native, {}, {}, {"sse2", "avx2"})
        other = cpu_key_part(native, {}, {}, {"sse2", "avx2", "avx512f"})
        assert one and other and one != other
        assert one == cpu_key_part(native, {}, {}, {"avx2", "sse2"})
        assert cpu_key_part({"CFLAGS": "-O2"}, {}, {}, {"avx2"}) is None
        # From config settings, or from the calling environment's flag variables:
        assert cpu_key_part({}, {"setup-args": ["-Dcpu=x", "-march=native"]}, {}, {"a"}) == (
            cpu_digest({"a"})
        )
        assert cpu_key_part({}, {}, {"CXXFLAGS": "-march=native"}, {"a"}) == cpu_digest({"a"})
        # A build's own env overrides the caller's variable of the same name.
        assert cpu_key_part({"CFLAGS": "-O2"}, {}, {"CFLAGS": "-march=native"}, {"a"}) is None

    def test_a_cached_wheel_needs_what_its_code_uses(self):
        """A CPU with every flag the wheel's code needs can reuse it; one lacking one cannot."""
        assert cpu_problem(["avx", "avx2"], {"avx", "avx2", "sse2"}) is None
        assert cpu_problem(["avx", "avx512f"], {"avx"}) == (
            "this machine's CPU lacks avx512f, which the cached wheel's code needs"
        )


@pytest.mark.network
class TestRealNumpy:
    def test_numpy_s_own_dispatch_is_not_flagged(self, tmp_path):
        """numpy 2.4.6's manylinux wheel: its AVX2 and AVX-512 kernels (and OpenBLAS's) are
        chosen at run time, so nothing is flagged against x86-64-v2, which numpy requires."""
        app = make_app(tmp_path / "app", "numpy==2.4.6\n")
        result = cli("build", app, "--store", tmp_path / "store", "--json")
        assert result.code == 0, result.err
        [wheel] = Path(json.loads(result.out)["wheelhouse"]).glob("numpy-*.whl")

        started = time.perf_counter()
        found = inspect_wheel(wheel)
        seconds = time.perf_counter() - started

        assert found.portable, [f.describe() for f in found.files]
        assert found.inspected >= 20
        assert {"AVX2", "AVX512F"} <= set(found.guarded)
        assert seconds < 60  # about 4 s here: the scan must not make a source build crawl
        # Against x86-64 (v1) numpy's own baseline shows: SSE4.1 and kin, not AVX.
        strict = inspect_wheel(wheel, baseline="x86-64")
        assert strict.needs and level_needed(strict.needs) == "x86-64-v2"


def host_has(*flags: str) -> bool:
    return set(flags) <= parse_cpu_flags(Path("/proc/cpuinfo").read_text())


def run_in(env: Path, code: str) -> str:
    done = subprocess.run([env / "bin" / "python", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


TOTAL = "import array, simdext; print(simdext.total(array.array('i', range(100)).tobytes()))"


class TestSourceBuilds:
    """`wheelbarrow build` of the AVX2 fixture from a local index: warned, refused or quiet."""

    def test_avx2_from_the_package_s_own_flags_is_warned_about(self, tmp_path, local_index):
        """The build report names the package, the file and AVX2, and says how to fix it."""
        index = local_index([make_simd_sdist(tmp_path / "d", variant="pragma")])
        app = make_app(tmp_path / "app", "simdext==1.0\n")
        result = build_cli(app, tmp_path / "store", index.url, "--json")
        assert result.code == 0, result.err
        [built] = result.json()["built"]
        found = built["portability"]
        assert found["portable"] is False and found["needs"] == ["AVX", "AVX2"]
        [file] = found["files"]
        assert file["file"].startswith("simdext/_simd.cpython-")
        assert file["functions"] == ["sum_avx2"] and file["level"] == "x86-64-v3"
        assert (
            "warning: simdext 1.0: its code uses AVX, AVX2 without checking the CPU first, "
            "beyond the target's baseline (x86-64-v2)"
        ) in result.err
        assert "remove -march=native" in result.err
        assert (
            "CPU: needs AVX, AVX2 (x86-64-v3), beyond x86-64-v2" in Path(built["log"]).read_text()
        )

    def test_portable_error_refuses_the_wheel_and_stores_nothing(self, tmp_path, local_index):
        """portable = "error" in pyproject.toml: the build fails naming the package and the fix."""
        index = local_index([make_simd_sdist(tmp_path / "d", variant="pragma")])
        app = tmp_path / "app"
        app.mkdir()
        (app / "pyproject.toml").write_text(
            '[project]\nname = "app"\nversion = "0"\ndependencies = ["simdext==1.0"]\n\n'
            '[tool.wheelbarrow]\nportable = "error"\n'
        )
        store = tmp_path / "store"
        result = build_cli(app, store, index.url)
        assert result.code == 1
        assert "simdext 1.0: its code uses AVX, AVX2 without checking the CPU first" in result.err
        assert '(portable = "error" is set)' in result.err
        assert "remove -march=native" in result.err and "nothing was stored" in result.err
        assert not list((store / "built").glob("*/result.json"))

    @pytest.mark.parametrize("variant", ["target", "clones"])
    def test_run_time_dispatch_builds_quietly_and_runs(self, tmp_path, local_index, variant):
        """A target("avx2") function chosen by __builtin_cpu_supports, or target_clones: no
        warning, the AVX2 code reported as guarded, and the installed wheel sums right."""
        index = local_index([make_simd_sdist(tmp_path / "d", variant=variant)])
        app = make_app(tmp_path / "app", "simdext==1.0\n")
        store = tmp_path / "store"
        result = build_cli(app, store, index.url, "--json")
        assert result.code == 0, result.err
        [built] = result.json()["built"]
        assert built["portability"]["portable"] is True
        assert "AVX" in built["portability"]["guarded"]
        assert "warning" not in result.err
        assert cli("install", app, "--store", store, "--into", tmp_path / "env").code == 0
        assert run_in(tmp_path / "env", TOTAL) == "4950"

    def test_march_native_in_the_build_settings_is_flagged(self, tmp_path, local_index):
        """CFLAGS = "-O2 -march=native" in the package's env, on a CPU with AVX: flagged, and
        the build's key holds this CPU's part."""
        if not host_has("avx"):
            pytest.skip("this CPU has no AVX: -march=native adds nothing to flag")
        index = local_index([make_simd_sdist(tmp_path / "d", variant="plain")])
        app = make_app(tmp_path / "app", "simdext==1.0\n")
        (app / "wheelbarrow.toml").write_text(
            '[packages.simdext]\nenv = { CFLAGS = "-O2 -march=native" }\n'
        )
        store = tmp_path / "store"
        report = build_ok(app, store, index.url)
        [built] = report["built"]
        assert built["portability"]["portable"] is False
        assert "AVX" in built["portability"]["needs"]
        [result] = (store / "built").glob("*/result.json")
        inputs = json.loads(result.read_text())["inputs"]
        features = parse_cpu_flags(Path("/proc/cpuinfo").read_text())
        assert inputs["cpu"] == cpu_digest(features)

    def test_a_cached_wheel_is_warned_about_again_and_refused_under_error(
        self, tmp_path, local_index
    ):
        """Another app reusing the cached wheel is warned too; with portable = "error" for the
        package, its reuse is refused."""
        d = tmp_path / "d"
        make_simd_sdist(d, variant="pragma")
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        store = tmp_path / "store"
        build_ok(make_app(tmp_path / "app", "simdext==1.0\n"), store, index.url)
        other = make_app(tmp_path / "other", "simdext==1.0\nalpha\n")
        again = build_cli(other, store, index.url, "--json")
        assert again.code == 0, again.err
        [built] = again.json()["built"]
        assert built["reused"] is True and built["portability"]["portable"] is False
        assert "warning: simdext 1.0 (from the build cache): its code uses AVX, AVX2" in again.err
        (other / "wheelbarrow.toml").write_text('[packages.simdext]\nportable = "error"\n')
        refused = build_cli(other, store, index.url)
        assert refused.code == 1
        assert "simdext 1.0 (from the build cache): its code uses AVX, AVX2" in refused.err

    def test_portable_off_skips_the_inspection(self, tmp_path, local_index):
        """portable = "off" for the package: no inspection, no warning, nothing recorded."""
        index = local_index([make_simd_sdist(tmp_path / "d", variant="pragma")])
        app = make_app(tmp_path / "app", "simdext==1.0\n")
        (app / "wheelbarrow.toml").write_text('[packages.simdext]\nportable = "off"\n')
        result = build_cli(app, tmp_path / "store", index.url, "--json")
        assert result.code == 0, result.err
        assert result.json()["built"][0]["portability"] is None
        assert "warning" not in result.err

    def test_a_higher_cpu_baseline_accepts_avx2(self, tmp_path, local_index):
        """cpu-baseline = "x86-64-v3" (every server has AVX2): the AVX2 wheel is portable."""
        index = local_index([make_simd_sdist(tmp_path / "d", variant="pragma")])
        app = make_app(tmp_path / "app", "simdext==1.0\n")
        (app / "wheelbarrow.toml").write_text('cpu-baseline = "x86-64-v3"\n')
        report = build_ok(app, tmp_path / "store", index.url)
        found = report["built"][0]["portability"]
        assert found["portable"] is True and found["baseline"] == "x86-64-v3"


class TestBuildKey:
    """The CPU a build depended on is part of its cache key when it matters."""

    def _context(self, tmp_path: Path, features: frozenset[str], settings: str = ""):
        import os
        import shutil

        from wheelbarrow._core.report import RecordingReporter
        from wheelbarrow._core.runner import run_subprocess
        from wheelbarrow.app.config import read_build_config
        from wheelbarrow.app.requirements import IndexOptions
        from wheelbarrow.app.target import Target
        from wheelbarrow.build.context import SourceContext
        from wheelbarrow.cli.common import running_interpreter
        from wheelbarrow.store.store import Store

        app = tmp_path / "app"
        app.mkdir(exist_ok=True)
        (app / "wheelbarrow.toml").write_text('repair = "never"\n' + settings)
        interpreter = running_interpreter()
        return SourceContext(
            store=Store(tmp_path / "store"),
            target=Target.parse(python=interpreter.version, platform=PLATFORM),
            config=read_build_config(app),
            interpreter=interpreter,
            runner=run_subprocess,
            reporter=RecordingReporter(),
            environ={k: v for k, v in os.environ.items() if k not in ("CFLAGS", "CXXFLAGS")},
            uv="uv",
            index=IndexOptions(no_index=True),
            fetcher=_NoDownloads(),
            toolchain={"cc": "gcc 12"},
            which=shutil.which,
            cpu_features=features,
        )

    def _source(self, tmp_path: Path, store: Path, variant: SimdVariant):
        from packaging.utils import canonicalize_name

        from wheelbarrow.lock.lockfile import Artefact
        from wheelbarrow.store.store import Store

        sdist = make_simd_sdist(tmp_path / "d", variant=variant)
        return Artefact(
            name=canonicalize_name("simdext"),
            version="1.0",
            filename=sdist.name,
            url=None,
            path=None,
            sha256=Store(store).add_file(sdist),
            size=None,
            kind="sdist",
        )

    AVX2 = frozenset({"sse2", "avx", "avx2"})
    AVX512 = frozenset({"sse2", "avx", "avx2", "avx512f"})
    NATIVE = '[packages.simdext]\nenv = { CFLAGS = "-march=native" }\n'

    def test_a_different_cpu_gives_a_different_key_with_march_native(self, tmp_path):
        """-march=native in the settings: two CPUs, two keys, and the reason names the CPU."""
        from wheelbarrow.build.buildcache import build_key, build_key_inputs, why_rebuilt

        one = self._context(tmp_path, self.AVX2, self.NATIVE)
        other = self._context(tmp_path, self.AVX512, self.NATIVE)
        source = self._source(tmp_path, one.store.root, "plain")
        first, second = build_key_inputs(source, one), build_key_inputs(source, other)
        assert build_key(first) != build_key(second)
        assert why_rebuilt(first, second) == (
            "the CPU differs from the one it was built for (-march=native)"
        )

    def test_without_native_flags_the_cpu_is_not_in_the_key(self, tmp_path):
        """No -march=native: the key has no CPU part, so every CPU shares the cached wheel."""
        from wheelbarrow.build.buildcache import build_key, build_key_inputs

        one = self._context(tmp_path, self.AVX2)
        other = self._context(tmp_path, self.AVX512)
        source = self._source(tmp_path, one.store.root, "plain")
        assert "cpu" not in build_key_inputs(source, one)
        assert build_key(build_key_inputs(source, one)) == build_key(
            build_key_inputs(source, other)
        )

    def test_a_cached_wheel_needing_more_than_this_cpu_is_rebuilt(self, tmp_path):
        """The wheel's code needs AVX2 (its own flags): a CPU without AVX2 builds again, saying
        why; a CPU with it reuses the wheel."""
        from wheelbarrow.build.sources import build_sources

        full = self._context(tmp_path, self.AVX512)
        source = self._source(tmp_path, full.store.root, "pragma")
        [first] = build_sources([source], full)
        assert first.reused is False and first.portability is not None
        assert first.portability.needs_cpuinfo() == ("avx", "avx2")

        [reused] = build_sources([source], self._context(tmp_path, self.AVX2))
        assert reused.reused is True

        lacking = self._context(tmp_path, frozenset({"sse2", "avx"}))
        [rebuilt] = build_sources([source], lacking)
        assert rebuilt.reused is False
        assert rebuilt.why == "this machine's CPU lacks avx2, which the cached wheel's code needs"


class _NoDownloads:
    """A fetcher for stores that already hold every artefact."""

    def fetch(self, artefacts, store, reporter) -> None:
        assert not artefacts, f"unexpected downloads: {artefacts}"


class TestSettings:
    def test_bad_values_name_the_file_and_the_key(self, tmp_path):
        """portable and cpu-baseline take only their listed values; problems say which file."""
        from wheelbarrow._core.errors import InputError
        from wheelbarrow.app.config import read_build_config

        (tmp_path / "wheelbarrow.toml").write_text(
            'portable = "sometimes"\ncpu-baseline = "x86-64-v5"\n'
            "[packages.simdext]\nportable = true\n"
        )
        with pytest.raises(InputError) as caught:
            read_build_config(tmp_path)
        toml = tmp_path / "wheelbarrow.toml"
        assert caught.value.message.splitlines() == [
            f'{toml}: portable: must be one of "warn", "error", "off", not \'sometimes\'',
            f'{toml}: cpu-baseline: must be one of "x86-64", "x86-64-v2", "x86-64-v3", '
            "\"x86-64-v4\", not 'x86-64-v5'",
            f'{toml}: packages.simdext.portable: must be one of "warn", "error", "off", not True',
        ]

    def test_a_package_s_own_setting_wins_and_defaults_keep_the_wheelhouse_key(self, tmp_path):
        """portable = "error" with one package "warn": that one warns; the default settings
        add nothing to the wheelhouse key."""
        from wheelbarrow.app.config import BuildConfig, read_build_config

        (tmp_path / "wheelbarrow.toml").write_text(
            'portable = "error"\n[packages.simdext]\nportable = "warn"\n'
        )
        config = read_build_config(tmp_path)
        assert config.portable_mode("simdext") == "warn"
        assert config.portable_mode("other") == "error"
        assert "portable" in config.key_data()
        assert "portable" not in BuildConfig().key_data()
