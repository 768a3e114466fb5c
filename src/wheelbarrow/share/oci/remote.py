"""The remote store on an OCI registry (``oci://REGISTRY/REPOSITORY``), through the registry client.

Each wheel is a blob of the repository under its own sha256, so the registry
keeps one copy of it for every app and image that holds it. A wheelhouse is an
OCI artifact (an image manifest whose ``artifactType`` says what it is, its
config the empty descriptor, per the image spec's guidance for artifacts)
tagged ``wheelhouse-<key>``: one layer per wheel, titled with its file name,
and the ``wheelhouse.json`` manifest as the last layer. A source build's record
is a small artifact of its own, tagged ``build-<part 1>-<part 2>``, whose
layers are the wheel and the record. Blobs are uploaded first and the tag is
written last, so a reader never finds a tag whose blobs are not all there.

Credentials come from the auth files podman, skopeo and docker write
(``$REGISTRY_AUTH_FILE``, containers' ``auth.json``, ``~/.docker/config.json``);
plain http is used only on loopback, as for images.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import urllib.parse
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wheelbarrow._core.errors import (
    ImageNotFoundError,
    ImageReferenceError,
    RegistryAuthError,
    RegistryError,
    WheelbarrowError,
)
from wheelbarrow._core.redact import redact_urls
from wheelbarrow.share.oci.auth import AuthSource
from wheelbarrow.share.oci.mediatypes import OCI_MANIFEST
from wheelbarrow.share.oci.reference import ImageReference
from wheelbarrow.share.oci.registry import RegistryClient
from wheelbarrow.store.remote import BUILD_RECORD, MANIFEST, RemoteError
from wheelbarrow.store.store import Store

__all__ = [
    "BUILD_ARTIFACT",
    "BUILD_RECORD_LAYER",
    "EMPTY_CONFIG",
    "WHEELHOUSE_ARTIFACT",
    "WHEELHOUSE_LAYER",
    "WHEEL_LAYER",
    "OciRemote",
    "build_tag",
    "wheelhouse_tag",
]

WHEELHOUSE_ARTIFACT = "application/vnd.wheelbarrow.wheelhouse.v1+json"
WHEELHOUSE_LAYER = "application/vnd.wheelbarrow.wheelhouse.manifest.v1+json"
WHEEL_LAYER = "application/vnd.wheelbarrow.wheel.v1+zip"
BUILD_ARTIFACT = "application/vnd.wheelbarrow.build.v1+json"
BUILD_RECORD_LAYER = "application/vnd.wheelbarrow.build.record.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
TITLE = "org.opencontainers.image.title"
KEY_ANNOTATION = "vnd.wheelbarrow.key"

# A key is used in a tag as it is when it is short lowercase letters and digits (wheelbarrow's
# keys are hex); anything else is replaced by "_" and a digest of it, which no key used as it
# is can equal (it has no "_"), so "build-<part 1>-" names one part 1's records and no other's.
_PLAIN = re.compile(r"[a-z0-9]{1,56}")
_LOGIN_HINT = (
    "log in with `podman login {registry}` or `docker login {registry}` (wheelbarrow reads "
    "$REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json, "
    "~/.config/containers/auth.json and ~/.docker/config.json), and check that the account "
    "may read and push {repository}"
)


def _tag_part(text: str) -> str:
    if _PLAIN.fullmatch(text):
        return text
    return "_" + hashlib.sha256(text.encode()).hexdigest()[:40]


def wheelhouse_tag(key: str) -> str:
    """The tag of the wheelhouse ``key``: ``wheelhouse-<key>`` (a valid tag for any key)."""
    return f"wheelhouse-{_tag_part(key)}"


def build_tag(key: str, entry: str) -> str:
    """The tag of one build record: ``build-<part 1>-<part 2>`` (at most 119 characters)."""
    return f"build-{_tag_part(key)}-{_tag_part(entry)}"


def _descriptor(
    media_type: str, sha256: str, size: int, *, title: str | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {"mediaType": media_type, "digest": f"sha256:{sha256}", "size": size}
    if title is not None:
        found["annotations"] = {TITLE: title}
    return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OciRemote:
    """Blobs and manifests in the repository ``oci://REGISTRY/REPOSITORY`` (see
    :mod:`wheelbarrow.store.remote`)."""

    def __init__(
        self,
        url: str,
        *,
        environ: Mapping[str, str],
        home: Path,
        client: RegistryClient | None = None,
    ) -> None:
        self.ref = _parse(url)
        # Never the URL as given: a user:secret@ part is refused, and so stays out of messages.
        self.url = f"oci://{self.ref.name}"
        if client is None:
            client = RegistryClient(auth=AuthSource.from_environment(environ, home))
            # The remote has no close of its own (nor has the port): its connections are closed
            # when it goes, not left to the garbage collector's warnings.
            weakref.finalize(self, client.close)
        self._client = client
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """The registry client's errors as errors that name the remote and say what to do."""
        try:
            yield
        except RemoteError:
            raise
        except RegistryAuthError as exc:
            raise RemoteError(
                f"{self.url}: access denied while {doing}: {exc.message}",
                hint=_LOGIN_HINT.format(registry=self.ref.registry, repository=self.ref.repository),
            ) from exc
        except RegistryError as exc:
            raise RemoteError(
                f"{self.url}: {doing} failed: {exc.message}",
                hint=exc.hint or "check the remote's URL and the registry, then try again",
            ) from exc
        except WheelbarrowError:  # the local store's own (a hash mismatch): said as it is
            raise

    def _size(self, sha256: str) -> int | None:
        """The blob's size, remembered from this push when it was seen, else asked (HEAD)."""
        with self._lock:
            known = self._sizes.get(sha256)
        if known is not None:
            return known
        size = self._client.blob_size(self.ref, f"sha256:{sha256}")
        if size is not None:
            with self._lock:
                self._sizes[sha256] = size
        return size

    def has_blob(self, sha256: str) -> bool:
        """Whether the repository has the blob."""
        with self._errors(f"looking for blob {sha256[:12]}"):
            return self._size(sha256) is not None

    def get_blob(self, sha256: str, store: Store, *, filename: str) -> int:
        """Stream the blob into ``store``, which checks its hash before keeping it."""
        label = f"{filename} from {self.url}"
        with (
            self._errors(f"downloading {filename}"),
            store.writer(sha256=sha256, size=None, label=label, filename=filename) as out,
        ):
            self._client.stream_blob(self.ref, f"sha256:{sha256}", out.write)
            return out.size

    def put_blob(self, sha256: str, path: Path) -> None:
        """Upload one blob in one streamed PUT, unless the repository has it."""
        with self._errors(f"uploading {path.name}"):
            size = path.stat().st_size
            self._client.push_blob(self.ref, f"sha256:{sha256}", path, size)
        with self._lock:
            self._sizes[sha256] = size

    def _put_small(self, data: bytes) -> dict[str, Any]:
        """Upload a small blob (a manifest, a record, the empty config): its digest and size."""
        sha256 = _sha256(data)
        self._client.push_blob(self.ref, f"sha256:{sha256}", data, len(data))
        return {"sha256": sha256, "size": len(data)}

    def _put_artifact(
        self, tag: str, artifact_type: str, layers: list[dict[str, Any]], key: str
    ) -> None:
        """Tag an artifact of ``layers`` (all uploaded already): the last write of a put."""
        self._put_small(EMPTY)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": _descriptor(EMPTY_CONFIG, _sha256(EMPTY), len(EMPTY)),
            "layers": layers,
            "annotations": {KEY_ANNOTATION: key},
        }
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        self._client.put_manifest(self.ref.with_tag(tag), body, OCI_MANIFEST)

    def _wheel_layer(self, filename: str, sha256: str, named_by: str) -> dict[str, Any]:
        size = self._size(sha256)
        if size is None:
            raise RemoteError(
                f"{self.url}: {filename} (sha256 {sha256[:12]}), named by {named_by}, "
                "is not in the repository",
                hint="push its blobs first (`wheelbarrow push` does), then try again",
            )
        return _descriptor(WHEEL_LAYER, sha256, size, title=filename)

    def get_manifest(self, key: str) -> bytes | None:
        """The manifest of the wheelhouse tagged for ``key``, or None when there is no such tag."""
        with self._errors(f"reading the manifest of wheelhouse {key}"):
            return self._read_layer(wheelhouse_tag(key), WHEELHOUSE_LAYER, WHEELHOUSE_ARTIFACT)

    def put_manifest(self, key: str, data: bytes) -> None:
        """Upload the manifest as a blob, then tag the artifact naming it and every wheel."""
        with self._errors(f"writing the manifest of wheelhouse {key}"):
            wheels = json.loads(data).get("wheels", [])
            named = dict.fromkeys((str(w["filename"]), str(w["sha256"])) for w in wheels)
            layers = [self._wheel_layer(f, s, f"wheelhouse {key}") for f, s in named]
            blob = self._put_small(data)
            layers.append(
                _descriptor(WHEELHOUSE_LAYER, blob["sha256"], blob["size"], title=MANIFEST)
            )
            self._put_artifact(wheelhouse_tag(key), WHEELHOUSE_ARTIFACT, layers, key)

    def get_builds(self, key: str) -> list[bytes]:
        """The build records tagged ``build-<key>-*``, in the order of their tags."""
        with self._errors(f"looking for builds of {key}"):
            prefix = f"build-{_tag_part(key)}-"
            tags = sorted(t for t in self._client.list_tags(self.ref) if t.startswith(prefix))
            found = (self._read_layer(t, BUILD_RECORD_LAYER, BUILD_ARTIFACT) for t in tags)
            return [data for data in found if data is not None]

    def put_build(self, key: str, entry: str, data: bytes) -> None:
        """Tag one build record, with the wheel it names as a layer (uploaded already)."""
        with self._errors(f"writing the build record {key}/{entry}"):
            record = json.loads(data)
            layers = []
            if isinstance(record, dict) and all(
                isinstance(record.get(k), str) for k in ("wheel", "sha256")
            ):
                named_by = f"the build record {key}/{entry}"
                layers.append(self._wheel_layer(record["wheel"], record["sha256"], named_by))
            blob = self._put_small(data)
            layers.append(
                _descriptor(BUILD_RECORD_LAYER, blob["sha256"], blob["size"], title=BUILD_RECORD)
            )
            self._put_artifact(build_tag(key, entry), BUILD_ARTIFACT, layers, key)

    def _read_layer(self, tag: str, media_type: str, artifact_type: str) -> bytes | None:
        """The layer of ``media_type`` of the artifact tagged ``tag``; None when the tag is not
        there (a repository the registry does not know has no tags)."""
        ref = self.ref.with_tag(tag)
        try:
            body, _, _ = self._client.get_manifest(ref, accept=(OCI_MANIFEST,))
        except ImageNotFoundError:
            return None
        try:
            manifest = json.loads(body)
            layer = next(d for d in manifest["layers"] if d["mediaType"] == media_type)
            digest = str(layer["digest"])
        except (ValueError, KeyError, TypeError, StopIteration) as exc:
            raise RemoteError(
                f"{self.url}:{tag} is not a wheelbarrow artifact ({artifact_type})",
                hint="push it again with wheelbarrow, or give a repository of its own to --remote",
            ) from exc
        return self._client.get_blob(ref, digest)


def _parse(url: str) -> ImageReference:
    """The repository ``oci://REGISTRY/REPOSITORY`` names (as a reference with a stand-in tag)."""
    parts = urllib.parse.urlsplit(url)
    hint = "write the remote as oci://REGISTRY/REPOSITORY (e.g. oci://ghcr.io/team/wheels)"
    if parts.scheme != "oci" or not parts.netloc or not parts.path.strip("/"):
        raise RemoteError(f"{redact_urls(url)!r} is not an OCI repository URL", hint=hint)
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise RemoteError(
            f"{redact_urls(url)!r}: an OCI remote is the registry and repository alone",
            hint=hint + "; credentials go in an auth file (podman login REGISTRY)",
        )
    try:
        return ImageReference(registry=parts.netloc, repository=parts.path.strip("/"), tag="x")
    except ImageReferenceError as exc:
        why = exc.message.partition(": ")[2] or exc.message  # not the stand-in tag it quotes
        raise RemoteError(f"{url!r} does not name an OCI repository: {why}", hint=hint) from exc
