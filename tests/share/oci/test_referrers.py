"""OCI 1.1 referrers: attached through the referrers API (a small server of the tests) or
the referrers tag schema (Debian's docker-registry, which has no API), and found again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from support.referrers_server import ReferrersRegistry, serve_referrers_registry
from support.registry import LocalRegistry, require, serve_registry

from wheelbarrow._core.errors import RegistryError
from wheelbarrow.share.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from wheelbarrow.share.oci.reference import ImageReference
from wheelbarrow.share.oci.referrers import (
    EMPTY_CONFIG,
    EMPTY_MEDIA_TYPE,
    Referrer,
    add_referrer,
    attach,
    referrers_tag,
)
from wheelbarrow.share.oci.registry import RegistryClient

SBOM_TYPE = "application/vnd.cyclonedx+json"
SIGNATURE_TYPE = "application/vnd.example.signature"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def push_image(client: RegistryClient, ref: ImageReference) -> tuple[str, int]:
    """A one-layer image under ``ref``'s tag: its manifest's digest and size."""
    layer, config = b"layer bytes", b'{"architecture":"amd64","os":"linux"}'
    for blob in (layer, config):
        client.push_blob(ref, sha256(blob), blob, len(blob))
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    )
    return client.put_manifest(ref, manifest, OCI_MANIFEST), len(manifest)


def referrer(
    client: RegistryClient,
    ref: ImageReference,
    subject: tuple[str, int],
    *,
    artifact_type: str = SBOM_TYPE,
    content: bytes = b'{"bomFormat":"CycloneDX"}',
    annotations: dict[str, str] | None = None,
) -> bytes:
    """A referrer manifest of ``subject`` (its blobs pushed): the empty config, one layer."""
    for blob in (EMPTY_CONFIG, content):
        client.push_blob(ref, sha256(blob), blob, len(blob))
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": sha256(EMPTY_CONFIG), "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": sha256(content), "size": len(content)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]},
    }
    if annotations:
        doc["annotations"] = annotations
    return canonical(doc)


@pytest.fixture
def api_registry() -> Iterator[ReferrersRegistry]:
    with serve_referrers_registry() as server:
        yield server


@pytest.fixture(scope="module")
def tag_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    require("docker-registry")
    with serve_registry(tmp_path_factory.mktemp("referrers-registry")) as registry:
        yield registry


class TestReferrersTag:
    def test_the_tag_is_the_digest_with_a_dash(self):
        """The referrers tag schema's tag of sha256:HEX is sha256-HEX."""
        assert referrers_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32


class TestAddReferrer:
    ENTRY = Referrer(media_type=OCI_MANIFEST, digest="sha256:" + "1" * 64, size=10)

    def test_a_missing_index_becomes_one_with_the_entry(self):
        """Without an index yet, the result is an OCI index holding the one entry."""
        made = add_referrer(None, self.ENTRY, where="t")
        assert made is not None
        doc = json.loads(made)
        assert doc["mediaType"] == OCI_INDEX
        assert doc["manifests"] == [self.ENTRY.to_dict()]

    def test_other_entries_and_their_fields_are_kept(self):
        """Another tool's entry, with fields this client does not know, stays as it was."""
        theirs = {
            "mediaType": OCI_MANIFEST,
            "digest": "sha256:" + "2" * 64,
            "size": 5,
            "artifactType": SIGNATURE_TYPE,
            "x-tool": {"kept": True},
        }
        index = canonical({"schemaVersion": 2, "manifests": [theirs], "annotations": {"a": "b"}})
        made = add_referrer(index, self.ENTRY, where="t")
        assert made is not None
        doc = json.loads(made)
        assert doc["manifests"] == [theirs, self.ENTRY.to_dict()]
        assert doc["annotations"] == {"a": "b"}

    def test_an_entry_already_listed_changes_nothing(self):
        """Adding an entry the index has already gives None: nothing to write back."""
        index = add_referrer(None, self.ENTRY, where="t")
        assert add_referrer(index, self.ENTRY, where="t") is None

    def test_replaced_entries_give_way_to_the_new_one(self):
        """An entry ``replaces`` names is dropped for the new one; the others stay."""
        old = Referrer(media_type=OCI_MANIFEST, digest="sha256:" + "3" * 64, size=1)
        other = Referrer(media_type=OCI_MANIFEST, digest="sha256:" + "4" * 64, size=1)
        index = canonical({"schemaVersion": 2, "manifests": [old.to_dict(), other.to_dict()]})
        made = add_referrer(index, self.ENTRY, replaces=lambda r: r.digest == old.digest, where="t")
        assert made is not None
        assert [m["digest"] for m in json.loads(made)["manifests"]] == [
            other.digest,
            self.ENTRY.digest,
        ]

    def test_a_list_that_is_not_an_index_is_refused(self):
        """A referrers tag holding something without a manifests list is an error naming it."""
        with pytest.raises(RegistryError, match="app:sha256-x: the referrers list is not an OCI"):
            add_referrer(b'{"layers": []}', self.ENTRY, where="app:sha256-x")


class TestReferrersApi:
    def test_oci_subject_in_the_answer_means_no_tag_is_written(self, api_registry):
        """A registry answering the PUT with OCI-Subject lists the referrer: no tag is PUT."""
        ref = ImageReference.parse(f"{api_registry.host}/app:1")
        with RegistryClient() as client:
            subject = push_image(client, ref)
            manifest = referrer(client, ref, subject)
            attached = attach(client, ref, manifest, OCI_MANIFEST)
        assert attached.tag is None
        assert attached.subject == subject[0]
        assert api_registry.state.manifest_puts() == ["1", sha256(manifest)]

    def test_referrers_reads_the_api_with_the_filter(self, api_registry):
        """``referrers`` lists what the API lists, with the registry's artifactType filter."""
        ref = ImageReference.parse(f"{api_registry.host}/app:1")
        with RegistryClient() as client:
            subject = push_image(client, ref)
            sbom = referrer(client, ref, subject, annotations={"k": "v"})
            signature = referrer(client, ref, subject, artifact_type=SIGNATURE_TYPE)
            for manifest in (sbom, signature):
                attach(client, ref, manifest, OCI_MANIFEST)
            every = client.referrers(ref, subject[0])
            sboms = client.referrers(ref, subject[0], SBOM_TYPE)
        assert [r.digest for r in every] == [sha256(sbom), sha256(signature)]
        assert sboms == (
            Referrer(
                media_type=OCI_MANIFEST,
                digest=sha256(sbom),
                size=len(sbom),
                artifact_type=SBOM_TYPE,
                annotations={"k": "v"},
            ),
        )
        paths = [p for m, p in api_registry.state.requests if m == "GET"]
        assert f"/v2/app/referrers/{subject[0]}" in paths
        assert not any("sha256-" in p for p in paths)  # the tag schema was never asked

    def test_a_registry_that_does_not_filter_is_filtered_here(self):
        """Without OCI-Filters-Applied, ``referrers`` drops the other artifact types itself."""
        with serve_referrers_registry(filters=False) as server, RegistryClient() as client:
            ref = ImageReference.parse(f"{server.host}/app:1")
            subject = push_image(client, ref)
            for kind in (SBOM_TYPE, SIGNATURE_TYPE):
                attach(
                    client, ref, referrer(client, ref, subject, artifact_type=kind), OCI_MANIFEST
                )
            found = client.referrers(ref, subject[0], SIGNATURE_TYPE)
        assert [r.artifact_type for r in found] == [SIGNATURE_TYPE]


class TestReferrersTagSchema:
    def test_without_the_api_the_referrer_is_listed_in_the_subjects_tag(self, tag_registry):
        """docker-registry has no referrers API: the tag sha256-HEX lists the referrer, and
        ``referrers`` finds it there after the API's 404."""
        ref = ImageReference.parse(f"{tag_registry.host}/schema:1")
        with RegistryClient() as client:
            subject = push_image(client, ref)
            manifest = referrer(client, ref, subject)
            attached = attach(client, ref, manifest, OCI_MANIFEST)
            found = client.referrers(ref, subject[0], SBOM_TYPE)
            none = client.referrers(ref, subject[0], SIGNATURE_TYPE)
            index, media_type, _ = client.get_manifest(ref.with_tag(referrers_tag(subject[0])))
        assert attached.tag == referrers_tag(subject[0])
        assert [r.digest for r in found] == [sha256(manifest)]
        assert none == ()
        assert media_type == OCI_INDEX
        assert [m["digest"] for m in json.loads(index)["manifests"]] == [sha256(manifest)]

    def test_attaching_again_adds_no_second_entry(self, tag_registry):
        """The same referrer attached twice is listed once."""
        ref = ImageReference.parse(f"{tag_registry.host}/twice:1")
        with RegistryClient() as client:
            subject = push_image(client, ref)
            manifest = referrer(client, ref, subject)
            attach(client, ref, manifest, OCI_MANIFEST)
            attach(client, ref, manifest, OCI_MANIFEST)
            found = client.referrers(ref, subject[0])
        assert [r.digest for r in found] == [sha256(manifest)]

    def test_another_tools_entry_is_kept(self, tag_registry):
        """A signature another tool listed in the tag stays beside the new referrer."""
        ref = ImageReference.parse(f"{tag_registry.host}/shared:1")
        with RegistryClient() as client:
            subject = push_image(client, ref)
            signature = referrer(
                client, ref, subject, artifact_type=SIGNATURE_TYPE, content=b"signed"
            )
            attach(client, ref, signature, OCI_MANIFEST)
            sbom = referrer(client, ref, subject)
            attach(client, ref, sbom, OCI_MANIFEST)
            found = client.referrers(ref, subject[0])
        assert [(r.digest, r.artifact_type) for r in found] == [
            (sha256(signature), SIGNATURE_TYPE),
            (sha256(sbom), SBOM_TYPE),
        ]

    def test_a_subject_without_referrers_has_none(self, tag_registry):
        """No referrers tag (and no API) means no referrers, not an error."""
        ref = ImageReference.parse(f"{tag_registry.host}/lonely:1")
        with RegistryClient() as client:
            subject = push_image(client, ref)
            assert client.referrers(ref, subject[0]) == ()
