"""Multi-architecture tests: ELF headers, image indexes in OCI layouts, an arm64 Debian base
made here without emulation, and qemu user emulation where the machine lets it be registered."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .containers import Podman

EM_X86_64 = 62
EM_AARCH64 = 183
ARM64_IMAGE = "localhost/wheelbarrow-test-bookworm-arm64:latest"
# The first stage only: it downloads and unpacks, and runs nothing of arm64. The packages
# of the second stage (python3 among them) are downloaded too, and unpacked below.
DEBOOTSTRAP_ARM64 = [
    "debootstrap",
    "--foreign",
    "--arch=arm64",
    "--variant=minbase",
    "--include=python3,python3-venv,ca-certificates",
    "bookworm",
]
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def elf_header(machine: int) -> bytes:
    """The 64 bytes of a little-endian ELF64 shared object's header for ``machine``."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    return ident + struct.pack("<HHIQQQIHHHHHH", 3, machine, 1, 0, 64, 0, 0, 64, 56, 0, 64, 0, 0)


def e_machine(data: bytes) -> int:
    """The ``e_machine`` of an ELF file's first bytes (little-endian), or -1 if it is not ELF."""
    if data[:4] != b"\x7fELF" or len(data) < 20:
        return -1
    return int(struct.unpack_from("<H", data, 18)[0])


def fake_python_image(layout: Path, ref: str, *, architecture: str, python: str) -> None:
    """Add to ``layout`` an image tagged ``ref`` for linux/``architecture`` holding only an
    empty ``/usr/bin/python<python>`` and its ``os.py``: enough to be a base, not to run."""
    from wheelbarrow.ship.oci.append import append_layers, scratch_config
    from wheelbarrow.ship.oci.layer import RegularFile, write_layer
    from wheelbarrow.ship.oci.layout import write_oci_layout

    files = [f"/usr/bin/python{python}", f"/usr/lib/python{python}/os.py", f"/etc/{architecture}"]
    scratch = layout.parent / f".{layout.name}-{ref}"
    layer = write_layer([RegularFile(path=f, data=b"") for f in files], scratch)
    docs = append_layers(scratch_config(architecture=architecture), None, [layer])
    write_oci_layout(
        layout,
        manifest=docs.manifest,
        config=docs.config,
        blobs={layer.digest: layer.path},
        ref_name=ref,
    )


def tag_index(layout: Path, ref: str, refs: Sequence[str]) -> dict[str, Any]:
    """Tag ``ref`` in ``layout`` an OCI image index of the images tagged ``refs``, each entry
    with the platform its config names; returns the index."""
    index = read_index_json(layout)
    entries = []
    for name in refs:
        descriptor = next(m for m in index["manifests"] if m["annotations"][REF_NAME] == name)
        config = blob_json(layout, blob_json(layout, descriptor["digest"])["config"]["digest"])
        platform = {"architecture": config["architecture"], "os": config["os"]}
        entries.append({k: descriptor[k] for k in ("mediaType", "digest", "size")})
        entries[-1]["platform"] = platform
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(body)
    kept = [m for m in index["manifests"] if m["annotations"][REF_NAME] != ref]
    kept.append(
        {
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": len(body),
            "annotations": {REF_NAME: ref},
        }
    )
    (layout / "index.json").write_text(json.dumps({**index, "manifests": kept}))
    return json.loads(body)


def read_index_json(layout: Path) -> dict[str, Any]:
    """The layout's ``index.json``."""
    data: dict[str, Any] = json.loads((layout / "index.json").read_text())
    return data


def blob(layout: Path, digest: str) -> bytes:
    """A blob of the layout."""
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def blob_json(layout: Path, digest: str) -> dict[str, Any]:
    """A JSON blob (manifest, index, config) of the layout."""
    data: dict[str, Any] = json.loads(blob(layout, digest))
    return data


def tagged(layout: Path, ref: str) -> dict[str, Any]:
    """The descriptor ``index.json`` lists for ``ref``."""
    return next(
        m for m in read_index_json(layout)["manifests"] if m["annotations"].get(REF_NAME) == ref
    )


def layer_files(layout: Path, digest: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """Every member of a gzipped layer of the layout, with the content of regular files."""
    members: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with (
        gzip.open(layout / "blobs" / "sha256" / digest.split(":", 1)[1]) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            data = b""
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                data = extracted.read()
            members[member.name] = (member, data)
    return members


def elf_machines(layout: Path, digest: str) -> dict[str, int]:
    """The ``e_machine`` of every extension module (``*.so*``) of a gzipped layer, streamed."""
    machines: dict[str, int] = {}
    with (
        gzip.open(layout / "blobs" / "sha256" / digest.split(":", 1)[1]) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            if member.isfile() and ".so" in member.name.rsplit("/", 1)[-1]:
                extracted = tar.extractfile(member)
                assert extracted is not None
                machines[member.name] = e_machine(extracted.read(64))
    return machines


def arm64_base_image(podman: Podman, work: Path) -> str:
    """A bookworm arm64 image with python3, made on any machine without running arm64 code.

    debootstrap's first stage unpacks the essential packages; the others it downloaded
    (python3, python3-venv, ca-certificates and what they need) are unpacked with
    ``dpkg-deb`` into the same tree (keeping the merged-/usr links); nothing is
    configured, which a Python base does not need. Imported once into ``podman``'s
    storage as an arm64 image (about 25 s), and reused while that storage lives.
    """
    if podman.has_image(ARM64_IMAGE):
        return ARM64_IMAGE
    rootfs = work / "rootfs-arm64"
    subprocess.run([*DEBOOTSTRAP_ARM64, str(rootfs)], check=True, capture_output=True, timeout=900)
    paths = dict(
        line.split(" ", 1)
        for line in (rootfs / "debootstrap" / "debpaths").read_text().splitlines()
        if " " in line
    )
    for package in (rootfs / "debootstrap" / "base").read_text().split():
        deb = rootfs / paths[package].lstrip("/")
        with subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
        ) as d:
            subprocess.run(
                ["tar", "-C", str(rootfs), "--keep-directory-symlink", "-xf", "-"],
                stdin=d.stdout,
                check=True,
                capture_output=True,
            )
    shutil.rmtree(rootfs / "debootstrap")
    # Inside a container the first stage links /proc to the host's: a runtime mounts it.
    for mount_point in ("proc", "sys"):
        if (rootfs / mount_point).is_symlink():
            (rootfs / mount_point).unlink()
            (rootfs / mount_point).mkdir()
    for deb in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    with subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
    ) as tar:
        assert tar.stdout is not None
        subprocess.run(
            ["podman", "import", "--arch", "arm64", "--os", "linux", "-", ARM64_IMAGE],
            env=podman.env,
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            timeout=600,
        )
        tar.stdout.close()
    shutil.rmtree(rootfs, ignore_errors=True)
    return ARM64_IMAGE


BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_AARCH64_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # Debian's qemu-user-static


@contextlib.contextmanager
def qemu_aarch64() -> Iterator[str | None]:
    """Run arm64 programs under qemu user emulation while inside: yields None when they do,
    else why not (the machine forbids registering the emulator, or it is not installed).

    An emulator already registered is used as it is; one registered here (from Debian's
    qemu-user-static, with its ``F`` flag, so it works inside containers) is unregistered
    on the way out.
    """
    entry = BINFMT / "qemu-aarch64"
    if entry.is_file() and entry.read_text().startswith("enabled"):
        yield None
        return
    if not QEMU_AARCH64_CONF.is_file():
        yield f"no {QEMU_AARCH64_CONF} (Debian's qemu-user-static is not installed)"
        return
    mounted = False
    if not (BINFMT / "register").exists():
        done = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            yield f"this machine does not let binfmt_misc be mounted: {done.stderr.strip()}"
            return
        mounted = True
    try:
        (BINFMT / "register").write_text(QEMU_AARCH64_CONF.read_text().strip() + "\n")
    except OSError as exc:
        yield f"this machine does not let qemu-aarch64 be registered with binfmt_misc: {exc}"
        return
    try:
        yield None
    finally:
        with contextlib.suppress(OSError):
            entry.write_text("-1\n")
        if mounted:
            subprocess.run(["umount", str(BINFMT)], capture_output=True, check=False)
