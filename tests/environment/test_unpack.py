"""Unpacking wheels and compiling their bytecode in worker processes of the target's Python."""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.util
import marshal
import os
import py_compile
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from support import make_wheel

from wheelbarrow._core.errors import InstallError, MalformedWheelError, StoreError
from wheelbarrow._core.report import RecordingReporter
from wheelbarrow.environment import unpack_worker
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.environment.seal import make_seal
from wheelbarrow.environment.site import Wheel, install_wheels, site_packages

PYTHON = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
INTERPRETER = Interpreter(executable=PYTHON, version=".".join(map(str, sys.version_info[:3])))
BIG = 3 << 20  # past the worker's 1 MiB chunk: streamed, not read whole
TEST_DIRS = (Path(__file__).parent, Path(__file__).parents[1])  # this module's, and support's


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def rich_wheel(directory: Path) -> Path:
    """A wheel using every scheme: package files (one executable, one big, one big source),
    scripts with a #!python shebang, headers, data, and an entry point."""
    dist = "rich-1.0.dist-info"
    data = "rich-1.0.data"
    members: dict[str, tuple[bytes, int]] = {
        "rich/__init__.py": (b"VALUE = 42\n", 0o644),
        "rich/tool.sh": (b"#!/bin/sh\necho hi\n", 0o755),
        "rich/blob.bin": (os.urandom(BIG), 0o644),
        "rich/table.py": (b"# " + b"x" * BIG + b"\nTABLE = [1, 2]\n", 0o644),
        "rich/sub/deep.py": ("NAME = 'é'\n".encode(), 0o644),
        f"{data}/scripts/rich-run": (b"#!python\nimport rich\nprint(rich.VALUE)\n", 0o755),
        f"{data}/headers/rich.h": (b"#define RICH 1\n", 0o644),
        f"{data}/data/share/rich/notes.txt": (b"notes\n", 0o644),
        f"{dist}/METADATA": (b"Metadata-Version: 2.1\nName: rich\nVersion: 1.0\n\n", 0o644),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            0o644,
        ),
        f"{dist}/entry_points.txt": (b"[console_scripts]\nrich-ep = rich:main\n", 0o644),
    }
    record = "".join(f"{p},{record_hash(b)},{len(b)}\n" for p, (b, _) in members.items())
    members[f"{dist}/RECORD"] = ((record + f"{dist}/RECORD,,\n").encode(), 0o644)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rich-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, (content, mode) in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(info, content)
    return path


def unpack(
    wheels: list[Path], root: Path, *, final: Path | None = None, compile_bytecode: bool = True
) -> tuple[dict[str, object], RecordingReporter]:
    reporter = RecordingReporter()
    files = install_wheels(
        [Wheel.of(w) for w in wheels],
        root,
        site_packages(root, INTERPRETER),
        final_root=final or root,
        interpreter=INTERPRETER,
        compile_bytecode=compile_bytecode,
        reporter=reporter,
    )
    return dict(files), reporter


def installer_tree(wheel: Path, root: Path, final: Path) -> None:
    """What pypa/installer itself makes of ``wheel`` at ``root`` for ``final`` (no bytecode)."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    site = site_packages(root, INTERPRETER)
    scheme = {
        "purelib": str(site),
        "platlib": str(site),
        "headers": str(root / "include" / "site" / f"python{INTERPRETER.short}"),
        "scripts": str(root / "bin"),
        "data": str(root),
    }
    destination = SchemeDictionaryDestination(
        scheme, interpreter=str(final / "bin" / "python"), script_kind="posix"
    )
    with WheelFile.open(wheel) as source:
        install(source, destination, {"INSTALLER": b"wheelbarrow\n"})


def tree(root: Path, *, bytecode: bool = False) -> dict[str, tuple[bytes, int]]:
    """Each file under ``root`` with its bytes and permission bits."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in root.rglob("*")
        if p.is_file() and (bytecode or "__pycache__" not in p.parts)
    }


class TestUnpack:
    def test_the_files_are_what_installer_writes(self, tmp_path):
        """Every scheme, shebang, entry-point script, mode bit and the RECORD are byte for byte
        what pypa/installer makes of the same wheel."""
        wheel = rich_wheel(tmp_path / "dists")
        final = tmp_path / "final"
        installer_tree(wheel, tmp_path / "reference", final)
        unpack([wheel], tmp_path / "ours", final=final)
        ours = tree(tmp_path / "ours")
        assert ours == tree(tmp_path / "reference")
        script = f"#!{final}/bin/python\nimport rich\nprint(rich.VALUE)\n"
        assert ours["bin/rich-run"] == (script.encode(), 0o755)
        assert ours[f"lib/python{INTERPRETER.short}/site-packages/rich/tool.sh"][1] == 0o755

    def test_each_file_comes_back_with_its_stat_and_sha256(self, tmp_path):
        """The files returned are those on disk, as a seal made now records them."""
        wheel = rich_wheel(tmp_path / "dists")
        root = tmp_path / "env"
        files, _ = unpack([wheel], root)
        sealed = make_seal(root).files
        assert files
        for rel, entry in files.items():
            assert sealed[rel] == entry, rel
        written_here = set(sealed) - set(files)  # RECORD, INSTALLER and the scripts
        assert all(
            r.endswith(("RECORD", "INSTALLER")) or r.startswith("bin/") for r in written_here
        )


class TestBytecode:
    def test_every_source_gets_the_pyc_py_compile_makes_for_the_final_home(self, tmp_path):
        """Each .pyc is py_compile's unchecked-hash bytecode naming the source where the
        environment will be, byte for byte."""
        wheel = rich_wheel(tmp_path / "dists")
        root, final = tmp_path / "scratch", tmp_path / "final"
        unpack([wheel], root, final=final)
        site = site_packages(root, INTERPRETER)
        sources = sorted(site.rglob("*.py"))
        assert len(sources) == 3
        for source in sources:
            pyc = Path(importlib.util.cache_from_source(str(source)))
            expected = tmp_path / "expected.pyc"
            dfile = str(final / source.relative_to(root))
            py_compile.compile(
                str(source),
                str(expected),
                dfile,
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
            assert pyc.read_bytes() == expected.read_bytes(), source
            assert marshal.loads(pyc.read_bytes()[16:]).co_filename == dfile  # noqa: S302 - ours

    def test_the_same_wheels_give_the_same_bytes_in_any_scratch_directory(self, tmp_path):
        """Two unpacks under different scratch names for one final home are identical."""
        wheel = rich_wheel(tmp_path / "dists")
        final = tmp_path / "final"
        unpack([wheel], tmp_path / "a", final=final)
        unpack([wheel], tmp_path / "b", final=final)
        assert tree(tmp_path / "a", bytecode=True) == tree(tmp_path / "b", bytecode=True)

    def test_a_source_that_does_not_compile_is_reported_and_the_rest_compiled(self, tmp_path):
        """Python 2 syntax gets no .pyc and one warning naming it; its neighbours compile."""
        wheel = make_wheel(
            tmp_path / "dists",
            "legacy",
            "1.0",
            files={"legacy/__init__.py": "X = 1\n", "legacy/py2.py": "print 'old'\n"},
        )
        root = tmp_path / "env"
        _, reporter = unpack([wheel], root)
        site = site_packages(root, INTERPRETER)
        assert list((site / "legacy" / "__pycache__").glob("__init__.*.pyc"))
        assert not list((site / "legacy" / "__pycache__").glob("py2.*.pyc"))
        assert reporter.messages == [
            (
                "warning",
                "1 file has no bytecode as it does not compile for this Python: legacy/py2.py",
            )
        ]

    def test_no_bytecode_when_not_asked(self, tmp_path):
        """A build environment gets the files and no __pycache__."""
        root = tmp_path / "env"
        unpack([rich_wheel(tmp_path / "dists")], root, compile_bytecode=False)
        assert (site_packages(root, INTERPRETER) / "rich" / "table.py").is_file()
        assert not list(root.rglob("__pycache__"))


class TestWorkers:
    def test_many_wheels_over_any_number_of_workers_give_one_tree(self, tmp_path):
        """One, two or five workers unpack a big wheel and ten small ones into the same files."""
        from installer.destinations import SchemeDictionaryDestination

        from wheelbarrow.environment.unpack import unpack_wheels

        source = "X = 1  # padding\n" * 120
        wheels = [
            make_wheel(
                tmp_path / "dists",
                "big",
                "1.0",
                files={f"big/m{j}.py": source for j in range(300)},
            )
        ]
        wheels += [
            make_wheel(
                tmp_path / "dists",
                f"pkg{i}",
                "1.0",
                files={f"pkg{i}/m{j}.py": f"X = {j}\n" for j in range(5)},
            )
            for i in range(10)
        ]
        trees = []
        for count in (1, 2, 5):
            root = tmp_path / f"w{count}"
            site = site_packages(root, INTERPRETER)
            scheme = dict.fromkeys(("purelib", "platlib", "headers", "data"), str(site))
            destination = SchemeDictionaryDestination(
                scheme | {"scripts": str(root / "bin")},
                interpreter="/final/bin/python",
                script_kind="posix",
            )
            installed = unpack_wheels(
                [Wheel.of(w) for w in wheels],
                destination,
                python=PYTHON,
                root=root,
                final_root=Path("/final"),
                compile_bytecode=True,
                workers=count,
            )
            # each .py and its .pyc, METADATA and WHEEL
            assert len(installed.files) == 300 * 2 + 2 + 10 * (5 * 2 + 2)
            trees.append(tree(root, bytecode=True))
        assert trees[0] == trees[1] == trees[2]

    def test_the_worker_runs_on_python_3_8(self):
        """The worker's source is Python 3.8 syntax (it runs under the environment's Python)."""
        source = Path(unpack_worker.__file__).read_text(encoding="utf-8")
        ast.parse(source, feature_version=(3, 8))

    def test_an_interpreter_that_dies_is_named(self, tmp_path):
        """A worker that exits at once fails the install with its interpreter and exit code."""
        false = Path("/bin/false")
        wheel = make_wheel(tmp_path / "dists", "alpha", "1.0")
        with pytest.raises(InstallError, match=rf"{false} exited with 1"):
            install_wheels(
                [Wheel.of(wheel)],
                tmp_path / "env",
                site_packages(tmp_path / "env", INTERPRETER),
                final_root=tmp_path / "env",
                interpreter=Interpreter(executable=false, version=INTERPRETER.version),
                compile_bytecode=True,
                reporter=RecordingReporter(),
            )

    def test_a_missing_interpreter_is_named(self, tmp_path):
        """An interpreter that cannot be started is an InstallError naming it."""
        missing = tmp_path / "no-python"
        wheel = make_wheel(tmp_path / "dists", "alpha", "1.0")
        with pytest.raises(InstallError, match=f"could not start {missing}"):
            install_wheels(
                [Wheel.of(wheel)],
                tmp_path / "env",
                site_packages(tmp_path / "env", INTERPRETER),
                final_root=tmp_path / "env",
                interpreter=Interpreter(executable=missing, version=INTERPRETER.version),
                compile_bytecode=False,
                reporter=RecordingReporter(),
            )


def mixed_wheel(directory: Path) -> Path:
    """A sound wheel whose members are stored, deflated and bzip2-compressed, small and big."""
    wheel = make_wheel(directory, "mixed", "1.0")
    with zipfile.ZipFile(wheel) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    members |= {
        "mixed/stored.bin": os.urandom(BIG),
        "mixed/deflated.bin": bytes(BIG) + os.urandom(1000),
        "mixed/bzip2.py": b"X = 1\n" * 1000,
        "mixed/small.py": b"Y = 2\n",
    }
    kinds = {"mixed/stored.bin": zipfile.ZIP_STORED, "mixed/bzip2.py": zipfile.ZIP_BZIP2}
    record = "mixed-1.0.dist-info/RECORD"
    rows = [f"{n},{record_hash(b)},{len(b)}" for n, b in members.items() if n != record]
    members[record] = ("\n".join([*rows, f"{record},,"]) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as dst:
        for name, content in members.items():
            dst.writestr(name, content, compress_type=kinds.get(name, zipfile.ZIP_DEFLATED))
    return wheel


class TestMembers:
    def test_stored_deflated_and_bzip2_members_are_their_bytes(self, tmp_path):
        """Each member lands with the bytes zipfile reads from the wheel, in any compression."""
        wheel = mixed_wheel(tmp_path / "dists")
        root = tmp_path / "env"
        unpack([wheel], root)
        site = site_packages(root, INTERPRETER)
        with zipfile.ZipFile(wheel) as archive:
            for name in ("stored.bin", "deflated.bin", "bzip2.py", "small.py"):
                assert (site / "mixed" / name).read_bytes() == archive.read(f"mixed/{name}")
        assert list((site / "mixed" / "__pycache__").glob("bzip2.*.pyc"))

    def test_a_member_edited_in_place_is_refused_as_damage(self, tmp_path):
        """A stored member edited in place (no longer the sha256 its RECORD gives) is refused,
        naming it and `verify --repair`."""
        wheel = mixed_wheel(tmp_path / "dists")
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo("mixed/stored.bin")
        with wheel.open("r+b") as f:
            f.seek(info.header_offset + 26)
            skip = sum(int.from_bytes(f.read(2), "little") for _ in range(2))
            f.seek(info.header_offset + 30 + skip + 5000)
            f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
        with pytest.raises(StoreError, match=r"mixed/stored\.bin has sha256") as caught:
            unpack([wheel], tmp_path / "env")
        assert "verify --repair" in (caught.value.hint or "")

    @pytest.mark.parametrize(
        ("given", "chosen"), [("site", "isal.isal_zlib"), ("/nonexistent", "zlib")]
    )
    def test_isal_inflates_when_the_workers_python_can_load_it(self, given, chosen):
        """A worker of this Python given wheelbarrow's site-packages inflates with ISA-L; given
        a directory without it, with zlib."""
        from isal import isal_zlib

        site = str(Path(isal_zlib.__file__).parents[1]) if given == "site" else given
        probe = (
            "import sys; g = {'__name__': 'worker'}; p = sys.argv[1]; "
            "exec(compile(open(p).read(), p, 'exec'), g); print(g['_inflater']().__name__)"
        )
        result = subprocess.run(
            [PYTHON, "-I", "-S", "-c", probe, unpack_worker.__file__, str(os.getpid()), site],
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == chosen


def with_record(wheel: Path, change: dict[str, str | None]) -> Path:
    """The wheel rewritten with the RECORD rows of ``change``'s members replaced (None: the
    row dropped), its members' bytes kept."""
    with zipfile.ZipFile(wheel) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    record = next(name for name in members if name.endswith(".dist-info/RECORD"))
    rows = []
    for line in members[record].decode().splitlines():
        name = line.split(",")[0]
        if name not in change:
            rows.append(line)
        elif change[name] is not None:
            rows.append(f"{name},{change[name]},{len(members[name])}")
    members[record] = ("\n".join(rows) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as dst:
        for name, content in members.items():
            dst.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
    return wheel


class TestRecordChecks:
    def test_a_member_that_is_not_its_records_is_refused_as_damage(self, tmp_path):
        """A member whose bytes differ from the sha256 its RECORD gives (a wheel that changed
        after it was checked) stops the install, naming it and `verify --repair`."""
        wheel = make_wheel(tmp_path / "dists", "alpha", "1.0")
        wheel = with_record(wheel, {"alpha/__init__.py": record_hash(b"other bytes")})
        with pytest.raises(StoreError, match=r"alpha/__init__\.py has sha256") as caught:
            unpack([wheel], tmp_path / "env")
        assert "its RECORD says" in caught.value.message
        assert "verify --repair" in (caught.value.hint or "")

    def test_a_member_record_does_not_hash_is_checked_by_the_whole_file(self, tmp_path):
        """A member without a RECORD hash (a signature file) is written once the worker has
        hashed the whole wheel."""
        wheel = make_wheel(
            tmp_path / "dists", "alpha", "1.0", files={"alpha/__init__.py": "X = 1\n"}
        )
        with zipfile.ZipFile(wheel, "a") as archive:
            archive.writestr("alpha-1.0.dist-info/RECORD.jws", b"signature")
        root = tmp_path / "env"
        unpack([wheel], root)
        site = site_packages(root, INTERPRETER)
        assert (site / "alpha-1.0.dist-info" / "RECORD.jws").read_bytes() == b"signature"

    def test_the_whole_file_check_refuses_another_file(self, tmp_path):
        """A worker asked for a member RECORD does not hash refuses a wheel whose bytes are
        not the sha256 it was given, before writing anything."""
        wheel = make_wheel(tmp_path / "dists", "alpha", "1.0")
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo("alpha/__init__.py")
        where = [info.header_offset, info.compress_size, info.compress_type, 0]
        dest = tmp_path / "out" / "alpha" / "__init__.py"
        member = [info.filename, str(dest), False, None, None, info.file_size, *where]
        try:
            answer = unpack_worker.run_task(
                {"wheel": str(wheel), "sha256": "0" * 64, "members": [member]}
            )
        finally:  # a worker keeps its wheels open for its life; this process closes them
            for opened in unpack_worker._open_wheels.values():
                opened.file.close()
            unpack_worker._open_wheels.clear()
        assert answer["error"] == "mismatch"
        assert "the wheelhouse says 0000" in answer["message"]
        assert not dest.exists()


def workers_with(marker: str) -> list[int]:
    """The pids of running unpack workers whose environment holds ``marker`` (a killed one
    may stay a zombie until the machine's init reaps it: it runs no more)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in environ and b"unpack_worker.py" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


class TestKilledParent:
    def test_workers_die_with_a_killed_parent(self, tmp_path):
        """SIGKILL of the process unpacking kills its workers at once, mid-task (Linux)."""
        if not Path("/proc/self/environ").exists():
            pytest.skip("needs Linux's /proc")
        source = "X = [" + "1, " * 1_500_000 + "]\n"  # a second or more to compile, each
        wheel = make_wheel(
            tmp_path / "dists", "slow", "1.0", files={f"slow/m{i}.py": source for i in range(4)}
        )
        marker = f"wb-test-{os.getpid()}-{tmp_path.name}"
        script = (
            "import sys; from pathlib import Path\n"
            "sys.path[:0] = [sys.argv[3], sys.argv[4]]\n"
            "from test_unpack import unpack\n"
            "unpack([Path(sys.argv[1])], Path(sys.argv[2]))\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script, wheel, tmp_path / "env", *map(str, TEST_DIRS)],
            env=os.environ | {"WB_TEST_MARKER": marker},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not workers_with(marker):
                assert child.poll() is None, "the unpack ended before its workers were seen"
                assert time.monotonic() < deadline, "no worker started"
                time.sleep(0.02)
        finally:
            child.kill()
            child.wait()
        # Gone well before the source being compiled is done.
        deadline = time.monotonic() + 0.5
        while workers_with(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert workers_with(marker) == []


class TestErrors:
    def test_two_wheels_shipping_one_file_name_the_clash(self, tmp_path):
        """The second writer of a file fails with the hint to drop one package."""
        a = make_wheel(tmp_path / "dists", "aa", "1.0", files={"shared/x.py": "A = 1\n"})
        b = make_wheel(tmp_path / "dists", "bb", "1.0", files={"shared/x.py": "B = 1\n"})
        with pytest.raises(InstallError) as caught:
            unpack([a, b], tmp_path / "env")
        assert "cannot be installed" in caught.value.message
        assert "ship the same file" in (caught.value.hint or "")

    def test_a_wheel_that_is_not_its_sha256_is_refused_before_anything_is_written(self, tmp_path):
        """A damaged wheel stops the install, naming it and `verify --repair`."""
        wheel = make_wheel(tmp_path / "dists", "alpha", "1.0")
        root = tmp_path / "env"
        with pytest.raises(StoreError, match="sha256 is") as caught:
            install_wheels(
                [Wheel(path=wheel, sha256="0" * 64)],
                root,
                site_packages(root, INTERPRETER),
                final_root=root,
                interpreter=INTERPRETER,
                compile_bytecode=True,
                reporter=RecordingReporter(),
            )
        assert str(wheel) in caught.value.message
        assert "verify --repair" in (caught.value.hint or "")
        assert not root.exists()

    def test_a_member_escaping_its_directory_is_a_malformed_wheel(self, tmp_path):
        """A member named ../escape.py is refused; nothing lands outside the environment."""
        wheel = make_wheel(
            tmp_path / "dists", "evil", "1.0", files={"../../../../escape.py": "X = 1\n"}
        )
        with pytest.raises(MalformedWheelError, match="outside of the target directory"):
            unpack([wheel], tmp_path / "deep" / "er" / "env")
        assert not list(tmp_path.rglob("escape.py"))

    def test_a_file_that_is_not_a_zip_is_a_malformed_wheel(self, tmp_path):
        """Bytes that are no archive are reported as a malformed wheel, with its name."""
        wheel = tmp_path / "broken-1.0-py3-none-any.whl"
        wheel.write_bytes(b"not a zip")
        with pytest.raises(MalformedWheelError, match=r"broken-1\.0-py3-none-any\.whl"):
            unpack([wheel], tmp_path / "env")
