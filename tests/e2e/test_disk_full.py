"""A full disk during build, install and export: a clear error, and nothing half-written.

Each test runs the CLI in a subprocess inside a private mount namespace
(``unshare -m``) where a small tmpfs is the store, the install target, the
export directory or the app itself: the disk-full is real, not simulated.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from support import LocalIndex, make_wheel, serve_local_index
from support.apps import PLATFORM, make_app

from wheelbarrow._core.errors import InstallError
from wheelbarrow.cli.diskfull import disk_full_cause, disk_full_error, mount_point

WHEELBARROW = (sys.executable, "-m", "wheelbarrow")
BIG = 600_000  # bytes of incompressible data in the big wheel: more than any tmpfs below

# Runs as root inside the new mount namespace: mounts the tmpfs, runs the steps,
# and prints what each run said and what each mount then holds.
HARNESS = r"""
import hashlib, json, os, shutil, subprocess, sys

spec = json.loads(sys.argv[1])

def tree(root):
    found = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            if rel == ".filler":
                continue
            if os.path.islink(path):
                found[rel] = "link:" + os.readlink(path)
            elif os.path.isdir(path):
                found[rel] = "dir"
            else:
                with open(path, "rb") as f:
                    found[rel] = hashlib.sha256(f.read()).hexdigest()
    return found

for number, mount in enumerate(spec["mounts"]):
    os.makedirs(mount["path"], exist_ok=True)
    if mount.get("copy"):
        # Copied aside first: the tmpfs hides what the directory held.
        stage = os.path.join(spec["scratch"], str(number))
        shutil.copytree(mount["path"], stage, symlinks=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=" + mount["size"], "tmpfs", mount["path"]],
        check=True,
    )
    if mount.get("copy"):
        shutil.copytree(stage, mount["path"], dirs_exist_ok=True, symlinks=True)
results = []
for step in spec["steps"]:
    if "fill" in step:
        # Leave no room at all on the device.
        fd = os.open(os.path.join(step["fill"], ".filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        os.close(fd)
    elif "write" in step:
        with open(step["write"], "w", encoding="utf-8") as f:
            f.write(step["text"])
    else:
        done = subprocess.run(step["run"], capture_output=True, text=True)
        results.append({
            "code": done.returncode, "out": done.stdout, "err": done.stderr,
            "trees": {m["path"]: tree(m["path"]) for m in spec["mounts"]},
        })
print(json.dumps(results))
"""


def run_in_namespace(
    mounts: Sequence[dict[str, str]], steps: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Run ``steps`` with each of ``mounts`` a fresh tmpfs; returns each run's code, output, trees.

    A mount with ``copy`` starts with what its directory held; a step is a
    ``run`` (a command line), a ``write`` of ``text`` or a ``fill`` of a device.
    """
    scratch = Path(tempfile.mkdtemp(prefix="wb-diskfull-"))
    spec = json.dumps({"mounts": list(mounts), "steps": list(steps), "scratch": str(scratch)})
    done = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", HARNESS, spec],
        capture_output=True,
        text=True,
        timeout=300,
    )
    shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


@pytest.fixture(scope="module")
def namespaces() -> None:
    """Skip unless this user may make a mount namespace with a tmpfs in it."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"unshare -m with a tmpfs is not permitted here: {probe.stderr.strip()}")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    """A local index with a tiny wheel and one too big for the small devices."""
    files = tmp_path_factory.mktemp("files")
    make_wheel(files, "small", "1.0")
    data = random.Random(8).randbytes(BIG)  # noqa: S311 - incompressible, not secret
    make_wheel(files, "big", "1.0", files={"big/__init__.py": "", "big/data.bin": data})
    with serve_local_index(files) as served:
        yield served


def build(app: Path, store: Path, index: LocalIndex, *extra: str | Path) -> list[str]:
    """The ``wheelbarrow build`` command line for ``app``."""
    return [
        *WHEELBARROW,
        "build", str(app), "--store", str(store), "--index-url", index.url,
        "--platform", PLATFORM, *map(str, extra),
    ]  # fmt: skip


def built_ok(app: Path, store: Path, index: LocalIndex, *extra: str | Path) -> None:
    """Build on the real disk, which has room."""
    done = subprocess.run(build(app, store, index, *extra), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def disk_full_line(err: str, device: Path) -> str:
    """The one ``error:`` line of a run, checked to be the disk-full message for ``device``."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"error: no space left on {device} while writing "), err
    assert "malformed" not in err, err
    return errors[0]


def written_path(line: str) -> Path:
    """The path a disk-full line says was being written."""
    written = line.split(" while writing ", 1)[1]
    return Path(written.removeprefix("in "))


@pytest.mark.usefixtures("namespaces")
class TestDiskFull:
    """ENOSPC from a real full tmpfs, through the CLI in a subprocess."""

    def test_full_store_is_named_and_left_consistent(
        self, tmp_path: Path, index: LocalIndex
    ) -> None:
        """A store that fills during a build: its device is named, tmp/ is clean, blobs whole."""
        app = make_app(tmp_path / "app", "small==1.0\n")
        store = tmp_path / "store"
        first, second = run_in_namespace(
            [{"path": str(store), "size": "400k"}],
            [
                {"run": build(app, store, index)},
                {"write": str(app / "requirements.txt"), "text": "small==1.0\nbig==1.0\n"},
                {"run": build(app, store, index)},
            ],
        )
        assert first["code"] == 0, first["err"]
        assert second["code"] == 1, second["err"]
        line = disk_full_line(second["err"], store)
        assert written_path(line).is_relative_to(store), line
        after = second["trees"][str(store)]
        # Nothing partial: tmp/ holds no file, every blob's name is its content's hash,
        # and the wheelhouse of the first build is unchanged.
        assert [rel for rel, kind in after.items() if rel.startswith("tmp/") and kind != "dir"
                and not rel.endswith(".lock")] == []  # fmt: skip
        blobs = {rel: d for rel, d in after.items() if rel.startswith("blobs/") and d != "dir"}
        assert blobs and all(rel.endswith("/" + d) for rel, d in blobs.items()), blobs
        kept = {
            rel: d
            for rel, d in first["trees"][str(store)].items()
            if rel.startswith("wheelhouses/")
        }
        assert kept and all(after.get(rel) == d for rel, d in kept.items())

    def test_full_install_target_keeps_the_previous_environment(
        self, tmp_path: Path, index: LocalIndex
    ) -> None:
        """Installing onto a full device fails by name; the previous environment stays as it was."""
        store = tmp_path / "store"
        small = make_app(tmp_path / "small", "small==1.0\n")
        big = make_app(tmp_path / "big", "small==1.0\nbig==1.0\n")
        built_ok(small, store, index)
        built_ok(big, store, index)
        target = tmp_path / "target"
        env = target / "env"
        install = [*WHEELBARROW, "install", "--store", str(store), "--into", str(env)]
        install += ["--link-mode", "hardlink"]  # a clone writes the packages' files to the device
        first, second = run_in_namespace(
            [{"path": str(target), "size": "400k"}],
            [{"run": [*install, str(small)]}, {"run": [*install, str(big)]}],
        )
        assert first["code"] == 0, first["err"]
        assert second["code"] == 1, second["err"]
        line = disk_full_line(second["err"], target)
        assert written_path(line).is_relative_to(target), line
        # The same files as after the first install: no scratch copy, no partial file.
        assert second["trees"][str(target)] == first["trees"][str(target)]

    def test_full_export_directory_keeps_the_previous_export(
        self, tmp_path: Path, index: LocalIndex
    ) -> None:
        """Exporting onto a full device fails by name and leaves the previous export as it was."""
        store = tmp_path / "store"
        small = make_app(tmp_path / "small", "small==1.0\n")
        big = make_app(tmp_path / "big", "small==1.0\nbig==1.0\n")
        built_ok(small, store, index)
        built_ok(big, store, index)
        out = tmp_path / "out"
        first, second = run_in_namespace(
            [{"path": str(out), "size": "400k"}],
            [
                {"run": build(small, store, index, "--output", out / "wheelhouse")},
                {"run": build(big, store, index, "--output", out / "wheelhouse")},
            ],
        )
        assert first["code"] == 0, first["err"]
        assert second["code"] == 1, second["err"]
        line = disk_full_line(second["err"], out)
        assert written_path(line).is_relative_to(out), line
        assert second["trees"][str(out)] == first["trees"][str(out)]

    def test_full_app_directory_keeps_the_previous_lock(
        self, tmp_path: Path, index: LocalIndex
    ) -> None:
        """A lock that cannot be written on a full device leaves the previous one intact."""
        app = make_app(tmp_path / "app", "small==1.0\n")
        store = tmp_path / "store"
        built_ok(app, store, index)
        lock = (app / "pylock.toml").read_bytes()
        [result] = run_in_namespace(
            [{"path": str(app), "size": "64k", "copy": "yes"}],
            [
                {"fill": str(app)},
                {"write": str(app / "requirements.txt"), "text": "small>=1.0\n"},
                {"run": build(app, store, index)},
            ],
        )
        assert result["code"] == 1, result["err"]
        line = disk_full_line(result["err"], app)
        assert written_path(line).is_relative_to(app), line
        tree = result["trees"][str(app)]
        assert tree["pylock.toml"] == hashlib.sha256(lock).hexdigest()
        assert sorted(tree) == [".python-version", "pylock.toml", "requirements.txt"]
        assert tomllib.loads(lock.decode())["packages"]

    @pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
    def test_full_unpack_names_the_file_and_leaves_nothing(
        self, tmp_path: Path, suffix: str
    ) -> None:
        """An sdist unpacked onto a full device raises ENOSPC naming the file; nothing is left."""
        data = random.Random(9).randbytes(BIG)  # noqa: S311 - incompressible, not secret
        archive = tmp_path / f"demo-1.0{suffix}"
        if suffix == ".zip":
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr("demo-1.0/data.bin", data)
        else:
            with tarfile.open(archive, "w:gz") as tar:
                info = tarfile.TarInfo("demo-1.0/data.bin")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        dest = tmp_path / "dest"
        code = (
            "import errno, sys\nfrom pathlib import Path\n"
            "from wheelbarrow.build.sdist import unpack_sdist\n"
            "try:\n"
            "    unpack_sdist(Path(sys.argv[1]), Path(sys.argv[2]) / 'src', label='demo')\n"
            "except OSError as exc:\n"
            "    print(errno.errorcode[exc.errno], exc.filename, file=sys.stderr)\n"
            "    sys.exit(1)\n"
        )
        [result] = run_in_namespace(
            [{"path": str(dest), "size": "300k"}],
            [{"run": [sys.executable, "-c", code, str(archive), str(dest)]}],
        )
        assert result["code"] == 1, result["err"]
        name, filename = result["err"].split()
        assert name == "ENOSPC"
        # The member where wheelbarrow writes it; tarfile's own extraction says only where to.
        assert Path(filename).is_relative_to(dest), filename
        assert result["trees"][str(dest)] == {}


class TestDiskFullError:
    """disk_full_cause and disk_full_error: which device and path a full disk is reported for."""

    def test_cause_is_found_behind_a_wrapping_error(self) -> None:
        """An ENOSPC that another error was raised from is still the cause."""
        full = OSError(errno.ENOSPC, "No space left on device")
        try:
            try:
                raise full
            except OSError as exc:
                raise InstallError("the wheel is malformed") from exc
        except InstallError as wrapped:
            assert disk_full_cause(wrapped) is full
        assert disk_full_cause(OSError(errno.EACCES, "Permission denied")) is None

    def test_a_copy_names_its_destination(self, tmp_path: Path) -> None:
        """For a copy (two file names) the path written is the second, on its mount point."""
        exc = OSError(
            errno.ENOSPC, "No space left on device", "/src/file", None, str(tmp_path / "x")
        )
        error = disk_full_error(exc, [])
        assert (
            error.message
            == f"no space left on {mount_point(tmp_path)} while writing {tmp_path / 'x'}"
        )
        assert error.hint and "nothing half-written was kept" in error.hint

    def test_without_a_file_name_the_place_with_least_room_is_named(self, tmp_path: Path) -> None:
        """A write to an open file names the command's place on the fullest device."""
        exc = OSError(errno.EDQUOT, "Disk quota exceeded")
        error = disk_full_error(exc, [tmp_path / "not" / "yet"])
        device = mount_point(tmp_path)
        assert (
            error.message
            == f"disk quota exceeded on {device} while writing in {tmp_path / 'not' / 'yet'}"
        )
