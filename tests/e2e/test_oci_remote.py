"""One wheelhouse for many machines through a real OCI registry (docker-registry on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_c_extension_sdist, serve_local_index
from support.apps import PLATFORM, make_app, run, run_ok
from support.containers import require
from support.registry import LocalRegistry, serve_registry

from wheelbarrow.share.oci.remote import WHEEL_LAYER, WHEELHOUSE_ARTIFACT, wheelhouse_tag
from wheelbarrow.store.store import Store

pytestmark = pytest.mark.slow
WHEELS = sorted(f"{n}-1.0-py3-none-any.whl" for n in ("alpha", "beta", "gamma"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """The registry the image tests use, open, on a free port of 127.0.0.1."""
    with serve_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def _env(tmp_path: Path, **changes: str) -> dict[str, str]:
    """This machine's environment, without a remote and without its own registry logins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELBARROW_")}
    env.update(REGISTRY_AUTH_FILE=str(tmp_path / "no-auth.json"), **changes)
    return env


def _skopeo(command: str, *args: str | Path) -> str:
    require("skopeo")
    done = subprocess.run(
        ["skopeo", command, *map(str, args)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


class TestWheelhouseInARegistry:
    def test_push_then_build_elsewhere_without_an_index(
        self, registry: LocalRegistry, app: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """A wheelhouse pushed to the registry builds a second, empty store with no index
        reachable, which installs and imports it; skopeo sees an artifact of the very wheels."""
        root, dists = app
        remote = f"oci://{registry.host}/team/wheels"
        env = _env(tmp_path)
        first = tmp_path / "store1"
        with serve_local_index(dists) as index:
            built = run_ok(env, "build", root, "--store", first, "-i", index.url,
                        "--platform", PLATFORM, "--remote", remote, "--push")  # fmt: skip
        assert built["status"] == "built"
        other = tmp_path / "machine2" / "app"
        shutil.copytree(root, other)
        second = tmp_path / "store2"
        env2 = _env(tmp_path, WHEELBARROW_REMOTE=remote)
        # The same index URL, its port closed now: any request to it would fail the build.
        pulled = run_ok(env2, "build", other, "--store", second, "-i", index.url,
                     "--platform", PLATFORM)  # fmt: skip
        assert pulled["key"] == built["key"] and sorted(pulled["fetched"]) == WHEELS
        env_dir = tmp_path / "env"
        run_ok(env2, "install", other, "--store", second, "--into", env_dir)
        done = subprocess.run(
            [env_dir / "bin" / "python", "-c", "import alpha, beta, gamma; print(alpha.VALUE)"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.strip() == "alpha"

        image = f"docker://{registry.host}/team/wheels:{wheelhouse_tag(built['key'])}"
        manifest = json.loads(
            (Store(first).wheelhouse(built["key"]) / "wheelhouse.json").read_text()
        )
        raw = json.loads(_skopeo("inspect", "--tls-verify=false", "--raw", image))
        assert raw["artifactType"] == WHEELHOUSE_ARTIFACT
        wheel_layers = [x for x in raw["layers"] if x["mediaType"] == WHEEL_LAYER]
        assert [x["digest"] for x in wheel_layers] == [
            f"sha256:{w['sha256']}" for w in manifest["wheels"]
        ]
        assert sorted(x["annotations"]["org.opencontainers.image.title"] for x in wheel_layers) == (
            WHEELS
        )
        # Any OCI tool copies it whole (to a layout here): its blobs there are the wheels.
        layout = tmp_path / "layout"
        _skopeo("copy", "--src-tls-verify=false", image, f"oci:{layout}:wheelhouse")
        for wheel in manifest["wheels"]:
            copied = layout / "blobs" / "sha256" / wheel["sha256"]
            assert copied.read_bytes() == Store(first).blob(wheel["sha256"]).read_bytes()

    def test_push_and_pull_commands(
        self, registry: LocalRegistry, app: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """`push` uploads a built wheelhouse (again: nothing moves) and `pull` fills an empty
        store from it, each wheel checked against its sha256."""
        root, dists = app
        remote = f"oci://{registry.host}/team/pushed"
        env = _env(tmp_path)
        first = tmp_path / "store1"
        with serve_local_index(dists) as index:
            run_ok(env, "build", root, "--store", first, "-i", index.url, "--platform", PLATFORM)
        pushed = run_ok(env, "push", root, "--store", first, "--remote", remote)
        assert sorted(pushed["moved"]) == WHEELS and pushed["remote"] == remote
        again = run_ok(env, "push", root, "--store", first, "--remote", remote)
        assert again["moved"] == [] and again["present"] == 3
        second = tmp_path / "store2"
        pulled = run_ok(env, "pull", root, "--store", second, "--remote", remote)
        assert sorted(pulled["moved"]) == WHEELS and pulled["key"] == pushed["key"]
        missing = run(env, "pull", root, "--store", tmp_path / "s3", "--remote",
                       f"oci://{registry.host}/team/empty")  # fmt: skip
        assert missing.returncode != 0 and "has no wheelhouse" in missing.stderr

    def test_oras_pulls_the_wheelhouse_and_pip_installs_it(
        self, registry: LocalRegistry, app: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """ORAS's own client pulls a pushed wheelhouse as its wheels under their file names (and
        wheelhouse.json), and pip installs the app's packages from them with no index."""
        import oras.client

        root, dists = app
        remote = f"oci://{registry.host}/team/for-oras"
        env = _env(tmp_path)
        with serve_local_index(dists) as index:
            built = run_ok(env, "build", root, "--store", tmp_path / "store", "-i", index.url,
                        "--platform", PLATFORM, "--remote", remote, "--push")  # fmt: skip
        client = oras.client.OrasClient(hostname=registry.host, insecure=True)
        pulled = tmp_path / "pulled"
        target = f"{registry.host}/team/for-oras:{wheelhouse_tag(built['key'])}"
        files = client.pull(target=target, outdir=str(pulled))
        assert sorted(Path(f).name for f in files) == [*WHEELS, "wheelhouse.json"]
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
             pulled, "--target", tmp_path / "site", "gamma"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert (tmp_path / "site" / "alpha" / "__init__.py").is_file()


class TestSourceBuildsInARegistry:
    def test_built_once_reused_from_the_registry(
        self, registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """A C extension built and pushed on one machine is reused by its build key on another
        with no index reachable; its record is an artifact tagged by both parts of the key, whose
        first layer is the very wheel."""
        remote = f"oci://{registry.host}/team/builds"
        dists = tmp_path / "dists"
        make_c_extension_sdist(dists)
        first = make_app(tmp_path / "app", "cext==1.0\n")
        env = _env(tmp_path)
        with serve_local_index(dists) as index:
            built = run_ok(env, "build", first, "--store", tmp_path / "storeA", "-i", index.url,
                        "--platform", PLATFORM, "--remote", remote, "--push")  # fmt: skip
        (made,) = built["built"]
        # Another app with the same package (so another wheelhouse key), on an empty store.
        other = tmp_path / "machine2" / "app"
        shutil.copytree(first, other)
        (other / "wheelbarrow.toml").write_text('[packages.unrelated]\nenv = { X = "1" }\n')
        fetched = run_ok(_env(tmp_path, WHEELBARROW_REMOTE=remote), "build", other, "--store",
                      tmp_path / "storeB", "-i", index.url, "--platform", PLATFORM)  # fmt: skip
        assert fetched["key"] != built["key"]
        (reused,) = fetched["built"]
        assert (reused["reason"], reused["remote"]) == ("reused from the remote store", remote)
        assert reused["wheel"] == made["wheel"]

        repository = f"docker://{registry.host}/team/builds"
        tags = json.loads(_skopeo("list-tags", "--tls-verify=false", repository))["Tags"]
        (tag,) = (t for t in tags if t.startswith("build-"))
        raw = json.loads(_skopeo("inspect", "--tls-verify=false", "--raw", f"{repository}:{tag}"))
        wheel = raw["layers"][0]
        assert wheel["annotations"]["org.opencontainers.image.title"] == made["wheel"]
        manifest = json.loads(
            (Store(tmp_path / "storeA").wheelhouse(built["key"]) / "wheelhouse.json").read_text()
        )
        assert wheel["digest"] == f"sha256:{manifest['wheels'][0]['sha256']}"
