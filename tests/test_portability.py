"""Portability: code beyond the target's CPU baseline is found, run-time dispatch is not flagged."""

from __future__ import annotations

import json
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest
from support import make_wheel
from support.sdists import SIMD_C, SimdVariant, simd_define

from wheelbarrow.portability import (
    BASELINES,
    NotPortableError,
    PortabilityFinding,
    asks_for_native,
    beyond,
    check_finding,
    cpu_digest,
    cpu_key_part,
    cpu_problem,
    inspect_elf,
    inspect_wheel,
    level_needed,
    parse_cpu_flags,
    shown,
)

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
        from support.apps import cli, make_app

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
