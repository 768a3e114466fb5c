"""A small OCI distribution client over httpx: manifests and blobs, pulled and pushed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from wheelbarrow._core.errors import ImageNotFoundError, ImageReferenceError, RegistryError
from wheelbarrow.share.oci.auth import AuthSource
from wheelbarrow.share.oci.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from wheelbarrow.share.oci.reference import ImageReference, check_digest
from wheelbarrow.share.oci.referrers import Referrer, referrers_in, referrers_tag
from wheelbarrow.share.oci.transport import (
    RETRYABLE_STATUS,
    RegistryTransport,
    RequestHook,
    error_detail,
)

DEFAULT_ACCEPT = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)

CHUNK = 1 << 20
_MAX_INDEX_DEPTH = 3
_MAX_TAG_PAGES = 1000


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """``ALGORITHM:HEX`` of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class RegistryClient:
    """Pulls and pushes manifests and blobs over the OCI distribution API.

    ``auth`` gives credentials, used when a registry asks for them (Basic, or a
    Bearer token fetched from the realm it names, cached per repository and
    access). ``client_factory`` makes the ``httpx.Client`` (the default honours
    the usual proxy and certificate variables); ``on_request`` sees every
    request sent. Requests that fail with 5xx, 408 or 429, or time out, are
    retried ``retries`` times with exponential backoff. Never prints.
    """

    def __init__(
        self,
        *,
        auth: AuthSource | None = None,
        client_factory: Callable[[], httpx.Client] | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        on_request: RequestHook | None = None,
    ) -> None:
        self._transport = RegistryTransport(
            auth=auth or AuthSource(),
            client_factory=client_factory,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            on_request=on_request,
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client (a later request opens a new one)."""
        self._transport.close()

    # -- pulling ------------------------------------------------------------

    def get_manifest(
        self, ref: ImageReference, *, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> tuple[bytes, str, str]:
        """The manifest ``ref`` names: its bytes, media type and digest.

        By digest, the body is checked against it; by tag, the digest is
        computed, and checked against ``Docker-Content-Digest`` when sent.
        """
        url = f"{ref.api_base}/{ref.repository}/manifests/{ref.reference}"
        response = self._transport.request(
            "GET", ref, url, headers={"Accept": ", ".join(accept)}, follow_redirects=True
        )
        if response.status_code == 404:
            raise ImageNotFoundError(
                f"no such image/tag: {ref} is not in {ref.registry}{error_detail(response)}",
                hint=f"check the repository and tag (skopeo list-tags docker://{ref.name})",
            )
        if response.status_code != 200:
            self._transport.fail(response, ref, f"GET manifest {ref.reference}")
        body = response.content
        media_type = _media_type(response.headers.get("Content-Type", ""), body)
        if ref.digest is not None:
            _verify(body, ref.digest, what=f"the manifest of {ref}")
            return body, media_type, ref.digest
        digest = digest_of(body)
        sent = response.headers.get("Docker-Content-Digest", "")
        if sent.startswith("sha256:") and sent != digest:
            raise RegistryError(
                f"{ref.registry} sent a manifest for {ref} whose digest is {digest}, "
                f"not {sent} as it says",
                hint="the registry or a proxy altered the manifest; try again",
            )
        return body, media_type, digest

    def resolve_manifest(
        self,
        ref: ImageReference,
        *,
        os: str = "linux",
        arch: str = "amd64",
        variant: str | None = None,
    ) -> tuple[bytes, str, str]:
        """The image manifest of ``ref`` for one platform, following an index or manifest list.

        A plain image manifest is returned as it is. ``variant`` (``v8``)
        only narrows the choice when given.
        """
        current = ref
        for _ in range(_MAX_INDEX_DEPTH):
            body, media_type, digest = self.get_manifest(current)
            if media_type not in INDEX_TYPES:
                return body, media_type, digest
            current = current.with_digest(
                _pick_platform(body, ref=current, os=os, arch=arch, variant=variant)
            )
        raise RegistryError(
            f"{ref}: indexes nest more than {_MAX_INDEX_DEPTH} deep",
            hint="give the reference of the platform's manifest (@sha256:...) instead",
        )

    def get_blob(self, ref: ImageReference, digest: str) -> bytes:
        """A small blob (a config) of ``ref``'s repository, checked against ``digest``."""
        check_digest(digest)
        response = self._transport.request(
            "GET", ref, self._blob_url(ref, digest), follow_redirects=True
        )
        if response.status_code == 404:
            raise ImageNotFoundError(
                f"{ref.name} has no blob {digest}{error_detail(response)}",
                hint="the image is incomplete in the registry: push it again",
            )
        if response.status_code != 200:
            self._transport.fail(response, ref, f"GET blob {digest}")
        _verify(response.content, digest, what=f"blob {digest} of {ref.name}")
        return response.content

    def stream_blob(self, ref: ImageReference, digest: str, sink: Callable[[bytes], None]) -> None:
        """Pass a blob of ``ref``'s repository to ``sink`` chunk by chunk, then check its digest.

        The check can only fail after ``sink`` has seen every byte: write to a
        temporary place and keep it only when this returns.
        """
        algorithm = check_digest(digest).partition(":")[0]
        response = self._transport.request(
            "GET", ref, self._blob_url(ref, digest), stream=True, follow_redirects=True
        )
        try:
            if response.status_code == 404:
                response.read()
                raise ImageNotFoundError(
                    f"{ref.name} has no blob {digest}{error_detail(response)}",
                    hint="the image is incomplete in the registry: push it again",
                )
            if response.status_code != 200:
                response.read()
                self._transport.fail(response, ref, f"GET blob {digest}")
            hasher = hashlib.new(algorithm)
            try:
                for chunk in response.iter_bytes(CHUNK):
                    hasher.update(chunk)
                    sink(chunk)
            except httpx.TransportError as exc:
                raise RegistryError(
                    f"the download of blob {digest} from {ref.name} broke off: "
                    f"{type(exc).__name__}: {exc}",
                    hint="check the network, then try again",
                ) from exc
        finally:
            response.close()
        got = f"{algorithm}:{hasher.hexdigest()}"
        if got != digest:
            raise RegistryError(
                f"blob {digest} of {ref.name} arrived with digest {got}",
                hint="the registry or a proxy altered the blob; discard it and try again",
            )

    def has_blob(self, ref: ImageReference, digest: str) -> bool:
        """Whether ``ref``'s repository has the blob (``HEAD``)."""
        check_digest(digest)
        response = self._transport.request("HEAD", ref, self._blob_url(ref, digest))
        if response.status_code == 404:
            return False
        if response.status_code == 200 or response.is_redirect:
            return True
        return self._transport.fail(response, ref, f"HEAD blob {digest}")

    def blob_size(self, ref: ImageReference, digest: str) -> int | None:
        """The size of a blob of ``ref``'s repository (``HEAD``), or None when it has none."""
        check_digest(digest)
        response = self._transport.request(
            "HEAD", ref, self._blob_url(ref, digest), follow_redirects=True
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            self._transport.fail(response, ref, f"HEAD blob {digest}")
        try:
            return int(response.headers["Content-Length"])
        except (KeyError, ValueError) as exc:
            raise RegistryError(
                f"{ref.registry} answered HEAD blob {digest} without a Content-Length",
                hint="the registry does not follow the OCI distribution spec",
            ) from exc

    def list_tags(self, ref: ImageReference, *, page: int = 1000) -> list[str]:
        """Every tag of ``ref``'s repository, following the ``Link`` header page by page
        (``n`` and ``last``); a repository the registry does not know has none."""
        url: httpx.URL | str = f"{ref.api_base}/{ref.repository}/tags/list"
        params: dict[str, str] | None = {"n": str(page)}
        tags: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            response = self._transport.request("GET", ref, url, params=params)
            if response.status_code == 404:
                return tags
            if response.status_code != 200:
                self._transport.fail(response, ref, "list the tags")
            try:
                found = response.json().get("tags") or []
            except (ValueError, AttributeError) as exc:
                raise RegistryError(
                    f"{ref.registry} listed the tags of {ref.repository} in a body that is "
                    "not a JSON object",
                    hint="the registry does not follow the OCI distribution spec",
                ) from exc
            tags.extend(str(t) for t in found)
            following = response.links.get("next", {}).get("url")
            if not following:
                return tags
            url, params = response.url.join(following), None
        raise RegistryError(
            f"{ref.name} lists more than {_MAX_TAG_PAGES} pages of tags",
            hint="delete tags the repository no longer needs",
        )

    # -- pushing ------------------------------------------------------------

    def push_blob(
        self,
        ref: ImageReference,
        digest: str,
        data: bytes | Path,
        size: int,
        *,
        mount_from: str | None = None,
    ) -> bool:
        """Upload a blob to ``ref``'s repository unless it is there; False when it was.

        ``data`` is the bytes or a file, sent in one ``PUT`` (monolithic
        upload); the registry checks the digest. ``mount_from`` names another
        repository of the same registry that may have the blob: the registry
        then links it without an upload.
        """
        check_digest(digest)
        actual = len(data) if isinstance(data, bytes) else _file_size(data)
        if actual != size:
            raise RegistryError(
                f"blob {digest} for {ref.name} is {actual} bytes, not {size} as its "
                "descriptor says",
                hint="the file changed after it was hashed; build the image again",
            )
        if self.has_blob(ref, digest):
            return False
        uploads = f"{ref.api_base}/{ref.repository}/blobs/uploads/"
        attempt = 0
        while True:
            attempt += 1
            params = {"mount": digest, "from": mount_from} if mount_from else None
            started = self._transport.request("POST", ref, uploads, params=params, push=True)
            if started.status_code == 201:
                return True  # mounted from mount_from
            if started.status_code != 202:
                self._transport.fail(started, ref, f"start the upload of blob {digest}")
            location = started.headers.get("Location")
            if not location:
                raise RegistryError(
                    f"{ref.registry} started an upload for {ref.name} without a Location",
                    hint="the registry does not follow the OCI distribution spec",
                )
            upload_url = started.url.join(location).copy_merge_params({"digest": digest})
            done = self._transport.request(
                "PUT",
                ref,
                upload_url,
                push=True,
                retry=False,
                content=lambda: _content(data),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
            if done.status_code in (201, 204):
                return True
            if done.status_code in RETRYABLE_STATUS and attempt <= self._transport.retries:
                self._transport.sleep(attempt)
                continue
            self._transport.fail(done, ref, f"upload blob {digest}")

    def put_manifest(self, ref: ImageReference, body: bytes, media_type: str) -> str:
        """Store a manifest under ``ref``'s tag (or, without one, its digest); return its digest.

        The blobs it names must be pushed first. When ``ref`` has a digest the
        body must match it.
        """
        return self._put_manifest(ref, body, media_type)[0]

    def put_referrer(self, ref: ImageReference, body: bytes, media_type: str) -> bool:
        """Store a manifest with a ``subject`` (by ``ref``'s digest); whether the registry
        took the subject, saying so with ``OCI-Subject`` as registries with the
        referrers API do. When it did not, the referrers tag is the client's to write."""
        _, response = self._put_manifest(ref, body, media_type)
        return bool(response.headers.get("OCI-Subject"))

    def referrers(
        self, ref: ImageReference, digest: str, artifact_type: str | None = None
    ) -> tuple[Referrer, ...]:
        """The manifests of ``ref``'s repository whose subject is ``digest``, optionally of one
        ``artifact_type``: from ``GET /v2/<name>/referrers/<digest>`` (page by page) where
        the registry serves it, else, when it answers 404, from the referrers tag schema's
        index (none when that tag does not exist)."""
        check_digest(digest)
        url: httpx.URL | str = f"{ref.api_base}/{ref.repository}/referrers/{digest}"
        params = {"artifactType": artifact_type} if artifact_type else None
        found: list[Referrer] = []
        filtered = True
        for page in range(_MAX_TAG_PAGES):
            response = self._transport.request(
                "GET", ref, url, params=params, headers={"Accept": OCI_INDEX}
            )
            if response.status_code == 404 and page == 0:
                tagged = ref.with_tag(referrers_tag(digest))
                try:
                    body, _, _ = self.get_manifest(tagged, accept=(OCI_INDEX,))
                except ImageNotFoundError:
                    return ()
                found.extend(referrers_in(body, where=str(tagged)))
                filtered = False
                break
            if response.status_code != 200:
                self._transport.fail(response, ref, f"list the referrers of {digest}")
            found.extend(referrers_in(response.content, where=f"{ref.name} referrers of {digest}"))
            applied = response.headers.get("OCI-Filters-Applied", "")
            filtered = filtered and "artifactType" in (f.strip() for f in applied.split(","))
            following = response.links.get("next", {}).get("url")
            if not following:
                break
            url, params = response.url.join(following), None
        if artifact_type and not filtered:
            found = [r for r in found if r.artifact_type == artifact_type]
        return tuple(found)

    def _put_manifest(
        self, ref: ImageReference, body: bytes, media_type: str
    ) -> tuple[str, httpx.Response]:
        if ref.digest is not None:
            _verify(body, ref.digest, what=f"the manifest for {ref}")
            digest = ref.digest
        else:
            digest = digest_of(body)
        reference = ref.tag if ref.tag is not None else digest
        url = f"{ref.api_base}/{ref.repository}/manifests/{reference}"
        response = self._transport.request(
            "PUT", ref, url, push=True, content=lambda: body, headers={"Content-Type": media_type}
        )
        if response.status_code not in (200, 201, 202):
            self._transport.fail(response, ref, f"PUT manifest {reference}")
        sent = response.headers.get("Docker-Content-Digest", "")
        if sent and sent.partition(":")[0] == digest.partition(":")[0] and sent != digest:
            raise RegistryError(
                f"{ref.registry} stored the manifest for {ref} as {sent}, not {digest}",
                hint="the registry rewrote the manifest; refer to the image by tag",
            )
        return digest, response

    def _blob_url(self, ref: ImageReference, digest: str) -> str:
        return f"{ref.api_base}/{ref.repository}/blobs/{digest}"


def _media_type(content_type: str, body: bytes) -> str:
    declared = content_type.partition(";")[0].strip()
    if declared and declared not in ("application/json", "application/octet-stream", "text/plain"):
        return declared
    try:
        data = json.loads(body)
    except ValueError:
        return declared
    if not isinstance(data, dict):
        return declared
    if isinstance(data.get("mediaType"), str):
        return str(data["mediaType"])
    if "manifests" in data:
        return OCI_INDEX
    if "config" in data:
        return OCI_MANIFEST
    return declared


def _verify(data: bytes, digest: str, *, what: str) -> None:
    algorithm = digest.partition(":")[0]
    try:
        got = digest_of(data, algorithm)
    except ValueError as exc:
        raise ImageReferenceError(f"{what}: unsupported digest {digest!r}") from exc
    if got != digest:
        raise RegistryError(
            f"{what} has digest {got}, not {digest}",
            hint="the registry or a proxy altered the content; try again",
        )


def _pick_platform(
    body: bytes, *, ref: ImageReference, os: str, arch: str, variant: str | None
) -> str:
    try:
        entries = json.loads(body).get("manifests") or []
    except (ValueError, AttributeError) as exc:
        raise RegistryError(f"the index of {ref} is not a JSON object") from exc
    available: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        platform = entry.get("platform") or {}
        name = "/".join(
            str(p)
            for p in (platform.get("os"), platform.get("architecture"), platform.get("variant"))
            if p
        )
        available.append(name or "unknown")
        if (
            platform.get("os") == os
            and platform.get("architecture") == arch
            and (variant is None or platform.get("variant") == variant)
            and isinstance(entry.get("digest"), str)
        ):
            return check_digest(entry["digest"])
    wanted = "/".join(p for p in (os, arch, variant) if p)
    raise ImageNotFoundError(
        f"{ref} has no image for {wanted}; it has: {', '.join(available) or 'none'}",
        hint="pick one of those platforms, or another image",
    )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise RegistryError(
            f"cannot read the blob file {path}: {exc.strerror or exc}",
            hint="the file was removed or moved before the push; build the image again",
        ) from exc


def _content(data: bytes | Path) -> bytes | Iterator[bytes]:
    if isinstance(data, bytes):
        return data
    return _read_chunks(data)


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
