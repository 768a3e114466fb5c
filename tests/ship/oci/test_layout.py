"""Tests for wheelbarrow.ship.oci.image and .layout: appending layers, OCI layouts, docker archives.

The last class checks the results with the real tools: skopeo, umoci and podman
(with a base image that podman imported and skopeo exported as an OCI layout).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.containers import Podman, require

from wheelbarrow._core.errors import BlobNotFoundError, ImageError, ImageFormatError
from wheelbarrow.share.oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)
from wheelbarrow.ship.oci.append import (
    ConfigChanges,
    ImageDocuments,
    append_layers,
    scratch_config,
)
from wheelbarrow.ship.oci.blobs import chain_blobs
from wheelbarrow.ship.oci.compression import layer_compression
from wheelbarrow.ship.oci.docker_archive import write_docker_archive
from wheelbarrow.ship.oci.image import Descriptor, ImageConfig, Manifest, sha256_digest
from wheelbarrow.ship.oci.layer import (
    Directory,
    HardLink,
    LayerBlob,
    RegularFile,
    Symlink,
    write_layer,
)
from wheelbarrow.ship.oci.layout import (
    REF_NAME,
    layout_blobs,
    read_oci_layout,
    write_oci_layout,
)

BASE_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-01-01T00:00:00Z",
    "config": {
        "Env": ["PATH=/usr/bin:/bin", "LANG=C", "KEEP=1"],
        "Cmd": ["/bin/sh"],
        "Labels": {"base": "yes", "shared": "base"},
        "StopSignal": "SIGTERM",
    },
    "rootfs": {"type": "layers", "diff_ids": []},
    "history": [{"created_by": "base layer"}],
    "container_config": {"Hostname": "builder"},
}


def blob_bytes(path: Path, digest: str) -> bytes:
    return (path / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def make_base(layout: Path, *, ref_name: str = "base") -> LayerBlob:
    """A one-layer base image written by our own code, tagged ``ref_name`` in ``layout``."""
    layer = write_layer(
        [
            RegularFile(path="/etc/os-release", data=b"ID=test\n"),
            Directory(path="/tmp", mode=0o1777),
        ],
        layout / "blobs",
        mtime=0,
    )
    config = dict(BASE_CONFIG, rootfs={"type": "layers", "diff_ids": [layer.diff_id]})
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256_digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER_GZIP,
                "digest": layer.digest,
                "size": layer.size,
                "annotations": {"org.example.layer": "base"},
                "urls": ["https://example.invalid/layer"],
            }
        ],
    }
    write_oci_layout(
        layout, manifest=json.dumps(manifest).encode(), config=config_bytes, ref_name=ref_name
    )
    return layer


def app_layer(tmp_path: Path, out_dir: Path, *, mtime: int = 0) -> LayerBlob:
    source = tmp_path / "main.py"
    source.write_text("print('hello')\n")
    return write_layer(
        [
            Directory(path="/app", uid=1000, gid=1000),
            RegularFile(path="/app/main.py", source=source, uid=1000, gid=1000),
            HardLink(path="/app/same.py", target="/app/main.py"),
            Symlink(path="/usr/local/bin/app", target="/app/main.py"),
        ],
        out_dir,
        mtime=mtime,
    )


CHANGES = ConfigChanges(
    env={"LANG": "C.UTF-8", "APP_HOME": "/app"},
    entrypoint=["/app/main.py"],
    working_dir="/app",
    user="1000:1000",
    labels={"shared": "ours", "org.opencontainers.image.title": "app"},
    exposed_ports=["8000/tcp"],
)


def build_app(
    layout: Path, tmp_path: Path, *, created: int = 0
) -> tuple[ImageDocuments, LayerBlob]:
    """Read the base from ``layout``, append the app layer, and tag the result ``app``."""
    base = read_oci_layout(layout, "base")
    layer = app_layer(tmp_path, layout / "blobs", mtime=created)
    docs = append_layers(
        json.loads(base.config),
        Manifest.from_json(base.manifest),
        [layer],
        config_changes=CHANGES,
        created=created,
        created_by=["wheelbarrow: app"],
    )
    write_oci_layout(layout, manifest=docs.manifest, config=docs.config, ref_name="app")
    return docs, layer


class TestAppendLayers:
    @pytest.fixture
    def built(self, tmp_path: Path) -> tuple[Manifest, dict[str, Any], LayerBlob, LayerBlob]:
        base_layer = make_base(tmp_path / "layout")
        docs, layer = build_app(tmp_path / "layout", tmp_path, created=1_700_000_000)
        return Manifest.from_json(docs.manifest), json.loads(docs.config), base_layer, layer

    def test_base_layers_are_kept_untouched(self, built: Any) -> None:
        """The base's layer descriptor comes through as it was, unknown fields included."""
        manifest, _, base_layer, layer = built
        assert manifest.layers[0].to_dict() == {
            "mediaType": OCI_LAYER_GZIP,
            "digest": base_layer.digest,
            "size": base_layer.size,
            "annotations": {"org.example.layer": "base"},
            "urls": ["https://example.invalid/layer"],
        }
        assert manifest.layers[1] == Descriptor(
            media_type=OCI_LAYER_GZIP, digest=layer.digest, size=layer.size
        )

    def test_config_extends_rootfs_and_history(self, built: Any) -> None:
        """diff_ids and history gain one entry per new layer, dated at the given epoch."""
        manifest, config, base_layer, layer = built
        assert config["rootfs"] == {
            "type": "layers",
            "diff_ids": [base_layer.diff_id, layer.diff_id],
        }
        assert config["history"] == [
            {"created_by": "base layer"},
            {"created": "2023-11-14T22:13:20Z", "created_by": "wheelbarrow: app"},
        ]
        assert config["created"] == "2023-11-14T22:13:20Z"
        assert manifest.config.media_type == OCI_CONFIG

    def test_run_settings_are_merged(self, built: Any) -> None:
        """Env merges by name (ours win, in the base's order), labels merge, others are set."""
        _, config, _, _ = built
        assert config["config"] == {
            "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "KEEP=1", "APP_HOME=/app"],
            "Entrypoint": ["/app/main.py"],
            "WorkingDir": "/app",
            "User": "1000:1000",
            "Labels": {"base": "yes", "shared": "ours", "org.opencontainers.image.title": "app"},
            "ExposedPorts": {"8000/tcp": {}},
            "StopSignal": "SIGTERM",
        }
        assert config["container_config"] == {"Hostname": "builder"}

    def test_entrypoint_alone_drops_the_base_cmd(self) -> None:
        """As in a Dockerfile: a new ENTRYPOINT resets an inherited CMD; an explicit one stays."""
        base = ImageConfig.from_dict(BASE_CONFIG)
        assert ConfigChanges(entrypoint=["/x"]).apply(base.config).cmd is None
        assert ConfigChanges(entrypoint=["/x"], cmd=["-v"]).apply(base.config).cmd == ("-v",)
        assert ConfigChanges().apply(base.config).cmd == ("/bin/sh",)

    def test_documents_are_canonical_json(self, built: Any, tmp_path: Path) -> None:
        """Config and manifest are compact sorted-key JSON, so re-serialising changes nothing."""
        docs, _ = build_app(tmp_path / "layout", tmp_path, created=1_700_000_000)
        for data in docs:
            assert (
                data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
            )
        assert Manifest.from_json(docs.manifest).to_json() == docs.manifest
        assert ImageConfig.from_json(docs.config).to_json() == docs.config

    def test_docker_base_gives_a_docker_manifest(self, tmp_path: Path) -> None:
        """A Docker v2 base keeps its format: Docker media types for the new config and layer."""
        layer = app_layer(tmp_path, tmp_path / "blobs")
        base_config = dict(
            BASE_CONFIG, rootfs={"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
        )
        base_manifest = Manifest.from_json(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": DOCKER_MANIFEST,
                    "config": {
                        "mediaType": DOCKER_CONFIG,
                        "digest": "sha256:" + "c" * 64,
                        "size": 9,
                    },
                    "layers": [
                        {"mediaType": DOCKER_LAYER_GZIP, "digest": "sha256:" + "b" * 64, "size": 5}
                    ],
                }
            ).encode()
        )
        docs = append_layers(base_config, base_manifest, [layer])
        manifest = json.loads(docs.manifest)
        assert manifest["mediaType"] == DOCKER_MANIFEST
        assert manifest["config"]["mediaType"] == DOCKER_CONFIG
        assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER_GZIP] * 2

    def test_zstd_layers_keep_their_media_type(self, tmp_path: Path) -> None:
        """A zstd layer is listed as tar+zstd in an OCI manifest, next to the base's gzip one."""
        make_base(tmp_path / "layout")
        base = read_oci_layout(tmp_path / "layout", "base")
        source = tmp_path / "main.py"
        source.write_text("print('hello')\n")
        layer = write_layer(
            [RegularFile(path="/app/main.py", source=source)],
            tmp_path / "blobs",
            compression=layer_compression("zstd"),
        )
        docs = append_layers(json.loads(base.config), Manifest.from_json(base.manifest), [layer])
        types = [d.media_type for d in Manifest.from_json(docs.manifest).layers]
        assert types == [OCI_LAYER_GZIP, "application/vnd.oci.image.layer.v1.tar+zstd"]

    def test_zstd_layers_on_a_docker_base_are_refused(self, tmp_path: Path) -> None:
        """Docker v2 manifests have no zstd layer type: the error says what to use instead."""
        layer = write_layer(
            [RegularFile(path="/a", data=b"a")], tmp_path, compression=layer_compression("zstd")
        )
        base_manifest = Manifest(
            media_type=DOCKER_MANIFEST, config=Descriptor.of(b"{}", DOCKER_CONFIG)
        )
        with pytest.raises(ImageFormatError, match="Docker v2 manifest has no media type") as e:
            append_layers(BASE_CONFIG, base_manifest, [layer])
        assert e.value.hint is not None and "--compression gzip" in e.value.hint

    def test_from_scratch(self, tmp_path: Path) -> None:
        """With no base manifest the image is the new layers alone, an OCI image."""
        layer = app_layer(tmp_path, tmp_path / "blobs")
        docs = append_layers(scratch_config(architecture="arm64"), None, [layer])
        config = json.loads(docs.config)
        assert config["architecture"] == "arm64"
        assert config["rootfs"]["diff_ids"] == [layer.diff_id]
        assert Manifest.from_json(docs.manifest).layers[0].digest == layer.digest

    def test_config_and_manifest_must_agree(self, tmp_path: Path) -> None:
        """A base whose config lists another number of layers than its manifest is refused."""
        layer = app_layer(tmp_path, tmp_path / "blobs")
        with pytest.raises(ImageFormatError, match="lists 0 layer"):
            append_layers(
                BASE_CONFIG,
                Manifest(
                    config=Descriptor.of(b"{}", OCI_CONFIG), layers=(layer_descriptor(layer),)
                ),
                [],
            )

    def test_an_index_is_not_a_manifest(self) -> None:
        """Parsing an index as a manifest says so, with what to do."""
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [],
        }
        with pytest.raises(ImageFormatError, match="is an image index") as raised:
            Manifest.from_json(json.dumps(index).encode())
        assert raised.value.hint == "pick one platform's manifest from the index"

    @pytest.mark.parametrize(
        ("document", "message"),
        [
            (b"not json", "is not JSON"),
            (
                b'{"schemaVersion": 1, "mediaType": "' + OCI_MANIFEST.encode() + b'"}',
                "schemaVersion 1",
            ),
            (b'{"schemaVersion": 2, "config": {}, "layers": []}', "config: 'size' must be"),
            (
                b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "md5:00", "size": 1},'
                b' "layers": []}',
                "not supported",
            ),
        ],
    )
    def test_malformed_manifests_are_refused(self, document: bytes, message: str) -> None:
        """Bad JSON, schema versions, missing fields and unknown digest algorithms are errors."""
        with pytest.raises(ImageFormatError, match=message):
            Manifest.from_json(document)


def layer_descriptor(layer: LayerBlob) -> Descriptor:
    return Descriptor(media_type=layer.media_type, digest=layer.digest, size=layer.size)


class _OpenCounter:
    """Records the files opened under ``root`` while active (through an audit hook)."""

    installed: _OpenCounter | None = None

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.opened: list[str] = []

    @classmethod
    def hook(cls, event: str, args: tuple[Any, ...]) -> None:
        counter = cls.installed
        if counter is not None and event == "open" and isinstance(args[0], (str, Path)):
            path = str(args[0])
            if path.startswith(counter.root):
                counter.opened.append(path)


_hook_added = False


@pytest.fixture
def count_opens() -> Iterator[type[_OpenCounter]]:
    """The counter class; set its ``installed`` to count. Audit hooks stay for the process."""
    global _hook_added
    if not _hook_added:
        sys.addaudithook(_OpenCounter.hook)
        _hook_added = True
    yield _OpenCounter
    _OpenCounter.installed = None


class TestOciLayout:
    def test_layout_has_marker_index_and_blobs(self, tmp_path: Path) -> None:
        """oci-layout, index.json with the ref name annotation, and every blob by digest."""
        layout = tmp_path / "layout"
        make_base(layout)
        docs, layer = build_app(layout, tmp_path)
        assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads((layout / "index.json").read_bytes())
        assert index["schemaVersion"] == 2
        app = index["manifests"][-1]
        assert app == {
            "mediaType": OCI_MANIFEST,
            "digest": sha256_digest(docs.manifest),
            "size": len(docs.manifest),
            "annotations": {REF_NAME: "app"},
        }
        for digest in (layer.digest, sha256_digest(docs.config), app["digest"]):
            assert sha256_digest(blob_bytes(layout, digest)) == digest
        assert not [p for p in layout.rglob("*") if p.name.endswith(".tmp")]

    def test_other_refs_stay_and_the_same_ref_is_replaced(self, tmp_path: Path) -> None:
        """Writing ``app`` again replaces it; ``base`` stays in index.json."""
        layout = tmp_path / "layout"
        make_base(layout)
        build_app(layout, tmp_path, created=0)
        docs, _ = build_app(layout, tmp_path, created=1)
        names = [
            m["annotations"][REF_NAME]
            for m in json.loads((layout / "index.json").read_bytes())["manifests"]
        ]
        assert names == ["base", "app"]
        assert read_oci_layout(layout, "app").manifest == docs.manifest

    def test_read_returns_the_documents_written(self, tmp_path: Path) -> None:
        """read_oci_layout gives back the manifest and config bytes, and opens blobs by digest."""
        layout = tmp_path / "layout"
        make_base(layout)
        docs, layer = build_app(layout, tmp_path)
        image = read_oci_layout(layout, "app")
        assert (image.manifest, image.config) == (docs.manifest, docs.config)
        assert image.descriptor.digest == sha256_digest(docs.manifest)
        with image.open_blob(layer.digest) as blob:
            assert blob.read() == layer.path.read_bytes()
        with pytest.raises(BlobNotFoundError):
            image.open_blob("sha256:" + "0" * 64)

    def test_reading_a_base_never_opens_its_layers(
        self, tmp_path: Path, count_opens: type[_OpenCounter]
    ) -> None:
        """Building on a base reads its index, manifest and config, and no layer blob."""
        layout = tmp_path / "layout"
        base_layer = make_base(layout)
        counter = count_opens.installed = _OpenCounter(layout / "blobs")
        build_app(layout, tmp_path)
        count_opens.installed = None
        base = Manifest.from_json(read_oci_layout(layout, "base").manifest)
        opened = {Path(p).name for p in counter.opened}
        assert base.config.digest.removeprefix("sha256:") in opened
        assert base_layer.digest.removeprefix("sha256:") not in opened

    def test_unknown_ref_names_the_ones_there(self, tmp_path: Path) -> None:
        """Asking for a missing ref says which ones the layout has."""
        layout = tmp_path / "layout"
        make_base(layout)
        with pytest.raises(ImageError, match="no image named 'nope'") as raised:
            read_oci_layout(layout, "nope")
        assert raised.value.hint == "it has: base"

    def test_not_a_layout(self, tmp_path: Path) -> None:
        """A directory without oci-layout is refused with a hint."""
        with pytest.raises(ImageError, match="not an OCI image layout"):
            read_oci_layout(tmp_path, "base")

    def test_missing_blobs_are_listed_and_the_index_is_untouched(self, tmp_path: Path) -> None:
        """An image whose layers are neither in the layout nor given is not tagged."""
        base_layout, other = tmp_path / "base", tmp_path / "other"
        base_layer = make_base(base_layout)
        docs, layer = build_app(base_layout, tmp_path)
        with pytest.raises(BlobNotFoundError, match="1 layer blob") as raised:
            write_oci_layout(
                other,
                manifest=docs.manifest,
                config=docs.config,
                blobs={layer.digest: layer.path},
                ref_name="app",
            )
        assert base_layer.digest in str(raised.value)
        assert not (other / "index.json").exists()

    def test_blobs_come_from_another_layout_checked(self, tmp_path: Path) -> None:
        """Writing into a new layout copies the base's blobs from its opener, verifying each."""
        base_layout, other = tmp_path / "base", tmp_path / "other"
        make_base(base_layout)
        docs, _ = build_app(base_layout, tmp_path)
        base = read_oci_layout(base_layout, "base")
        write_oci_layout(
            other, manifest=docs.manifest, config=docs.config, blobs=base.open_blob, ref_name="v1"
        )
        assert read_oci_layout(other, "v1").manifest == docs.manifest
        assert sorted(p.name for p in (other / "blobs" / "sha256").iterdir()) == sorted(
            p.name
            for p in (base_layout / "blobs" / "sha256").iterdir()
            if p.name != base.descriptor.digest.removeprefix("sha256:")
            and p.name != Manifest.from_json(base.manifest).config.digest.removeprefix("sha256:")
        )

    def test_a_blob_with_other_content_is_refused(self, tmp_path: Path) -> None:
        """A source whose bytes do not hash to the digest leaves no blob behind."""
        base_layout = tmp_path / "base"
        make_base(base_layout)
        docs, layer = build_app(base_layout, tmp_path)
        base = read_oci_layout(base_layout, "base")
        bad = {layer.digest: b"not the layer"}
        other = tmp_path / "other"
        with pytest.raises(ImageError, match="has the wrong content"):
            write_oci_layout(
                other,
                manifest=docs.manifest,
                config=docs.config,
                blobs=chain_blobs(bad, base.open_blob),
                ref_name="app",
            )
        assert not (other / "blobs" / "sha256" / layer.digest.removeprefix("sha256:")).exists()
        assert not [p for p in other.rglob("*") if p.name.endswith(".tmp")]

    def test_config_must_be_the_manifests(self, tmp_path: Path) -> None:
        """Passing another config than the manifest names is refused."""
        layout = tmp_path / "layout"
        make_base(layout)
        docs, _ = build_app(layout, tmp_path)
        with pytest.raises(ImageError, match="is not the one the manifest names"):
            write_oci_layout(layout, manifest=docs.manifest, config=b"{}", ref_name="x")

    @pytest.mark.parametrize("ref_name", ["", "a b", "-x", "tag/"])
    def test_bad_ref_names_are_refused(self, tmp_path: Path, ref_name: str) -> None:
        """Ref names follow the grammar of org.opencontainers.image.ref.name."""
        with pytest.raises(ImageFormatError, match="not a valid OCI layout ref name"):
            write_oci_layout(tmp_path, manifest=b"{}", config=b"{}", ref_name=ref_name)

    def test_building_twice_gives_the_same_image(self, tmp_path: Path) -> None:
        """Same base, same files, same epoch: the same manifest digest in two fresh layouts."""
        digests = []
        for name in ("one", "two"):
            make_base(tmp_path / name)
            (tmp_path / name / "src").mkdir()
            docs, _ = build_app(tmp_path / name, tmp_path / name / "src", created=1_700_000_000)
            digests.append(sha256_digest(docs.manifest))
        assert digests[0] == digests[1]


def read_archive(path: Path) -> tuple[list[tarfile.TarInfo], dict[str, bytes]]:
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
        files = {}
        for info in infos:
            if info.isfile():
                extracted = tar.extractfile(info)
                assert extracted is not None
                files[info.name] = extracted.read()
    return infos, files


class TestDockerArchive:
    @pytest.fixture
    def image(self, tmp_path: Path) -> tuple[ImageDocuments, Any]:
        layout = tmp_path / "layout"
        make_base(layout)
        docs, _ = build_app(layout, tmp_path)
        return docs, read_oci_layout(layout, "app").open_blob

    def test_docker_save_format(self, tmp_path: Path, image: Any) -> None:
        """manifest.json names the config and uncompressed <diff_id>/layer.tar files, in order."""
        docs, blobs = image
        archive = tmp_path / "app.tar"
        write_docker_archive(
            archive,
            manifest=docs.manifest,
            config=docs.config,
            blob_source=blobs,
            repo_tag="localhost/app:v1",
        )
        infos, files = read_archive(archive)
        diff_ids = json.loads(docs.config)["rootfs"]["diff_ids"]
        config_name = f"{hashlib.sha256(docs.config).hexdigest()}.json"
        assert json.loads(files["manifest.json"]) == [
            {
                "Config": config_name,
                "RepoTags": ["localhost/app:v1"],
                "Layers": [f"{d.removeprefix('sha256:')}/layer.tar" for d in diff_ids],
            }
        ]
        assert files[config_name] == docs.config
        for diff_id in diff_ids:
            layer_tar = files[f"{diff_id.removeprefix('sha256:')}/layer.tar"]
            assert sha256_digest(layer_tar) == diff_id
            with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tar:
                assert tar.getmembers()
        assert {(i.uid, i.gid, i.mtime, i.uname) for i in infos} == {(0, 0, 0, "")}

    def test_zstd_layers_are_unpacked_into_the_archive(self, tmp_path: Path) -> None:
        """A zstd layer goes into the archive as its plain tar, checked against its diff_id."""
        layout = tmp_path / "layout"
        make_base(layout)
        base = read_oci_layout(layout, "base")
        layer = write_layer(
            [RegularFile(path="/app/main.py", data=b"print('zstd')\n")],
            layout / "blobs",
            compression=layer_compression("zstd"),
        )
        docs = append_layers(json.loads(base.config), Manifest.from_json(base.manifest), [layer])
        archive = tmp_path / "app.tar"
        write_docker_archive(
            archive,
            manifest=docs.manifest,
            config=docs.config,
            blob_source=layout_blobs(layout),
            repo_tag="app:zstd",
        )
        layer_tar = read_archive(archive)[1][f"{layer.diff_id.removeprefix('sha256:')}/layer.tar"]
        with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tar:
            member = tar.extractfile("app/main.py")
            assert member is not None and member.read() == b"print('zstd')\n"

    def test_the_same_image_gives_the_same_file(self, tmp_path: Path, image: Any) -> None:
        """Two archives of one image are byte-identical."""
        docs, blobs = image
        paths = [tmp_path / "a.tar", tmp_path / "b.tar"]
        for path in paths:
            write_docker_archive(
                path,
                manifest=docs.manifest,
                config=docs.config,
                blob_source=blobs,
                repo_tag="app:v1",
            )
        assert paths[0].read_bytes() == paths[1].read_bytes()

    def test_a_tagless_name_gets_latest(self, tmp_path: Path, image: Any) -> None:
        """``app`` is tagged ``app:latest``, as docker would read it."""
        docs, blobs = image
        archive = tmp_path / "app.tar"
        write_docker_archive(
            archive, manifest=docs.manifest, config=docs.config, blob_source=blobs, repo_tag="app"
        )
        assert json.loads(read_archive(archive)[1]["manifest.json"])[0]["RepoTags"] == [
            "app:latest"
        ]

    def test_a_layer_that_does_not_match_its_diff_id_leaves_no_file(
        self, tmp_path: Path, image: Any
    ) -> None:
        """Layers are checked while they are decompressed; a mismatch removes the archive."""
        docs, blobs = image
        manifest = Manifest.from_json(docs.manifest)
        other = gzip.compress(b"\0" * 1024, mtime=0)
        forged = Descriptor(media_type=OCI_LAYER_GZIP, digest=sha256_digest(other), size=len(other))
        swapped = Manifest(
            config=manifest.config,
            layers=(manifest.layers[0], forged),
            media_type=manifest.media_type,
        ).to_json()
        archive = tmp_path / "app.tar"
        with pytest.raises(ImageError, match="does not unpack to the diff_id"):
            write_docker_archive(
                archive,
                manifest=swapped,
                config=docs.config,
                blob_source=chain_blobs({forged.digest: other}, blobs),
                repo_tag="app:v1",
            )
        assert list(tmp_path.glob("*app.tar*")) == []


# Real tools: skopeo, umoci and podman read what we wrote.

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'


class Tools:
    """podman with a private store, a static hello binary, and a base layout podman exported."""

    def __init__(self, root: Path) -> None:
        self.podman = Podman(root / "podman").setup()
        self.hello = root / "hello"
        subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-x", "c", "-o", str(self.hello), "-"],
            input=HELLO_C.encode(),
            check=True,
            capture_output=True,
        )
        rootfs = root / "rootfs.tar"
        with tarfile.open(rootfs, "w") as tar:
            tar.add(self.hello, arcname="hello")
        self.podman.run(["import", str(rootfs), "localhost/wheelbarrow-oci-base:latest"])
        self.base = root / "base"
        self.skopeo(
            "copy",
            "containers-storage:localhost/wheelbarrow-oci-base:latest",
            f"oci:{self.base}:base",
        )

    def skopeo(self, *args: str) -> str:
        done = subprocess.run(
            ["skopeo", *args],
            env=self.podman.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"skopeo {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout


@pytest.fixture(scope="module")
def tools() -> Iterator[Tools]:
    require("podman", "skopeo", "umoci", "runc", "gcc")
    # A short root: under pytest's long tmp paths conmon's socket paths get too
    # long and every `podman run` waits 20 s for conmon's timeout.
    root = Path(tempfile.mkdtemp(prefix="wb-oci-", dir="/tmp"))
    try:
        yield Tools(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.container
class TestWithRealTools:
    @pytest.fixture
    def layout(self, tools: Tools, tmp_path: Path) -> tuple[Path, ImageDocuments, LayerBlob]:
        """The podman-exported base plus a layer: /bin/hi -> /opt/hello, hard-linked twice."""
        layout = tmp_path / "layout"
        shutil.copytree(tools.base, layout)
        base = read_oci_layout(layout, "base")
        layer = write_layer(
            [
                RegularFile(path="/opt/hello", source=tools.hello, mode=0o755),
                HardLink(path="/opt/hello-again", target="/opt/hello"),
                Symlink(path="/bin/hi", target="/opt/hello"),
                Directory(path="/home/app", uid=1000, gid=1000),
                RegularFile(path="/home/app/note", data=b"note\n", uid=1000, gid=1000),
            ],
            layout / "blobs",
            mtime=0,
        )
        docs = append_layers(
            json.loads(base.config),
            Manifest.from_json(base.manifest),
            [layer],
            config_changes=ConfigChanges(
                cmd=["/bin/hi"],
                labels={"org.opencontainers.image.title": "hello"},
                env={"GREETING": "hi"},
            ),
        )
        write_oci_layout(layout, manifest=docs.manifest, config=docs.config, ref_name="app")
        return layout, docs, layer

    def test_skopeo_inspects_the_layout(self, tools: Tools, layout: Any) -> None:
        """skopeo reads the layout: the base layer and ours, our label and env."""
        path, docs, layer = layout
        inspected = json.loads(tools.skopeo("inspect", f"oci:{path}:app"))
        base = Manifest.from_json(read_oci_layout(path, "base").manifest)
        assert inspected["Digest"] == sha256_digest(docs.manifest)
        assert inspected["Layers"] == [base.layers[0].digest, layer.digest]
        assert inspected["Labels"] == {"org.opencontainers.image.title": "hello"}
        assert "GREETING=hi" in inspected["Env"]

    def test_zstd_layer_is_inspected_and_run(
        self, tools: Tools, layout: Any, tmp_path: Path
    ) -> None:
        """skopeo shows a zstd layer's media type and podman runs the image that has it."""
        path, _, _ = layout
        base = read_oci_layout(path, "base")
        layer = write_layer(
            [RegularFile(path="/opt/hello", source=tools.hello, mode=0o755)],
            path / "blobs",
            compression=layer_compression("zstd"),
        )
        docs = append_layers(
            json.loads(base.config),
            Manifest.from_json(base.manifest),
            [layer],
            config_changes=ConfigChanges(cmd=["/opt/hello"]),
        )
        write_oci_layout(path, manifest=docs.manifest, config=docs.config, ref_name="zstd")
        raw = json.loads(tools.skopeo("inspect", "--raw", f"oci:{path}:zstd"))
        assert raw["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
        inspected = json.loads(tools.skopeo("inspect", f"oci:{path}:zstd"))
        assert inspected["Layers"][-1] == layer.digest
        done = tools.podman.run(["run", "--rm", "--network=none", f"oci:{path}:zstd"], timeout=60)
        assert done.stdout == "hello\n"

    def test_podman_runs_the_layout(self, tools: Tools, layout: Any) -> None:
        """podman runs the image straight from the layout, through our symlink, and by its Cmd."""
        path, _, _ = layout
        for command in (["/bin/hi"], []):
            done = tools.podman.run(
                ["run", "--rm", "--network=none", f"oci:{path}:app", *command], timeout=60
            )
            assert done.stdout == "hello\n"

    def test_umoci_unpacks_links_and_owners(
        self, tools: Tools, layout: Any, tmp_path: Path
    ) -> None:
        """umoci unpacks our layer: one inode for the hard links, the symlink, uid 1000."""
        path, _, _ = layout
        bundle = tmp_path / "bundle"
        subprocess.run(
            ["umoci", "--log", "error", "unpack", "--image", f"{path}:app", str(bundle)],
            check=True,
            capture_output=True,
        )
        rootfs = bundle / "rootfs"
        assert (rootfs / "opt" / "hello").stat().st_ino == (
            rootfs / "opt" / "hello-again"
        ).stat().st_ino
        assert (rootfs / "bin" / "hi").readlink() == Path("/opt/hello")
        assert (rootfs / "home" / "app" / "note").stat().st_uid == 1000
        assert (rootfs / "hello").read_bytes() == tools.hello.read_bytes()

    def test_docker_archive_is_read_by_skopeo_and_podman(
        self, tools: Tools, layout: Any, tmp_path: Path
    ) -> None:
        """skopeo inspects the docker archive; podman loads it under its tag and runs it."""
        path, docs, _ = layout
        archive = tmp_path / "app.tar"
        write_docker_archive(
            archive,
            manifest=docs.manifest,
            config=docs.config,
            blob_source=read_oci_layout(path, "app").open_blob,
            repo_tag="localhost/wheelbarrow-oci-app:v1",
        )
        inspected = json.loads(tools.skopeo("inspect", f"docker-archive:{archive}"))
        assert inspected["Layers"] == json.loads(docs.config)["rootfs"]["diff_ids"]
        assert inspected["Labels"] == {"org.opencontainers.image.title": "hello"}
        loaded = tools.podman.run(["load", "-i", str(archive)])
        assert "localhost/wheelbarrow-oci-app:v1" in loaded.stdout
        image_id = tools.podman.run(
            ["image", "inspect", "--format", "{{.Id}}", "localhost/wheelbarrow-oci-app:v1"]
        )
        assert image_id.stdout.strip() == hashlib.sha256(docs.config).hexdigest()
        done = tools.podman.run(
            ["run", "--rm", "--network=none", "localhost/wheelbarrow-oci-app:v1"], timeout=60
        )
        assert done.stdout == "hello\n"
