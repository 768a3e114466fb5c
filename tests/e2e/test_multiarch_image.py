"""End to end on examples/textsim: one index of a linux/amd64 and a linux/arm64 image, built on
this machine from each platform's wheels without emulation, pushed, and run (arm64 under qemu)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.apps import cli
from support.containers import Podman, require
from support.multiarch import (
    EM_AARCH64,
    EM_X86_64,
    OCI_INDEX,
    arm64_base_image,
    blob_json,
    elf_machines,
    qemu_aarch64,
    tag_index,
    tagged,
)
from support.registry import serve_registry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "textsim"
TEXTS = ["the cat sat", "the cat sat", "dogs bark", "the cat ran"]

pytestmark = [pytest.mark.container, pytest.mark.network, pytest.mark.slow]


@dataclass
class Built:
    podman: Podman
    out: Path  # the OCI layout the index was written into, tagged textsim
    registry: str
    reference: str  # the index in the registry
    report: dict[str, object]

    def manifest(self, architecture: str) -> dict[str, object]:
        """The manifest of ``architecture``'s image, as the layout's index names it."""
        index = blob_json(self.out, tagged(self.out, "textsim")["digest"])
        entry = next(m for m in index["manifests"] if m["platform"]["architecture"] == architecture)
        return blob_json(self.out, entry["digest"])

    def by_digest(self, architecture: str) -> str:
        """The registry reference of ``architecture``'s image."""
        index = blob_json(self.out, tagged(self.out, "textsim")["digest"])
        entry = next(m for m in index["manifests"] if m["platform"]["architecture"] == architecture)
        return f"{self.registry}/textsim@{entry['digest']}"


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, debian_base: tuple[Podman, str]
) -> Iterator[Built]:
    """textsim locked and built for x86_64 and aarch64, its image index written to an OCI
    layout and pushed to a registry, on a base index of bookworm amd64 and arm64."""
    require("skopeo", "docker-registry", "debootstrap", "dpkg-deb")
    podman, amd64 = debian_base
    root = tmp_path_factory.mktemp("multiarch-textsim")
    arm64 = arm64_base_image(podman, root)
    layout = root / "base"
    for image, ref in ((amd64, "amd64"), (arm64, "arm64")):
        subprocess.run(
            ["skopeo", "copy", f"containers-storage:{image}", f"oci:{layout}:{ref}"],
            env=podman.env, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    tag_index(layout, "multi", ["amd64", "arm64"])
    app = root / "textsim"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("pylock.toml", "__pycache__"))
    store = root / "store"
    first = cli("build", app, "--store", store, "--json")
    assert first.code == 0, first.err
    platform = first.json()["target"]["platform"].replace("x86_64", "aarch64")
    second = cli("build", app, "--store", store, "--platform", platform)
    assert second.code == 0, second.err
    out = root / "out"
    with serve_registry(root / "registry") as registry:
        reference = f"{registry.host}/textsim:multi"
        result = cli(
            "image", app, "--store", store, "--base", f"oci:{layout}:multi", "--tag", reference,
            "--platform", "linux/amd64,linux/arm64", "--oci", f"{out}:textsim", "--push", "--json",
        )  # fmt: skip
        assert result.code == 0, result.err
        yield Built(
            podman=podman,
            out=out,
            registry=registry.host,
            reference=reference,
            report=result.json(),
        )


def inspect_raw(podman: Podman, where: str, *options: str) -> dict[str, object]:
    """``skopeo inspect --raw``: the document ``where`` names, as stored."""
    done = subprocess.run(
        ["skopeo", "inspect", "--raw", *options, where],
        env=podman.env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    data: dict[str, object] = json.loads(done.stdout)
    return data


def ask_similarity(podman: Podman, reference: str, *, timeout: float) -> list[list[float]]:
    """Run the image's web process and POST /similarity to it once it answers."""
    options = [
        "--tls-verify=false",
        "-e", "WEB_CONCURRENCY=1",
        # Under emulation importing scikit-learn takes longer than gunicorn's 30 s default.
        "-e", "GUNICORN_CMD_ARGS=--timeout 600",
    ]  # fmt: skip
    body = json.dumps({"texts": TEXTS}).encode()
    with podman.serving(reference, options=options) as port:
        deadline = time.monotonic() + timeout
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/similarity",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    matrix: list[list[float]] = json.loads(response.read())["similarity"]
                    return matrix
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no answer: {exc}\n{podman.logs(port)}") from exc
                time.sleep(2)


def check_similarities(matrix: list[list[float]]) -> None:
    assert len(matrix) == 4 and all(len(row) == 4 for row in matrix)
    assert matrix[0][1] == pytest.approx(1.0)
    assert matrix[0][2] == pytest.approx(0.0)
    assert 0.0 < matrix[0][3] < 1.0


class TestMultiarchTextsim:
    def test_skopeo_shows_the_index_with_both_platforms(self, built):
        """`skopeo inspect --raw` of the registry's tag and of the layout is the same OCI index
        of a linux/amd64 and a linux/arm64 image."""
        pushed = inspect_raw(built.podman, f"docker://{built.reference}", "--tls-verify=false")
        written = inspect_raw(built.podman, f"oci:{built.out}:textsim")
        assert pushed == written
        assert pushed["mediaType"] == OCI_INDEX
        platforms = [m["platform"] for m in pushed["manifests"]]  # type: ignore[attr-defined]
        assert sorted((p["os"], p["architecture"]) for p in platforms) == [
            ("linux", "amd64"),
            ("linux", "arm64"),
        ]

    def test_the_arm64_image_is_arm64_to_its_extension_modules(self, built):
        """The arm64 manifest's config names arm64, and every extension module of its
        environment (numpy's, scipy's, scikit-learn's) is an aarch64 ELF file; amd64's x86-64."""
        for architecture, machine in (("arm64", EM_AARCH64), ("amd64", EM_X86_64)):
            manifest = built.manifest(architecture)
            config = blob_json(built.out, manifest["config"]["digest"])  # type: ignore[index]
            assert (config["os"], config["architecture"]) == ("linux", architecture)
            env_layer = manifest["layers"][-2]["digest"]  # type: ignore[index]
            modules = elf_machines(built.out, env_layer)
            assert any("numpy" in n for n in modules) and any("sklearn" in n for n in modules)
            assert {n: m for n, m in modules.items() if m != machine} == {}

    def test_the_amd64_image_answers_similarity(self, built):
        """The amd64 image, pulled by its digest, serves POST /similarity."""
        check_similarities(ask_similarity(built.podman, built.by_digest("amd64"), timeout=120))

    def test_the_arm64_image_answers_similarity_under_qemu(self, built):
        """The arm64 image serves POST /similarity under qemu user emulation, where this machine
        lets qemu-aarch64 be registered with binfmt_misc; where not, only this run is skipped."""
        require("qemu-aarch64-static")  # Debian's qemu-user-static (.ci/run installs it)
        with qemu_aarch64() as why_not:
            if why_not is not None:
                pytest.skip(f"arm64 image not run: {why_not}")
            check_similarities(ask_similarity(built.podman, built.by_digest("arm64"), timeout=600))
