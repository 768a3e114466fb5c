"""`wheelbarrow image`: an app's OCI image on a real base, run by podman, pushed to a registry."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import HOST_PYTHON, build_cli, cli, make_app
from support.containers import Podman, require
from support.net import free_port, wait_for_json
from support.registry import serve_registry

pytestmark = [pytest.mark.container, pytest.mark.slow]

ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"

# A web app with no dependency beyond the standard library, in a wheel of its own,
# so that these tests need no package index beyond the one they serve.
TINYWEB = """\
import json, os
from wsgiref.simple_server import make_server

def app(environ, start_response):
    body = json.dumps({"hello": "world", "user": os.getuid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

def main():
    host = os.environ.get("BIND_ADDRESS", "0.0.0.0")
    make_server(host, int(os.environ.get("PORT", "8080")), app).serve_forever()
"""


@dataclass
class Env:
    podman: Podman
    base: str  # oci:DIR:TAG
    store: Path
    index_url: str
    root: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, debian_base: tuple[Podman, str]) -> Iterator[Env]:
    """The debootstrapped base as an OCI layout, and an index with the app's wheel."""
    require("skopeo")
    from support import serve_local_index

    root = tmp_path_factory.mktemp("image")
    podman, image = debian_base
    layout = root / "base-oci"
    subprocess.run(
        ["skopeo", "copy", f"containers-storage:{image}", f"oci:{layout}:base"],
        env=podman.env,
        check=True,
        capture_output=True,
    )
    dists = root / "dists"
    make_wheel(
        dists,
        "tinyweb",
        "1.0",
        files={
            "tinyweb/__init__.py": TINYWEB,
            "tinyweb/__main__.py": "from tinyweb import main\nmain()\n",
        },
    )
    with serve_local_index(dists) as index:
        yield Env(
            podman=podman,
            base=f"oci:{layout}:base",
            store=root / "store",
            index_url=index.url,
            root=root,
        )


def app(env: Env, name: str) -> Path:
    """A built app using tinyweb, with a Procfile."""
    directory = make_app(env.root / name, "tinyweb==1.0\n", python=HOST_PYTHON)
    (directory / "Procfile").write_text("web: python -m tinyweb\n")
    (directory / "main.py").write_text("VERSION = 1\n")
    assert build_cli(directory, env.store, env.index_url).code == 0
    return directory


def image(env: Env, directory: Path, *args: str) -> dict[str, object]:
    result = cli("image", directory, "--store", env.store, "--base", env.base, "--json", *args)
    assert result.code == 0, result.err
    report: dict[str, object] = result.json()
    return report


def serve_and_get(podman: Podman, ref: str) -> dict[str, object]:
    """Run the image's default command on 127.0.0.1 and GET / from it."""
    options = ["--tls-verify=false"] if ref.startswith("127.") else []
    with podman.serving(ref, options=options) as port:
        answer: dict[str, object] = wait_for_json(
            f"http://127.0.0.1:{port}/", diagnose=lambda: podman.logs(port)
        )
    return answer


class TestImage:
    def test_oci_layout_image_runs_as_non_root_and_answers(self, env):
        """The image's web process answers, as a non-root user; skopeo accepts the layout."""
        directory = app(env, "one")
        out = env.root / "out-oci"
        report = image(env, directory, "--tag", "localhost/one:1", "--oci", f"{out}:one")
        inspected = json.loads(
            subprocess.run(
                ["skopeo", "inspect", f"oci:{out}:one"],
                env=env.podman.env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert len(inspected["Layers"]) == 3  # the base's one, the environment, the app
        assert inspected["Labels"]["io.wheelbarrow.lock.resolve.sha256"]
        answer = serve_and_get(env.podman, f"oci:{out}:one")
        assert answer["hello"] == "world"
        assert answer["user"] == 10001
        assert report["python"] == f"/usr/bin/python{HOST_PYTHON}"

    def test_same_inputs_give_the_same_digest(self, env):
        """Building twice gives byte-identical images; the environment layer is reused."""
        directory = app(env, "repro")
        first = image(env, directory, "--tag", "localhost/r:1", "--oci", f"{env.root}/r1:r")
        second = image(env, directory, "--tag", "localhost/r:1", "--oci", f"{env.root}/r2:r")
        assert first["digest"] == second["digest"]
        assert second["env_layer"]["reused"] is True  # type: ignore[index]

    def test_app_change_keeps_the_environment_layer(self, env):
        """Changing only the app's code leaves the environment layer's digest as it was."""
        directory = app(env, "code")
        first = image(env, directory, "--tag", "localhost/c:1", "--oci", f"{env.root}/c1:c")
        (directory / "main.py").write_text("VERSION = 2\n")
        second = image(env, directory, "--tag", "localhost/c:2", "--oci", f"{env.root}/c2:c")
        assert first["env_layer"]["digest"] == second["env_layer"]["digest"]  # type: ignore[index]
        assert first["app_layer"]["digest"] != second["app_layer"]["digest"]  # type: ignore[index]
        assert first["digest"] != second["digest"]

    def test_zstd_image_runs_and_skopeo_shows_zstd_layers(self, env):
        """--compression zstd: skopeo shows both new layers as tar+zstd; podman runs the image."""
        directory = app(env, "zstd")
        out = env.root / "zstd-oci"
        report = image(
            env, directory, "--tag", "localhost/z:1", "--oci", f"{out}:z", "--compression", "zstd"
        )
        assert report["compression"]["media_type"] == ZSTD_LAYER  # type: ignore[index]
        raw = json.loads(
            subprocess.run(
                ["skopeo", "inspect", "--raw", f"oci:{out}:z"],
                env=env.podman.env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        types = [layer["mediaType"] for layer in raw["layers"]]
        assert types[-2:] == [ZSTD_LAYER, ZSTD_LAYER]
        assert types[0] != ZSTD_LAYER  # the base's layer, untouched
        assert serve_and_get(env.podman, f"oci:{out}:z")["hello"] == "world"

    @pytest.mark.parametrize("compression", ["gzip", "zstd"])
    def test_two_cold_builds_give_the_same_digest(self, env, compression):
        """Built twice from an empty store, the image is the same to the byte (gzip and zstd)."""
        directory = app(env, f"cold-{compression}")
        store = env.root / f"cold-store-{compression}"
        digests = []
        for run in ("a", "b"):
            shutil.rmtree(store, ignore_errors=True)
            assert build_cli(directory, store, env.index_url).code == 0
            result = cli(
                "image", directory, "--store", store, "--base", env.base, "--json",
                "--tag", "localhost/cold:1", "--oci", f"{env.root}/cold-{compression}-{run}:c",
                "--compression", compression,
            )  # fmt: skip
            assert result.code == 0, result.err
            assert result.json()["env_layer"]["reused"] is False
            digests.append(result.json()["digest"])
        assert digests[0] == digests[1]

    def test_layout_shares_the_layers_files(self, env):
        """The OCI layout's layer files are the store's (linked, not copied) where they can be."""
        directory = app(env, "linked")
        out = env.root / "linked-oci"
        report = image(env, directory, "--tag", "localhost/l:1", "--oci", f"{out}:l")
        digest = report["env_layer"]["digest"].removeprefix("sha256:")  # type: ignore[index]
        in_layout = out / "blobs" / "sha256" / digest
        in_store = env.store / "blobs" / "sha256" / digest[:2] / digest
        assert in_layout.read_bytes() == in_store.read_bytes()
        # A hard link where the filesystem has no reflinks (ext4, tmpfs, overlayfs).
        assert in_layout.samefile(in_store) or reflinks(out)

    def test_docker_archive_loads_into_podman(self, env):
        """The docker-archive output is what `podman load` and skopeo accept."""
        directory = app(env, "archive")
        archive = env.root / "app.tar"
        image(env, directory, "--tag", "localhost/archive:1", "--docker-archive", str(archive))
        subprocess.run(
            ["skopeo", "inspect", f"docker-archive:{archive}"],
            env=env.podman.env,
            check=True,
            capture_output=True,
        )
        loaded = env.podman.run(["load", "-i", str(archive)])
        assert "localhost/archive:1" in loaded.stdout + loaded.stderr

    def test_push_pull_run_and_push_only_what_changed(self, env):
        """Pushed, pulled and run by podman; after a code change only the app layer goes up."""
        directory = app(env, "pushed")
        with serve_registry(env.root / "registry") as registry:
            ref = f"{registry.host}/pushed:1"
            first = image(env, directory, "--tag", ref, "--push")
            push = first["outputs"]["push"]  # type: ignore[index]
            assert len(push["uploaded"]) == 3 and push["skipped"] == []
            subprocess.run(
                ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                env=env.podman.env,
                check=True,
                capture_output=True,
            )
            env.podman.run(["pull", "--tls-verify=false", ref])
            assert serve_and_get(env.podman, ref)["hello"] == "world"
            (directory / "main.py").write_text("VERSION = 3\n")
            second = image(env, directory, "--tag", f"{registry.host}/pushed:2", "--push")
            again = second["outputs"]["push"]  # type: ignore[index]
            assert again["uploaded"] == [second["app_layer"]["digest"]]  # type: ignore[index]
            assert len(again["skipped"]) == 2


def reflinks(directory: Path) -> bool:
    """Whether the filesystem of ``directory`` clones files (FICLONE), as Btrfs and XFS do."""
    import fcntl

    source, clone = directory / ".reflink-probe", directory / ".reflink-clone"
    source.write_bytes(b"probe")
    try:
        with source.open("rb") as src, clone.open("wb") as dst:
            fcntl.ioctl(dst.fileno(), 0x40049409, src.fileno())
        return True
    except OSError:
        return False
    finally:
        source.unlink()
        clone.unlink(missing_ok=True)


def fake_base(directory: Path, files: list[str]) -> str:
    """An OCI layout at ``directory`` holding one layer of empty ``files``: ``oci:DIR:base``."""
    from wheelbarrow.ship.oci.append import append_layers, scratch_config
    from wheelbarrow.ship.oci.layer import RegularFile, write_layer
    from wheelbarrow.ship.oci.layout import write_oci_layout

    directory.mkdir(parents=True)
    layer = write_layer([RegularFile(path=f, data=b"") for f in files], directory)
    docs = append_layers(scratch_config(), None, [layer])
    write_oci_layout(
        directory / "layout",
        manifest=docs.manifest,
        config=docs.config,
        blobs={layer.digest: layer.path},
        ref_name="base",
    )
    return f"oci:{directory}/layout:base"


class TestImageErrors:
    def test_base_without_python_is_refused(self, env, tmp_path):
        """A base image with no Python is a clear error naming the image."""
        base = fake_base(tmp_path / "bare", ["/etc/motd"])
        result = cli(
            "image",
            app(env, "nopython"),
            "--store",
            env.store,
            "--base",
            base,
            "--tag",
            "localhost/x:1",
            "--oci",
            f"{tmp_path}/out:x",
        )
        assert result.code == 2
        assert "the base image has no Python" in result.err
        assert not (tmp_path / "out").exists()

    def test_base_with_another_python_is_refused(self, env, tmp_path):
        """A base whose Python differs from the lock's target names both versions."""
        base = fake_base(tmp_path / "other", ["/usr/bin/python3.99", "/usr/lib/python3.99/os.py"])
        result = cli(
            "image",
            app(env, "otherpython"),
            "--store",
            env.store,
            "--base",
            base,
            "--tag",
            "localhost/x:1",
            "--oci",
            f"{tmp_path}/out:x",
        )
        assert result.code == 2
        assert "has Python 3.99" in result.err and f"targets Python {HOST_PYTHON}" in result.err
        assert not (tmp_path / "out").exists()

    def test_unreachable_registry(self, env):
        """A registry nobody listens on is named in the error."""
        directory = app(env, "unreachable")
        port = free_port()
        result = cli(
            "image",
            directory,
            "--store",
            env.store,
            "--base",
            env.base,
            "--tag",
            f"127.0.0.1:{port}/x:1",
            "--push",
        )
        assert result.code != 0
        assert f"127.0.0.1:{port}" in result.err

    def test_malformed_reference(self, env):
        """A tag that is not an image reference is refused before anything is built."""
        directory = app(env, "badref")
        result = cli(
            "image",
            directory,
            "--store",
            env.store,
            "--base",
            env.base,
            "--tag",
            "Bad Ref!!",
            "--push",
        )
        assert result.code == 2
        assert "Bad Ref!!" in result.err


class TestNothingHalfPushedIsTagged:
    def test_a_push_that_fails_midway_leaves_no_tag(self, env, monkeypatch):
        """When a blob upload fails, the manifest is never put: the tag does not exist."""
        from wheelbarrow._core.errors import RegistryError
        from wheelbarrow.share.oci.registry import RegistryClient

        directory = app(env, "halfway")
        calls = {"blobs": 0}
        original = RegistryClient.push_blob

        def failing_push_blob(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls["blobs"] += 1
            if calls["blobs"] == 2:
                raise RegistryError("the connection dropped (simulated)")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(RegistryClient, "push_blob", failing_push_blob)
        with serve_registry(env.root / "registry-halfway") as registry:
            ref = f"{registry.host}/halfway:1"
            result = cli(
                "image", directory, "--store", env.store, "--base", env.base, "--tag", ref, "--push"
            )
            assert result.code != 0
            assert "the connection dropped (simulated)" in result.err
            assert calls["blobs"] == 2  # one layer went up, then the failure
            # The layer that went up is there, but no manifest answers to the tag.
            with pytest.raises(urllib.error.HTTPError) as missing:
                urllib.request.urlopen(f"http://{registry.host}/v2/halfway/manifests/1")
            missing.value.close()
            assert missing.value.code == 404
