"""Podman for tests: a private configuration, and a Debian base image made by debootstrap."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from .net import free_port

BASE_IMAGE = "localhost/wheelbarrow-test-bookworm:latest"
# debootstrap's default mirror is the one this machine reaches; pass none.
DEBOOTSTRAP = [
    "debootstrap",
    "--variant=minbase",
    "--include=python3,python3-venv,ca-certificates",
    "bookworm",
]

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def require(*tools: str) -> None:
    """Skip when a tool is missing, except under CI, where .ci/run installs it: fail there."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    message = f"needs {', '.join(missing)} on PATH (.ci/run installs them with apt-get)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True, slots=True)
class Podman:
    """podman with its own storage and configuration under ``root``."""

    root: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment that points podman at this configuration."""
        return dict(
            os.environ,
            CONTAINERS_CONF=str(self.root / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(self.root / "storage.conf"),
        )

    def setup(self) -> Podman:
        """Write the configuration the platform notes describe (runc, cgroupfs, low ulimits)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "containers.conf").write_text(CONTAINERS_CONF)
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}/graph"\n'
            f'runroot = "{self.root}/run"\n'
        )
        return self

    def run(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 900,
        input_bytes: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``, output captured as text."""
        done = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            timeout=timeout,
            input=input_bytes.decode() if input_bytes else None,
            text=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    @contextlib.contextmanager
    def serving(self, image: str, *command: str, options: Sequence[str] = ()) -> Iterator[int]:
        """Run ``image`` detached on the host network with PORT set and BIND_ADDRESS=127.0.0.1.

        Yields the port; stops the container on exit (:meth:`logs` tells what it said).
        """
        port = free_port()
        name = f"wb-test-{port}"
        self.run(
            [
                "run",
                "-d",
                "--rm",
                "--name",
                name,
                "--network=host",
                "-e",
                f"PORT={port}",
                "-e",
                "BIND_ADDRESS=127.0.0.1",
                *options,
                image,
                *command,
            ]
        )
        try:
            yield port
        finally:
            self.run(["stop", "-t", "2", name], check=False)

    def logs(self, port: int) -> str:
        """The logs of the container :meth:`serving` started on ``port``."""
        done = self.run(["logs", f"wb-test-{port}"], check=False)
        return done.stdout + done.stderr

    def has_image(self, ref: str) -> bool:
        """Whether the image is in this storage."""
        return self.run(["image", "exists", ref], check=False).returncode == 0

    def container(
        self,
        image: str,
        command: Sequence[str],
        *,
        volumes: Mapping[Path, str] = {},
        env: Mapping[str, str] = {},
        workdir: str | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in a fresh container on the host network, removed afterwards."""
        args = ["run", "--rm", "--network=host"]
        for host, inside in volumes.items():
            args += ["-v", f"{host}:{inside}"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        if workdir:
            args += ["-w", workdir]
        return self.run([*args, image, *command], check=False, timeout=timeout)


def base_image(podman: Podman, work: Path) -> str:
    """A bookworm image with python3 (what debootstrap gives in about 75 s), made once."""
    if podman.has_image(BASE_IMAGE):
        return BASE_IMAGE
    rootfs = work / "rootfs"
    subprocess.run([*DEBOOTSTRAP, str(rootfs)], check=True, capture_output=True, timeout=900)
    with subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
    ) as tar:
        assert tar.stdout is not None
        subprocess.run(
            ["podman", "import", "-", BASE_IMAGE],
            env=podman.env,
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            timeout=600,
        )
        tar.stdout.close()
    shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_IMAGE
