"""`wheelbarrow image` attaches the image's CycloneDX SBOM as an OCI 1.1 referrer of its
manifest: listed in the OCI layout's index.json, and pushed with the image (the referrers
tag schema on Debian's docker-registry), found again by skopeo, ORAS and our client."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import make_wheel, serve_local_index, sha256_of
from support.apps import HOST_PYTHON, build_cli, cli, make_app
from support.containers import require
from support.multiarch import blob_json, fake_python_image, read_index_json, tag_index, tagged
from support.registry import LocalRegistry, serve_registry

from wheelbarrow.share.oci.mediatypes import OCI_MANIFEST
from wheelbarrow.share.oci.reference import ImageReference
from wheelbarrow.share.oci.referrers import attach, referrers_tag
from wheelbarrow.share.oci.registry import RegistryClient

CDX = "application/vnd.cyclonedx+json"
EMPTY = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CP = "cp" + HOST_PYTHON.replace(".", "")


@dataclass
class Env:
    root: Path
    store: Path
    index_url: str
    base: str  # oci:DIR:base, an amd64 image with an empty Python
    wheel_sha256: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A base layout with a Python (nothing that runs), and an index with alpha 1.0."""
    root = tmp_path_factory.mktemp("referrers")
    wheel = make_wheel(root / "dists", "alpha", "1.0")
    layout = root / "base"
    fake_python_image(layout, "amd64", architecture="amd64", python=HOST_PYTHON)
    fake_python_image(layout, "arm64", architecture="arm64", python=HOST_PYTHON)
    tag_index(layout, "multi", ["amd64", "arm64"])
    with serve_local_index(root / "dists") as index:
        yield Env(
            root=root,
            store=root / "store",
            index_url=index.url,
            base=f"oci:{layout}:amd64",
            wheel_sha256=sha256_of(wheel),
        )


def built_app(env: Env, name: str) -> Path:
    directory = make_app(env.root / name, "alpha==1.0\n", python=HOST_PYTHON)
    (directory / "Procfile").write_text("web: python -c pass\n")
    (directory / "main.py").write_text("VERSION = 1\n")
    assert build_cli(directory, env.store, env.index_url).code == 0
    return directory


def image(env: Env, directory: Path, *args: str | Path, base: str | None = None) -> Any:
    result = cli(
        "image", directory, "--store", env.store, "--base", base or env.base,
        "--tag", "localhost/app:1", "--json", *args,
    )  # fmt: skip
    assert result.code == 0, result.err
    return result.json()


def sbom_entries(layout: Path) -> list[dict[str, Any]]:
    """The untagged entries of the layout's index.json that are CycloneDX referrers."""
    return [
        m
        for m in read_index_json(layout)["manifests"]
        if REF_NAME not in m.get("annotations", {}) and m.get("artifactType") == CDX
    ]


def sbom_document(layout: Path, referrer: dict[str, Any]) -> dict[str, Any]:
    """The SBOM the referrer manifest carries, as JSON."""
    [layer] = blob_json(layout, referrer["digest"])["layers"]
    hexdigest = layer["digest"].removeprefix("sha256:")
    document: dict[str, Any] = json.loads((layout / "blobs" / "sha256" / hexdigest).read_bytes())
    return document


def validate_cyclonedx(document: dict[str, Any]) -> None:
    """The CycloneDX library's strict JSON validator accepts ``document`` (spec 1.6)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    assert error is None, error


def component(document: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in document.get("components", []) if c["name"] == name]
    assert len(found) == 1, [c["name"] for c in document.get("components", [])]
    return found[0]


class TestLayoutReferrer:
    def test_index_json_lists_the_sbom_as_a_referrer_of_the_image(self, env):
        """index.json lists, untagged, a CycloneDX artifact whose subject is the image's
        manifest: the empty config, one layer holding a valid SBOM naming alpha's wheel."""
        directory = built_app(env, "layout")
        out = env.root / "layout-oci"
        report = image(env, directory, "--oci", f"{out}:app")
        image_entry = tagged(out, "app")
        [entry] = sbom_entries(out)
        manifest = blob_json(out, entry["digest"])
        assert manifest["artifactType"] == CDX
        assert manifest["config"]["mediaType"] == EMPTY and manifest["config"]["size"] == 2
        assert (out / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_bytes() == b"{}"
        assert [layer["mediaType"] for layer in manifest["layers"]] == [CDX]
        assert manifest["subject"] == {k: image_entry[k] for k in ("mediaType", "digest", "size")}
        assert image_entry["digest"] == report["digest"]
        assert report["outputs"]["sbom"]["digest"] == entry["digest"]
        document = sbom_document(out, entry)
        validate_cyclonedx(document)
        alpha = component(document, "alpha")
        assert alpha["version"] == "1.0"
        assert {"alg": "SHA-256", "content": env.wheel_sha256} in alpha["hashes"]

    def test_skopeo_still_reads_the_image_by_its_name(self, env):
        """`skopeo inspect --raw oci:DIR:TAG` gives the image's manifest, not the referrer."""
        require("skopeo")
        directory = built_app(env, "skopeo")
        out = env.root / "skopeo-oci"
        report = image(env, directory, "--oci", f"{out}:app")
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{out}:app"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        assert sha256_of_bytes(raw) == report["digest"]
        assert "subject" not in json.loads(raw)

    def test_a_rebuild_replaces_its_own_sbom_and_keeps_another_tools_entry(self, env):
        """After an app change into the same layout and tag, one wheelbarrow SBOM is listed
        (the new image's); an entry another tool added stays."""
        directory = built_app(env, "rebuild")
        out = env.root / "rebuild-oci"
        image(env, directory, "--oci", f"{out}:app")
        index = read_index_json(out)
        theirs = {
            "mediaType": OCI_MANIFEST,
            "digest": "sha256:" + "5" * 64,
            "size": 3,
            "artifactType": "application/vnd.example.signature",
        }
        index["manifests"].append(theirs)
        (out / "index.json").write_text(json.dumps(index))
        (directory / "main.py").write_text("VERSION = 2\n")
        second = image(env, directory, "--oci", f"{out}:app")
        [entry] = sbom_entries(out)
        assert blob_json(out, entry["digest"])["subject"]["digest"] == second["digest"]
        assert theirs in read_index_json(out)["manifests"]

    def test_the_same_inputs_give_the_same_referrer(self, env):
        """Two layouts of the same image get the same SBOM referrer, to the byte."""
        directory = built_app(env, "same")
        first = image(env, directory, "--oci", f"{env.root}/same-1:app")
        second = image(env, directory, "--oci", f"{env.root}/same-2:app")
        assert first["outputs"]["sbom"] == second["outputs"]["sbom"]

    def test_no_sbom_attaches_nothing(self, env):
        """--no-sbom: index.json names the image alone."""
        directory = built_app(env, "none")
        out = env.root / "none-oci"
        report = image(env, directory, "--oci", f"{out}:app", "--no-sbom")
        assert [m["digest"] for m in read_index_json(out)["manifests"]] == [report["digest"]]
        assert "sbom" not in report["outputs"]

    def test_a_docker_archive_alone_makes_no_sbom(self, env):
        """A docker-archive has no place for referrers: no SBOM is made or reported for it."""
        directory = built_app(env, "archive")
        report = image(env, directory, "--docker-archive", env.root / "archive.tar")
        assert "sbom" not in report["outputs"]

    def test_each_platform_of_an_index_has_its_own_sbom(self, env):
        """--platform linux/amd64,linux/arm64: each platform's manifest is the subject of one
        SBOM, whose runtime is the base's Python and whose packages are that lock's."""
        directory = make_app(env.root / "multi", "alpha==1.0\n", python=HOST_PYTHON)
        (directory / "Procfile").write_text("web: python -c pass\n")
        for platform in ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64"):
            result = cli(
                "build", directory, "--store", env.store, "--index-url", env.index_url,
                "--platform", platform,
            )  # fmt: skip
            assert result.code == 0, result.err
        out = env.root / "multi-oci"
        report = image(
            env, directory, "--oci", f"{out}:app", "--platform", "linux/amd64,linux/arm64",
            base=env.base.replace(":amd64", ":multi"),
        )  # fmt: skip
        entries = sbom_entries(out)
        subjects = sorted(blob_json(out, e["digest"])["subject"]["digest"] for e in entries)
        assert subjects == sorted(p["digest"] for p in report["platforms"])
        for entry in entries:
            document = sbom_document(out, entry)
            validate_cyclonedx(document)
            assert component(document, "alpha")["version"] == "1.0"


@pytest.mark.container
class TestRealToolsReadTheLayout:
    def test_umoci_and_podman_load_the_image_beside_its_referrer(self, env):
        """With the SBOM listed in index.json, umoci unpacks the image by its name and
        podman pulls it from the layout (the image's digest, its files)."""
        import shutil
        import tempfile

        from support.containers import Podman

        require("umoci", "podman")
        directory = built_app(env, "tools")
        out = env.root / "tools-oci"
        report = image(env, directory, "--oci", f"{out}:app")
        assert sbom_entries(out)
        bundle = env.root / "tools-bundle"
        subprocess.run(
            ["umoci", "--log", "error", "unpack", "--image", f"{out}:app", str(bundle)],
            check=True, capture_output=True,
        )  # fmt: skip
        assert (bundle / "rootfs" / "app" / "main.py").read_text() == "VERSION = 1\n"
        # A short root: conmon's socket paths under pytest's tmp paths get too long.
        root = Path(tempfile.mkdtemp(prefix="wb-ref-", dir="/tmp"))
        try:
            podman = Podman(root / "podman").setup()
            pulled = podman.run(["pull", "-q", f"oci:{out}:app"], timeout=120).stdout.strip()
            digest = podman.run(["image", "inspect", "--format", "{{.Digest}}", pulled]).stdout
        finally:
            shutil.rmtree(root, ignore_errors=True)
        assert digest.strip() == report["digest"]


def sha256_of_bytes(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def registry(env: Env) -> Iterator[LocalRegistry]:
    require("docker-registry")
    with serve_registry(env.root / "registry") as running:
        yield running


class TestPushedReferrer:
    def test_the_pushed_image_has_its_sbom_in_the_referrers_tag(self, env, registry, tmp_path):
        """Pushed to docker-registry (no referrers API): our client's referrers(), skopeo on
        the sha256-HEX tag and ORAS's client find the SBOM; ORAS pulls it and it parses."""
        require("skopeo")
        import oras.client

        directory = built_app(env, "pushed")
        ref = f"{registry.host}/pushed:1"
        report = image(env, directory, "--push", "--tag", ref)
        digest, sbom = report["digest"], report["outputs"]["sbom"]["digest"]
        with RegistryClient() as client:
            found = client.referrers(ImageReference.parse(ref), digest, CDX)
        assert [r.digest for r in found] == [sbom]
        tag = referrers_tag(digest)
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://{registry.host}/pushed:{tag}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        [listed] = json.loads(raw)["manifests"]
        assert (listed["digest"], listed["artifactType"]) == (sbom, CDX)
        oras_client = oras.client.OrasClient(hostname=registry.host, insecure=True)
        files = oras_client.pull(target=f"{registry.host}/pushed@{sbom}", outdir=str(tmp_path))
        [pulled] = [Path(f) for f in files]
        assert pulled.name == "sbom.cdx.json"
        document = json.loads(pulled.read_bytes())
        validate_cyclonedx(document)
        assert component(document, "alpha")["version"] == "1.0"

    def test_a_second_push_adds_no_entry_and_keeps_another_tools(self, env, registry):
        """Pushing the same image again lists its SBOM once; a signature another tool
        attached in between is still listed."""
        directory = built_app(env, "again")
        ref = f"{registry.host}/again:1"
        first = image(env, directory, "--push", "--tag", ref)
        parsed = ImageReference.parse(ref)
        with RegistryClient() as client:
            signature = other_tools_referrer(client, parsed, first["digest"])
            second = image(env, directory, "--push", "--tag", ref)
            found = client.referrers(parsed, first["digest"])
        assert second["digest"] == first["digest"]
        assert sorted(r.digest for r in found) == sorted(
            [signature, first["outputs"]["sbom"]["digest"]]
        )


class TestPushedThroughTheReferrersApi:
    def test_a_registry_with_the_api_lists_the_sbom_and_gets_no_tag(self, env):
        """Pushed to a registry that answers OCI-Subject: no sha256-HEX tag is written, and
        referrers() reads the SBOM from GET /v2/<name>/referrers/<digest>."""
        from support.referrers_server import serve_referrers_registry

        directory = built_app(env, "api")
        with serve_referrers_registry() as server, RegistryClient() as client:
            ref = f"{server.host}/api:1"
            report = image(env, directory, "--push", "--tag", ref)
            found = client.referrers(ImageReference.parse(ref), report["digest"], CDX)
        sbom = report["outputs"]["sbom"]["digest"]
        assert [r.digest for r in found] == [sbom]
        assert server.state.manifest_puts() == ["1", sbom]
        [attached] = report["outputs"]["push"]["referrers"]
        assert attached == {"digest": sbom, "subject": report["digest"], "referrers_tag": None}


class TestRefusedReferrer:
    def test_a_registry_refusing_the_sbom_fails_saying_the_image_is_there(self, env):
        """A registry that refuses manifests with a subject: the push fails naming the image
        as pushed without its SBOM, and says how to go without it; the image is tagged."""
        from support.referrers_server import serve_referrers_registry

        directory = built_app(env, "refused")
        with serve_referrers_registry(refuse_subjects=True) as server:
            ref = f"{server.host}/refused:1"
            result = cli(
                "image", directory, "--store", env.store, "--base", env.base, "--tag", ref,
                "--push",
            )  # fmt: skip
            tagged_digest = server.state.tags[("refused", "1")]
        assert result.code != 0
        assert f"the image {tagged_digest} was pushed, but not its SBOM" in result.err
        assert "push again with --no-sbom" in result.err
        assert "Traceback" not in result.err


def other_tools_referrer(client: RegistryClient, ref: ImageReference, subject: str) -> str:
    """A signature of ``subject`` attached as another tool would; its manifest's digest."""
    manifest, _, _ = client.get_manifest(ref.with_digest(subject))
    for blob in (b"{}", b"signature"):
        client.push_blob(ref, sha256_of_bytes(blob), blob, len(blob))
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": EMPTY, "digest": sha256_of_bytes(b"{}"), "size": 2},
            "layers": [
                {
                    "mediaType": "application/vnd.example.signature",
                    "digest": sha256_of_bytes(b"signature"),
                    "size": 9,
                }
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(manifest)},
        }
    ).encode()
    return attach(client, ref, body, OCI_MANIFEST).digest


class TestSbomConstants:
    def test_the_media_type_and_file_name_are_the_sboms(self):
        """The referrer's media type and title are those of wheelhouse.sbom's document."""
        from wheelbarrow.ship.oci.referrers import SBOM_FILENAME, SBOM_MEDIA_TYPE
        from wheelbarrow.wheelhouse.sbom import FILENAME, MEDIA_TYPE

        assert (SBOM_MEDIA_TYPE, SBOM_FILENAME) == (MEDIA_TYPE, FILENAME)


class TestKeptDocument:
    def test_reading_a_kept_document_counts_as_using_it(self, tmp_path):
        """An image's SBOM read back from the store (an app-only rebuild) has its time set to
        now, so `store gc --older-than` keeps what images still use."""
        import os
        import time

        from wheelbarrow.ship.oci.referrers import _kept_path, kept_sbom_document
        from wheelbarrow.store.store import Store

        store = Store(tmp_path / "store")
        facts = {"lock_sha256": "a" * 64, "python": "3.11.2", "name": "app:1", "epoch": 0}
        path = _kept_path(store, "k" * 32, facts.pop("lock_sha256"), **facts)
        path.parent.mkdir(parents=True)
        path.write_bytes(b'{"bomFormat": "CycloneDX"}')
        old = time.time() - 30 * 86400
        os.utime(path, (old, old))
        read = kept_sbom_document(store, "k" * 32, lock_sha256="a" * 64, **facts)
        assert read == b'{"bomFormat": "CycloneDX"}'
        assert path.stat().st_mtime > time.time() - 60
