"""The OCI registry client, against a real docker-registry on 127.0.0.1 and small fakes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from support.registry import LocalRegistry, free_port, require, serve_registry, write_htpasswd

from wheelbarrow._core.errors import (
    ImageNotFoundError,
    ImageReferenceError,
    InputError,
    RegistryAuthError,
    RegistryError,
)
from wheelbarrow.share.oci.auth import AuthSource
from wheelbarrow.share.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from wheelbarrow.share.oci.reference import (
    DEFAULT_REGISTRY,
    LEGACY_DEFAULT_REGISTRY,
    ImageReference,
)
from wheelbarrow.share.oci.registry import RegistryClient

HEX_A = "a" * 64
USER, PASSWORD = "builder", "s3cret-pass"


# -- helpers ----------------------------------------------------------------


def sha256(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Requests:
    """Records what a RegistryClient sent, through its on_request hook."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, method: str, url: str) -> None:
        self.seen.append((method, url))

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, u in self.seen if m == method and fragment in u)


@dataclass(frozen=True)
class Image:
    """A one-layer image made in the test: its blobs and its OCI manifest."""

    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digest(self) -> str:
        return sha256(self.layer)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def make_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzipped tar of ``files`` (byte-identical from run to run) and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), sha256(tar_bytes)


def make_image(text: str = "hello", *, arch: str = "amd64") -> Image:
    layer, diff_id = make_layer({"hello.txt": text.encode()})
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
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
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()
    return Image(config=config, layer=layer, manifest=manifest)


def push_image(client: RegistryClient, ref: ImageReference, image: Image) -> str:
    """Push the blobs, then the manifest; return the manifest's digest."""
    client.push_blob(ref, image.config_digest, image.config, len(image.config))
    client.push_blob(ref, image.layer_digest, image.layer, len(image.layer))
    return client.put_manifest(ref, image.manifest, OCI_MANIFEST)


def write_auth_file(path: Path, host: str, user: str, password: str) -> Path:
    """An auth.json with one entry, as ``podman login`` writes it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


# -- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """One open registry for the module; each test uses its own repository."""
    with serve_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry that asks for Basic credentials (htpasswd, bcrypt)."""
    root = tmp_path_factory.mktemp("auth-registry")
    htpasswd = write_htpasswd(root / "htpasswd", USER, PASSWORD)
    with serve_registry(root, htpasswd=htpasswd) as running:
        yield running


@pytest.fixture
def requests() -> Requests:
    """A fresh request recorder."""
    return Requests()


@pytest.fixture
def client(requests: Requests) -> Iterator[RegistryClient]:
    """A client without credentials that records its requests and retries without waiting."""
    with RegistryClient(on_request=requests, backoff=0) as made:
        yield made


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    auth: AuthSource | None = None,
    retries: int = 3,
) -> RegistryClient:
    """A client whose requests go to ``handler`` instead of the network."""
    transport = httpx.MockTransport(handler)
    return RegistryClient(
        auth=auth,
        client_factory=lambda: httpx.Client(transport=transport),
        retries=retries,
        backoff=0,
    )


# -- references -------------------------------------------------------------


class TestImageReference:
    def test_bare_name_gets_the_docker_hub_defaults(self) -> None:
        """A bare name means the official image of that name, tag latest, on Docker Hub."""
        ref = ImageReference.parse("python")
        assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
            DEFAULT_REGISTRY,
            "library/python",
            "latest",
            None,
        )
        assert str(ref) == f"{DEFAULT_REGISTRY}/library/python:latest"
        assert ref.api_base.startswith("https://")

    def test_full_hub_reference_round_trips(self) -> None:
        """A fully written Docker Hub reference prints as it was written."""
        text = f"{DEFAULT_REGISTRY}/library/python:3.12"
        assert str(ImageReference.parse(text)) == text

    def test_registry_with_port_is_kept(self) -> None:
        """A first component with a port is the registry, spoken to over http on loopback."""
        ref = ImageReference.parse("127.0.0.1:5000/app:v1")
        assert (ref.registry, ref.repository, ref.tag) == ("127.0.0.1:5000", "app", "v1")
        assert ref.api_base == "http://127.0.0.1:5000/v2"

    def test_localhost_is_a_registry(self) -> None:
        """``localhost/x`` is repository x on localhost, not a Docker Hub namespace."""
        ref = ImageReference.parse("localhost/x")
        assert (ref.registry, ref.repository, ref.tag) == ("localhost", "x", "latest")
        assert ref.api_base == "http://localhost/v2"

    def test_digest_reference_has_no_tag(self) -> None:
        """``name@sha256:…`` pins a digest and adds no default tag."""
        ref = ImageReference.parse(f"name@sha256:{HEX_A}")
        assert ref.tag is None
        assert ref.digest == f"sha256:{HEX_A}"
        assert ref.reference == f"sha256:{HEX_A}"

    def test_tag_and_digest_keep_both_and_the_digest_decides(self) -> None:
        """With a tag and a digest, both are kept and the API is asked for the digest."""
        ref = ImageReference.parse(f"registry.example/ns/name:tag@sha256:{HEX_A}")
        assert (ref.registry, ref.repository, ref.tag) == ("registry.example", "ns/name", "tag")
        assert ref.reference == f"sha256:{HEX_A}"
        assert str(ref) == f"registry.example/ns/name:tag@sha256:{HEX_A}"

    @pytest.mark.parametrize(
        ("text", "scheme"),
        [
            ("127.0.0.1:5000/a", "http"),
            ("127.1.2.3/a", "http"),
            ("localhost:5000/a", "http"),
            ("[::1]:5000/a", "http"),
            ("registry.example:5000/a", "https"),
            ("10.0.0.1:5000/a", "https"),
        ],
    )
    def test_only_loopback_registries_use_plain_http(self, text: str, scheme: str) -> None:
        """127.0.0.0/8, localhost and [::1] use http; every other registry https."""
        assert ImageReference.parse(text).api_base.startswith(f"{scheme}://")

    def test_with_tag_drops_the_digest(self) -> None:
        """Retagging gives a reference by the new tag only."""
        ref = ImageReference.parse(f"127.0.0.1:5000/app:v1@sha256:{HEX_A}").with_tag("v2")
        assert str(ref) == "127.0.0.1:5000/app:v2"

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("MyApp", "uppercase"),
            ("127.0.0.1:5000/Team/app:v1", "uppercase"),
            ("app:", "tag after ':' is empty"),
            ("app@sha256:abc", "64 hex digits"),
            (f"app@md5:{HEX_A[:32]}", "'md5' is not supported"),
            (f"app@sha256:{HEX_A.upper()}", "is not a digest"),
            ("ns/a..b", "not a valid repository path component"),
            ("", "empty"),
            ("app:-v1", "not a valid tag"),
        ],
    )
    def test_malformed_reference_names_the_text_and_the_problem(
        self, text: str, problem: str
    ) -> None:
        """A malformed reference is an input error quoting the text and saying what is wrong."""
        with pytest.raises(ImageReferenceError) as caught:
            ImageReference.parse(text)
        assert isinstance(caught.value, InputError)
        assert repr(text) in caught.value.message
        assert problem in caught.value.message

    def test_constructor_checks_its_fields(self) -> None:
        """A reference built field by field is checked like a parsed one."""
        with pytest.raises(ImageReferenceError, match="neither a tag nor a digest"):
            ImageReference(registry="127.0.0.1:5000", repository="app")


# -- auth files ---------------------------------------------------------------


class TestAuthSource:
    def test_registry_auth_file_is_the_only_file_when_set(self, tmp_path: Path) -> None:
        """$REGISTRY_AUTH_FILE replaces the default files, as in podman and skopeo."""
        source = AuthSource.from_environment(
            {"REGISTRY_AUTH_FILE": str(tmp_path / "a.json"), "XDG_RUNTIME_DIR": "/run/u"},
            tmp_path,
        )
        assert source.files == (tmp_path / "a.json",)

    def test_default_files_in_podman_order(self, tmp_path: Path) -> None:
        """Without it: the runtime dir's, then ~/.config's containers auth, then docker's."""
        source = AuthSource.from_environment({"XDG_RUNTIME_DIR": "/run/u"}, tmp_path)
        assert source.files == (
            Path("/run/u/containers/auth.json"),
            tmp_path / ".config/containers/auth.json",
            tmp_path / ".docker/config.json",
        )

    def test_docker_config_with_the_legacy_hub_key_serves_docker_hub(self, tmp_path: Path) -> None:
        """docker's legacy ``https://index.<hub>/v1/`` key gives the credentials for the hub."""
        docker = tmp_path / ".docker"
        docker.mkdir()
        legacy_key = f"https://{LEGACY_DEFAULT_REGISTRY}/v1/"
        write_auth_file(docker / "config.json", legacy_key, "u", "p:w")
        found = AuthSource.from_environment({}, tmp_path).find(DEFAULT_REGISTRY, "library/python")
        assert found is not None
        assert (found.username, found.password, found.source) == (
            "u",
            "p:w",
            docker / "config.json",
        )

    def test_first_file_wins_and_most_specific_key_within_it(self, tmp_path: Path) -> None:
        """The first file with an entry wins; in it, ``host/ns`` beats ``host``."""
        first, second = tmp_path / "first.json", tmp_path / "second.json"
        token = base64.b64encode(b"ns-user:x").decode()
        other = base64.b64encode(b"host-user:x").decode()
        first.write_text(
            json.dumps({"auths": {"r.example": {"auth": other}, "r.example/ns": {"auth": token}}})
        )
        write_auth_file(second, "r.example", "second-user", "x")
        source = AuthSource(files=(first, second))
        found = source.find("r.example", "ns/app")
        assert found is not None and found.username == "ns-user"
        found = source.find("r.example", "other/app")
        assert found is not None and found.username == "host-user"

    def test_malformed_auth_file_is_named(self, tmp_path: Path) -> None:
        """An auth file that is not JSON is an error naming it."""
        bad = tmp_path / "auth.json"
        bad.write_text("{not json")
        with pytest.raises(RegistryAuthError, match=str(bad)):
            AuthSource(files=(bad,)).find("r.example")


# -- push and pull against a real registry --------------------------------------


class TestPushAndPull:
    def test_pushed_image_reads_back_by_tag_and_by_digest(
        self, registry: LocalRegistry, client: RegistryClient
    ) -> None:
        """A pushed manifest comes back byte for byte, with its media type and digest."""
        image = make_image()
        ref = ImageReference.parse(f"{registry.host}/roundtrip:v1")
        assert push_image(client, ref, image) == image.digest

        assert client.get_manifest(ref) == (image.manifest, OCI_MANIFEST, image.digest)
        by_digest = ref.with_digest(image.digest)
        assert client.get_manifest(by_digest) == (image.manifest, OCI_MANIFEST, image.digest)
        assert client.get_blob(ref, image.config_digest) == image.config

    def test_skopeo_accepts_the_pushed_image(
        self, registry: LocalRegistry, client: RegistryClient
    ) -> None:
        """skopeo inspects the pushed image and sees our digest, platform and layer."""
        require("skopeo")
        image = make_image("for skopeo")
        ref = ImageReference.parse(f"{registry.host}/inspected:v1")
        push_image(client, ref, image)
        done = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen["Digest"] == image.digest
        assert (seen["Os"], seen["Architecture"]) == ("linux", "amd64")
        assert seen["Layers"] == [image.layer_digest]

    def test_tags_are_listed(self, registry: LocalRegistry, client: RegistryClient) -> None:
        """A repository's tags are listed, a blob's size is read from HEAD, and a repository
        nobody pushed to has no tags."""
        image = make_image("tagged")
        ref = ImageReference.parse(f"{registry.host}/tags:v0")
        push_image(client, ref, image)
        for n in range(1, 5):
            client.put_manifest(ref.with_tag(f"v{n}"), image.manifest, OCI_MANIFEST)
        assert sorted(client.list_tags(ref)) == [f"v{n}" for n in range(5)]
        assert client.blob_size(ref, image.layer_digest) == len(image.layer)
        assert client.blob_size(ref, sha256(b"absent")) is None
        assert client.list_tags(ImageReference.parse(f"{registry.host}/nobody:v1")) == []

    def test_tags_are_listed_page_by_page(self) -> None:
        """Every page of tags is read, following each ``Link: <...>; rel="next"`` (the spec's
        ``n`` and ``last``; docker-registry 2.8 answers in one page, so this one is a fake)."""
        tags = [f"t{n}" for n in range(5)]
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            n = int(request.url.params["n"])
            last = request.url.params.get("last")
            start = tags.index(last) + 1 if last else 0
            page = tags[start : start + n]
            headers = {}
            if start + n < len(tags):
                headers["Link"] = f'</v2/app/tags/list?n={n}&last={page[-1]}>; rel="next"'
            return httpx.Response(200, json={"name": "app", "tags": page}, headers=headers)

        with mock_client(handler) as client:
            assert client.list_tags(ImageReference.parse("registry.test/app:v1"), page=2) == tags
        assert seen == [
            "https://registry.test/v2/app/tags/list?n=2",
            "https://registry.test/v2/app/tags/list?n=2&last=t1",
            "https://registry.test/v2/app/tags/list?n=2&last=t3",
        ]

    def test_pushing_a_blob_again_is_skipped(
        self, registry: LocalRegistry, client: RegistryClient, requests: Requests
    ) -> None:
        """A blob the repository has is only asked about (HEAD), never uploaded again."""
        image = make_image("twice")
        ref = ImageReference.parse(f"{registry.host}/again:v1")
        assert client.push_blob(ref, image.layer_digest, image.layer, len(image.layer)) is True
        assert requests.count("POST", "/blobs/uploads/") == 1
        assert requests.count("PUT", "/blobs/uploads/") == 1
        requests.seen.clear()

        assert client.push_blob(ref, image.layer_digest, image.layer, len(image.layer)) is False
        assert requests.seen == [
            ("HEAD", f"http://{registry.host}/v2/again/blobs/{image.layer_digest}")
        ]

    def test_blob_from_a_file_streams_back_verified(
        self, registry: LocalRegistry, client: RegistryClient, tmp_path: Path
    ) -> None:
        """A layer pushed from a file streams back in chunks that join to the same bytes."""
        data = bytes(range(256)) * 9000  # a few chunks of the client's read size
        path = tmp_path / "layer.bin"
        path.write_bytes(data)
        ref = ImageReference.parse(f"{registry.host}/streamed:v1")
        assert client.push_blob(ref, sha256(data), path, len(data))
        assert client.has_blob(ref, sha256(data))

        chunks: list[bytes] = []
        client.stream_blob(ref, sha256(data), chunks.append)
        assert b"".join(chunks) == data

    def test_blob_is_mounted_from_another_repository_without_upload(
        self, registry: LocalRegistry, client: RegistryClient, requests: Requests
    ) -> None:
        """Given a repository that has the blob, the registry links it and nothing is PUT."""
        image = make_image("mounted")
        source = ImageReference.parse(f"{registry.host}/mount-source:v1")
        target = ImageReference.parse(f"{registry.host}/mount-target:v1")
        client.push_blob(source, image.layer_digest, image.layer, len(image.layer))
        requests.seen.clear()

        assert client.push_blob(
            target, image.layer_digest, image.layer, len(image.layer), mount_from="mount-source"
        )
        assert requests.count("PUT") == 0
        assert client.has_blob(target, image.layer_digest)

    def test_missing_tag_is_no_such_image(
        self, registry: LocalRegistry, client: RegistryClient
    ) -> None:
        """Asking for a tag that was never pushed says there is no such image/tag."""
        ref = ImageReference.parse(f"{registry.host}/nothing-here:v9")
        with pytest.raises(ImageNotFoundError, match="no such image/tag") as caught:
            client.get_manifest(ref)
        assert str(ref) in caught.value.message

    def test_manifest_naming_missing_blobs_is_refused(
        self, registry: LocalRegistry, client: RegistryClient
    ) -> None:
        """A manifest whose blobs were not pushed is refused with the registry's reason."""
        image = make_image("blobs left out")
        ref = ImageReference.parse(f"{registry.host}/incomplete:v1")
        with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
            client.put_manifest(ref, image.manifest, OCI_MANIFEST)

    def test_index_resolves_to_the_platform_asked_for(
        self, registry: LocalRegistry, client: RegistryClient
    ) -> None:
        """An index of two platforms gives the manifest of the platform asked for."""
        repo = f"{registry.host}/multi"
        images = {arch: make_image(f"built for {arch}", arch=arch) for arch in ("amd64", "arm64")}
        for image in images.values():
            by_digest = ImageReference.parse(f"{repo}@{image.digest}")
            push_image(client, by_digest, image)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": image.digest,
                        "size": len(image.manifest),
                        "platform": {"os": "linux", "architecture": arch},
                    }
                    for arch, image in images.items()
                ],
            }
        ).encode()
        ref = ImageReference.parse(f"{repo}:latest")
        client.put_manifest(ref, index, OCI_INDEX)

        assert client.get_manifest(ref)[1] == OCI_INDEX
        body, media_type, digest = client.resolve_manifest(ref, arch="arm64")
        assert (body, media_type, digest) == (
            images["arm64"].manifest,
            OCI_MANIFEST,
            images["arm64"].digest,
        )
        assert client.resolve_manifest(ref)[2] == images["amd64"].digest

        with pytest.raises(ImageNotFoundError, match="linux/amd64, linux/arm64"):
            client.resolve_manifest(ref, arch="s390x")


# -- credentials ----------------------------------------------------------------


class TestRegistryAuth:
    def test_push_with_credentials_from_the_auth_file(
        self, auth_registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """With the user and password in $REGISTRY_AUTH_FILE, a push and a pull work."""
        auth_file = write_auth_file(tmp_path / "auth.json", auth_registry.host, USER, PASSWORD)
        auth = AuthSource.from_environment({"REGISTRY_AUTH_FILE": str(auth_file)}, tmp_path)
        image = make_image("private")
        ref = ImageReference.parse(f"{auth_registry.host}/private:v1")
        with RegistryClient(auth=auth) as client:
            assert push_image(client, ref, image) == image.digest
            assert client.get_manifest(ref)[2] == image.digest

    def test_docker_config_in_home_is_read(
        self, auth_registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """Without $REGISTRY_AUTH_FILE, ~/.docker/config.json gives the credentials."""
        (tmp_path / ".docker").mkdir()
        write_auth_file(tmp_path / ".docker/config.json", auth_registry.host, USER, PASSWORD)
        ref = ImageReference.parse(f"{auth_registry.host}/from-docker-config:v1")
        with RegistryClient(auth=AuthSource.from_environment({}, tmp_path)) as client:
            assert client.push_blob(ref, sha256(b"{}"), b"{}", 2)

    def test_push_without_credentials_names_repository_and_files_tried(
        self, auth_registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """Without credentials the error names the repository and every auth file it read."""
        auth = AuthSource.from_environment({}, tmp_path)
        ref = ImageReference.parse(f"{auth_registry.host}/private:v1")
        with RegistryClient(auth=auth) as client, pytest.raises(RegistryAuthError) as caught:
            client.push_blob(ref, sha256(b"{}"), b"{}", 2)
        message = caught.value.message
        assert "private" in message and auth_registry.host in message
        assert str(tmp_path / ".docker/config.json") in message
        assert caught.value.hint is not None and "podman login" in caught.value.hint

    def test_wrong_password_names_the_user_and_the_file(
        self, auth_registry: LocalRegistry, tmp_path: Path
    ) -> None:
        """Refused credentials are reported with the user and the file they came from."""
        auth_file = write_auth_file(tmp_path / "auth.json", auth_registry.host, USER, "wrong")
        ref = ImageReference.parse(f"{auth_registry.host}/private:v1")
        with (
            RegistryClient(auth=AuthSource(files=(auth_file,))) as client,
            pytest.raises(RegistryAuthError) as caught,
        ):
            client.get_manifest(ref)
        assert repr(USER) in caught.value.message
        assert str(auth_file) in caught.value.message


# -- failures and the token dance, with fakes ----------------------------------


class TestFailures:
    def test_unreachable_registry_names_host_and_port(self) -> None:
        """Nothing listening on the port is a RegistryError naming host:port, not a traceback."""
        host = f"127.0.0.1:{free_port()}"
        ref = ImageReference.parse(f"{host}/app:v1")
        with RegistryClient(backoff=0) as client, pytest.raises(RegistryError) as caught:
            client.get_manifest(ref)
        assert host in caught.value.message
        assert caught.value.hint is not None

    def test_server_errors_are_retried_then_succeed(self) -> None:
        """Two 503s and then an answer: the client retries and returns the answer."""
        image = make_image()
        answers = [503, 503, 200]

        def handler(request: httpx.Request) -> httpx.Response:
            status = answers.pop(0)
            if status != 200:
                return httpx.Response(status)
            return httpx.Response(
                200, content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
            )

        with mock_client(handler) as client:
            assert (
                client.get_manifest(ImageReference.parse("registry.test/app:v1"))[2] == image.digest
            )
        assert answers == []

    def test_server_errors_are_retried_a_bounded_number_of_times(self) -> None:
        """A registry that keeps failing is given up on after the retries, naming the status."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.method)
            return httpx.Response(502)

        with (
            mock_client(handler, retries=2) as client,
            pytest.raises(RegistryError, match="HTTP 502"),
        ):
            client.get_manifest(ImageReference.parse("registry.test/app:v1"))
        assert len(seen) == 3

    def test_bearer_token_is_fetched_once_per_scope_and_reused(self, tmp_path: Path) -> None:
        """A 401 with a Bearer challenge gets a token from the realm with the credentials, once."""
        image = make_image()
        auth_file = write_auth_file(tmp_path / "auth.json", "registry.test", "u", "pw")
        token_requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/token":
                token_requests.append(request)
                return httpx.Response(200, json={"token": "T-" + request.url.params["scope"]})
            if request.headers.get("Authorization") != "Bearer T-repository:team/app:pull":
                return httpx.Response(
                    401,
                    headers={
                        "WWW-Authenticate": 'Bearer realm="https://auth.test/token",'
                        'service="registry.test",scope="repository:team/app:pull"'
                    },
                )
            return httpx.Response(
                200, content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
            )

        ref = ImageReference.parse("registry.test/team/app:v1")
        with mock_client(handler, auth=AuthSource(files=(auth_file,))) as client:
            assert client.get_manifest(ref)[2] == image.digest
            assert client.get_manifest(ref)[2] == image.digest
        assert len(token_requests) == 1
        sent = token_requests[0]
        assert sent.url.params["service"] == "registry.test"
        assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"u:pw").decode()

    def test_blob_with_the_wrong_content_is_refused(self) -> None:
        """A blob whose bytes do not hash to the digest asked for is an error."""

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=b"not what was asked for")

        ref = ImageReference.parse("registry.test/app:v1")
        with mock_client(handler) as client:
            with pytest.raises(RegistryError, match="has digest"):
                client.get_blob(ref, f"sha256:{HEX_A}")
            with pytest.raises(RegistryError, match="arrived with digest"):
                client.stream_blob(ref, f"sha256:{HEX_A}", lambda chunk: None)
