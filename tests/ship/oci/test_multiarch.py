"""`wheelbarrow image --platform linux/amd64,linux/arm64`: an index of one image per platform,
built here without running anything of arm64, from each platform's own lock and wheelhouse."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import make_sdist, make_wheel, serve_local_index, sha256_of
from support.apps import HOST_PYTHON, cli, make_app
from support.containers import require
from support.multiarch import (
    EM_AARCH64,
    EM_X86_64,
    OCI_INDEX,
    blob_json,
    e_machine,
    elf_header,
    fake_python_image,
    layer_files,
    tag_index,
    tagged,
)
from support.registry import serve_registry

CP = "cp" + HOST_PYTHON.replace(".", "")
AMD64 = "manylinux_2_28_x86_64"
ARM64 = "manylinux_2_28_aarch64"
SO = f"native/_speed.{CP.replace('cp', 'cpython-')}-{{arch}}-linux-gnu.so"


@dataclass
class Env:
    root: Path
    store: Path
    index_url: str
    base: str  # oci:DIR:multi, an index of an amd64 and an arm64 image
    layout: Path


def native_wheel(directory: Path, arch: str, machine: int) -> Path:
    """native 1.0 for ``arch``: an extension module (an ELF header for ``machine``), a pure
    module and a console script."""
    return make_wheel(
        directory,
        "native",
        "1.0",
        tag=f"{CP}-{CP}-manylinux_2_17_{arch}",
        files={
            "native/__init__.py": "",
            "native/cli.py": "def main():\n    return 0\n",
            SO.format(arch=arch): elf_header(machine),
        },
        entry_points={"native-cli": "native.cli:main"},
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """An index with native 1.0 for both architectures (and x86only, with an x86_64 wheel and
    an sdist), and a base that is an index of two images with Python."""
    root = tmp_path_factory.mktemp("multiarch")
    dists = root / "dists"
    native_wheel(dists, "x86_64", EM_X86_64)
    native_wheel(dists, "aarch64", EM_AARCH64)
    make_wheel(dists, "x86only", "1.0", tag=f"{CP}-{CP}-manylinux_2_17_x86_64")
    make_sdist(dists, "x86only", "1.0")
    layout = root / "base"
    fake_python_image(layout, "amd64", architecture="amd64", python=HOST_PYTHON)
    fake_python_image(layout, "arm64", architecture="arm64", python=HOST_PYTHON)
    tag_index(layout, "multi", ["amd64", "arm64"])
    with serve_local_index(dists) as index:
        yield Env(
            root=root,
            store=root / "store",
            index_url=index.url,
            base=f"oci:{layout}:multi",
            layout=layout,
        )


def built_app(env: Env, name: str, requirements: str = "native==1.0\n") -> Path:
    """An app built for both architectures: pylock.toml for x86_64, a lock of its own for
    aarch64."""
    directory = make_app(env.root / name, requirements, python=HOST_PYTHON)
    (directory / "Procfile").write_text("web: native-cli\n")
    for platform in (AMD64, ARM64):
        result = cli(
            "build", directory, "--store", env.store, "--index-url", env.index_url,
            "--platform", platform,
        )  # fmt: skip
        assert result.code == 0, result.err
    return directory


def image(env: Env, directory: Path, *args: str | Path) -> dict[str, object]:
    result = cli(
        "image", directory, "--store", env.store, "--base", env.base, "--tag", "localhost/app:1",
        "--json", *args,
    )  # fmt: skip
    assert result.code == 0, result.err
    report: dict[str, object] = result.json()
    return report


def platform_images(layout: Path, ref: str) -> dict[str, dict[str, object]]:
    """The manifest of each platform of the index tagged ``ref``, by ``os/architecture``."""
    descriptor = tagged(layout, ref)
    assert descriptor["mediaType"] == OCI_INDEX
    index = blob_json(layout, descriptor["digest"])
    return {
        f"{m['platform']['os']}/{m['platform']['architecture']}": blob_json(layout, m["digest"])
        for m in index["manifests"]
    }


def env_layer(layout: Path, manifest: dict[str, object]) -> dict[str, tuple[object, bytes]]:
    layers = manifest["layers"]
    assert isinstance(layers, list)
    return dict(layer_files(layout, layers[-2]["digest"]))  # the environment, then the app


def interpreter(files: dict[str, tuple[object, bytes]], name: str) -> str:
    """Where the link ``name`` of a layer leads, through the layer's relative links."""
    for _ in range(10):
        info = files[name][0]
        assert isinstance(info, tarfile.TarInfo) and info.issym(), name
        if info.linkname.startswith("/"):
            return info.linkname
        name = f"{name.rsplit('/', 1)[0]}/{info.linkname}"
    raise AssertionError(f"{name}: a loop of links")


class TestMultiarchImage:
    def test_the_index_has_one_image_per_platform_each_naming_its_architecture(self, env):
        """The layout's tag is an OCI index of a linux/amd64 and a linux/arm64 image, whose
        configs name those architectures; each has its platform's wheelhouse."""
        app = built_app(env, "both")
        out = env.root / "both-oci"
        report = image(env, app, "--platform", "linux/amd64,linux/arm64", "--oci", f"{out}:v1")
        images = platform_images(out, "v1")
        assert sorted(images) == ["linux/amd64", "linux/arm64"]
        for name, manifest in images.items():
            config = blob_json(out, manifest["config"]["digest"])  # type: ignore[index]
            assert f"{config['os']}/{config['architecture']}" == name
        assert report["index"] is True
        assert report["digest"] == tagged(out, "v1")["digest"]
        platforms = report["platforms"]
        assert isinstance(platforms, list)
        assert [p["target"]["platform"] for p in platforms] == [AMD64, ARM64]
        assert [p["lock"] for p in platforms] == [
            "pylock.toml",
            f"pylock.py{HOST_PYTHON.replace('.', '_')}-{ARM64}.toml",
        ]

    def test_each_environment_has_its_own_architectures_extension_modules(self, env):
        """The arm64 image's extension module is an aarch64 ELF file, the amd64 one's x86-64."""
        app = built_app(env, "elf")
        out = env.root / "elf-oci"
        image(env, app, "--platform", "linux/amd64,linux/arm64", "--oci", f"{out}:v1")
        for name, machine, arch in (
            ("linux/arm64", EM_AARCH64, "aarch64"),
            ("linux/amd64", EM_X86_64, "x86_64"),
        ):
            files = env_layer(out, platform_images(out, "v1")[name])
            site = f"opt/venv/lib/python{HOST_PYTHON}/site-packages"
            modules = {n: d for n, (_, d) in files.items() if n.endswith(".so")}
            assert list(modules) == [f"{site}/{SO.format(arch=arch)}"]
            assert e_machine(modules[f"{site}/{SO.format(arch=arch)}"]) == machine

    def test_scripts_name_the_images_python_and_bytecode_is_the_same(self, env):
        """Both images' scripts run /opt/venv/bin/python, a link to the base's interpreter, and
        their bytecode is the same but for the stored environment's path each was compiled in
        (one minor version, any architecture)."""
        app = built_app(env, "scripts")
        out = env.root / "scripts-oci"
        image(env, app, "--platform", "linux/amd64,linux/arm64", "--oci", f"{out}:v1")
        layers = {n: env_layer(out, m) for n, m in platform_images(out, "v1").items()}
        pyc = {}
        for name, files in layers.items():
            script = files["opt/venv/bin/native-cli"][1]
            assert script.startswith(b"#!/opt/venv/bin/python\n"), name
            assert interpreter(files, "opt/venv/bin/python") == f"/usr/bin/python{HOST_PYTHON}"
            # The source path (co_filename) is the stored environment's, one per wheelhouse;
            # Python puts the real one in at import.
            pyc[name] = {
                n: re.sub(rb"/envs/[0-9a-f]{32}/", b"/envs/KEY/", d)
                for n, (_, d) in files.items()
                if n.endswith(".pyc")
            }
        assert pyc["linux/amd64"] and pyc["linux/amd64"] == pyc["linux/arm64"]

    def test_the_same_inputs_give_the_same_index(self, env):
        """Building twice gives the same index digest; the environment layers are reused."""
        app = built_app(env, "repro")
        first = image(env, app, "--platform", "linux/amd64,linux/arm64", "--oci", f"{env.root}/r1")
        second = image(env, app, "--platform", "linux/amd64,linux/arm64", "--oci", f"{env.root}/r2")
        assert first["digest"] == second["digest"]
        platforms = second["platforms"]
        assert isinstance(platforms, list)
        assert all(p["env_layer"]["reused"] for p in platforms)

    def test_zstd_layers_go_into_every_platforms_image(self, env):
        """--compression zstd gives both images tar+zstd environment and app layers."""
        app = built_app(env, "zstd")
        out = env.root / "zstd-oci"
        report = image(
            env, app, "--platform", "linux/amd64,linux/arm64", "--oci", f"{out}:v1",
            "--compression", "zstd",
        )  # fmt: skip
        zstd = "application/vnd.oci.image.layer.v1.tar+zstd"
        assert report["compression"]["media_type"] == zstd  # type: ignore[index]
        for manifest in platform_images(out, "v1").values():
            layers = manifest["layers"]
            assert isinstance(layers, list)
            assert [layer["mediaType"] for layer in layers[-2:]] == [zstd, zstd]

    def test_one_platform_gives_that_platforms_image_alone(self, env):
        """--platform linux/arm64 writes the arm64 image itself (no index), from the base's
        arm64 image, and a docker-archive of it is allowed."""
        app = built_app(env, "alone")
        out = env.root / "alone-oci"
        report = image(
            env, app, "--platform", "linux/arm64", "--oci", f"{out}:v1",
            "--docker-archive", env.root / "alone.tar",
        )  # fmt: skip
        descriptor = tagged(out, "v1")
        assert descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        manifest = blob_json(out, descriptor["digest"])
        assert blob_json(out, manifest["config"]["digest"])["architecture"] == "arm64"
        assert report["index"] is False and (env.root / "alone.tar").is_file()


class TestOnePlatformFromItsLock:
    def test_an_arm64_lock_takes_the_base_indexs_arm64_image(self, env):
        """Without image platforms the image is for the lock's architecture: an aarch64 lock
        builds on the base index's arm64 image."""
        app = make_app(env.root / "armlock", "native==1.0\n", python=HOST_PYTHON)
        built = cli("build", app, "--store", env.store, "--index-url", env.index_url,
                    "--platform", ARM64)  # fmt: skip
        assert built.code == 0, built.err
        out = env.root / "armlock-oci"
        image(env, app, "--oci", f"{out}:v1")
        manifest = blob_json(out, tagged(out, "v1")["digest"])
        assert blob_json(out, manifest["config"]["digest"])["architecture"] == "arm64"

    def test_a_single_platform_base_of_another_architecture_is_refused(self, env, tmp_path):
        """An aarch64 lock on an amd64 image is an error naming both, not a broken image."""
        app = make_app(env.root / "armonamd", "native==1.0\n", python=HOST_PYTHON)
        built = cli("build", app, "--store", env.store, "--index-url", env.index_url,
                    "--platform", ARM64)  # fmt: skip
        assert built.code == 0, built.err
        result = cli(
            "image", app, "--store", env.store, "--base", f"oci:{env.layout}:amd64",
            "--tag", "localhost/x:1", "--oci", tmp_path / "out",
        )  # fmt: skip
        assert result.code != 0
        assert "single-platform image (linux/amd64), so it is no base for linux/arm64" in result.err
        assert not (tmp_path / "out").exists()


class TestMultiarchErrors:
    def test_a_single_platform_base_for_two_platforms_is_refused(self, env):
        """A base that is one image, given for two platforms, is named; nothing is written."""
        app = built_app(env, "single")
        out = env.root / "single-oci"
        result = cli(
            "image", app, "--store", env.store, "--base", f"oci:{env.layout}:amd64",
            "--tag", "localhost/x:1", "--platform", "linux/amd64,linux/arm64", "--oci", out,
        )  # fmt: skip
        assert result.code != 0
        assert (
            f"oci:{env.layout}:amd64 is a single-platform image (linux/amd64), "
            "so it is no base for linux/arm64"
        ) in result.err
        assert "multi-architecture base" in result.err
        assert not out.exists()

    def test_a_base_index_without_the_platform_names_it(self, env, tmp_path):
        """A base index with no arm64 image: the error names the platform and what it has."""
        tag_index(env.layout, "amd64-only", ["amd64"])
        app = built_app(env, "noarm")
        result = cli(
            "image", app, "--store", env.store, "--base", f"oci:{env.layout}:amd64-only",
            "--tag", "localhost/x:1", "--platform", "linux/amd64,linux/arm64",
            "--oci", tmp_path / "out",
        )  # fmt: skip
        assert result.code != 0
        assert "for linux/arm64" in result.err and "it has: linux/amd64" in result.err

    def test_a_docker_archive_of_two_platforms_is_refused(self, env, tmp_path):
        """A docker-archive holds one image: asking for two platforms says to use --oci."""
        app = built_app(env, "archive")
        result = cli(
            "image", app, "--store", env.store, "--base", env.base, "--tag", "localhost/x:1",
            "--platform", "linux/amd64,linux/arm64", "--docker-archive", tmp_path / "x.tar",
        )  # fmt: skip
        assert result.code == 2
        assert "a docker-archive holds one platform's image" in result.err
        assert not (tmp_path / "x.tar").exists()

    def test_a_platform_not_built_says_which_build_makes_it(self, env, tmp_path):
        """Without the arm64 lock the error names it and the build that makes it."""
        app = make_app(env.root / "unbuilt", "native==1.0\n", python=HOST_PYTHON)
        built = cli("build", app, "--store", env.store, "--index-url", env.index_url)
        assert built.code == 0, built.err
        result = cli(
            "image", app, "--store", env.store, "--base", env.base, "--tag", "localhost/x:1",
            "--platform", "linux/amd64,linux/arm64", "--oci", tmp_path / "out",
        )  # fmt: skip
        assert result.code == 2
        assert "_aarch64.toml: out of date" in result.err
        assert (
            f"wheelbarrow build {app} --python {HOST_PYTHON} --platform manylinux_2_" in result.err
        )

    def test_a_package_without_an_arm64_wheel_is_named_with_the_platform(self, env, tmp_path):
        """A package whose aarch64 lock has only its sdist: named, with linux/arm64, and
        source builds for a foreign architecture said to be out of scope."""
        app = make_app(env.root / "x86only", "native==1.0\nx86only==1.0\n", python=HOST_PYTHON)
        for platform in (AMD64, ARM64):
            locked = cli("lock", app, "--index-url", env.index_url, "--platform", platform)
            assert locked.code == 0, locked.err
        built = cli("build", app, "--store", env.store, "--index-url", env.index_url)
        assert built.code == 0, built.err
        result = cli(
            "image", app, "--store", env.store, "--base", env.base, "--tag", "localhost/x:1",
            "--platform", "linux/amd64,linux/arm64", "--oci", tmp_path / "out",
        )  # fmt: skip
        assert result.code == 2
        assert "1 package has no wheel for linux/arm64 (manylinux_2_28_aarch64)" in result.err
        assert "x86only 1.0 (sdist)" in result.err
        assert "source builds for a foreign architecture are out of scope" in result.err
        assert not (tmp_path / "out").exists()

    def test_on_a_machine_that_builds_aarch64_sources_the_source_is_no_error(self, env, tmp_path):
        """What a source build is foreign to is the machine's (BuildMachine.native_arches): where
        aarch64 sources build, the same lock only lacks its arm64 wheelhouse."""
        import contextlib

        from wheelbarrow._core.errors import StoreError
        from wheelbarrow._core.report import NullReporter
        from wheelbarrow._core.runner import run_subprocess
        from wheelbarrow.app.directory import read_app
        from wheelbarrow.cli.common import host, running_interpreter
        from wheelbarrow.lock.options import Options
        from wheelbarrow.ship.oci.multiarch import (
            BuildMachine,
            plan_platforms,
            ship_platform_images,
        )
        from wheelbarrow.ship.oci.pipeline import ImageOutputs
        from wheelbarrow.ship.oci.platforms import parse_platforms
        from wheelbarrow.store.store import Store

        app = make_app(env.root / "armhost", "native==1.0\nx86only==1.0\n", python=HOST_PYTHON)
        for platform in (AMD64, ARM64):
            locked = cli("lock", app, "--index-url", env.index_url, "--platform", platform)
            assert locked.code == 0, locked.err
        assert cli("build", app, "--store", env.store, "--index-url", env.index_url).code == 0
        plans = plan_platforms(
            read_app(app, environ={}),
            Options(),
            host(),
            parse_platforms("linux/amd64,linux/arm64"),
            runner=run_subprocess,
            reporter=NullReporter(),
        )
        with contextlib.ExitStack() as held, pytest.raises(StoreError) as caught:
            ship_platform_images(
                plans,
                base=env.base,
                tag="localhost/x:1",
                outputs=ImageOutputs(oci=str(tmp_path / "out")),
                source=None,
                store=Store(env.store),
                machine=BuildMachine(
                    python=running_interpreter, native_arches=frozenset({"aarch64"})
                ),
                runner=run_subprocess,
                reporter=NullReporter(),
                environ={},
                home=tmp_path,
                held=held,
            )
        assert "no wheelhouse for linux/arm64" in caught.value.message
        assert f"--platform {ARM64}" in (caught.value.hint or "")

    def test_a_package_with_no_arm64_file_in_a_users_lock_is_named_with_the_platform(
        self, env, tmp_path
    ):
        """A pylock.toml of another tool listing only an x86_64 wheel: the package is named,
        and the platform, before anything is built."""
        app = tmp_path / "userlock"
        wheel = make_wheel(app / "wheels", "onlyx86", "1.0", tag=f"{CP}-{CP}-manylinux_2_17_x86_64")
        (app / ".python-version").write_text(HOST_PYTHON + "\n")
        (app / "pylock.toml").write_text(
            'lock-version = "1.0"\ncreated-by = "hand"\n\n[[packages]]\nname = "onlyx86"\n'
            f'version = "1.0"\nwheels = [{{ name = "{wheel.name}", path = "wheels/{wheel.name}", '
            f'hashes = {{ sha256 = "{sha256_of(wheel)}" }} }}]\n'
        )
        built = cli("build", app, "--store", env.store)
        assert built.code == 0, built.err
        result = cli(
            "image", app, "--store", env.store, "--base", env.base, "--tag", "localhost/x:1",
            "--platform", "linux/amd64,linux/arm64", "--oci", tmp_path / "out",
        )  # fmt: skip
        assert result.code != 0
        assert "1 package has no compatible wheel for linux/arm64 (CPython" in result.err
        assert "onlyx86 1.0 (has wheels for other targets; no source)" in result.err
        assert not (tmp_path / "out").exists()


@pytest.mark.container
class TestMultiarchPush:
    def test_the_index_is_pushed_last_and_skopeo_reads_it(self, env):
        """Pushed from a registry base: each image by digest, then the index under the tag;
        `skopeo inspect --raw` shows the index with both platforms."""
        require("skopeo", "docker-registry")
        app = built_app(env, "pushed")
        with serve_registry(env.root / "registry") as registry:
            base = f"{registry.host}/base:multi"
            subprocess.run(
                ["skopeo", "copy", "--all", "--dest-tls-verify=false",
                 f"oci:{env.layout}:multi", f"docker://{base}"],
                check=True, capture_output=True,
            )  # fmt: skip
            ref = f"{registry.host}/app:multi"
            result = cli(
                "image", app, "--store", env.store, "--base", base, "--tag", ref,
                "--platform", "linux/amd64,linux/arm64", "--push", "--json",
            )  # fmt: skip
            assert result.code == 0, result.err
            raw = subprocess.run(
                ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
        index = json.loads(raw)
        assert index["mediaType"] == OCI_INDEX
        assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == [
            "amd64",
            "arm64",
        ]
        pushed = result.json()["outputs"]["push"]
        assert pushed["digest"] == result.json()["digest"]
        assert [i["digest"] for i in pushed["images"]] == [m["digest"] for m in index["manifests"]]
