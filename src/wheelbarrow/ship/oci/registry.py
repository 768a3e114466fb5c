"""A small OCI distribution client over httpx: manifests and blobs, pulled and pushed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx

from wheelbarrow._core.errors import (
    ImageNotFoundError,
    ImageReferenceError,
    RegistryAuthError,
    RegistryError,
)
from wheelbarrow._core.text import plural
from wheelbarrow.ship.oci.reference import (
    DEFAULT_REGISTRY,
    DEFAULT_REGISTRY_API_HOST,
    LEGACY_DEFAULT_REGISTRY,
    ImageReference,
    check_digest,
    is_loopback,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DEFAULT_ACCEPT = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

CHUNK = 1 << 20
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_SLEEP = 8.0
_TOKEN_LIFETIME = 60  # seconds, when the token server does not say (the spec's default)
_MAX_INDEX_DEPTH = 3
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')

RequestHook = Callable[[str, str], None]
"""Called with the method and URL of every request the client sends (token requests too)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A user name and password for one registry, and the auth file they came from."""

    username: str
    password: str = field(repr=False)
    source: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSource:
    """The auth files to look credentials up in, in order: the first file with an entry wins.

    Both formats are read: containers-auth.json (podman, skopeo, buildah) and
    docker's ``config.json``, whose ``auths`` map keys (``host``,
    ``host/namespace``, ``https://host/v1/``) to ``{"auth": base64("user:pass")}``
    or to ``username``/``password``. Within a file the most specific key wins
    (``host/ns/repo`` over ``host``). Credential helpers (``credsStore``,
    ``credHelpers``) are not run.
    """

    files: tuple[Path, ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], home: Path) -> AuthSource:
        """The files podman and skopeo read, given their environment and home directory.

        ``$REGISTRY_AUTH_FILE`` alone when it is set; otherwise
        ``$XDG_RUNTIME_DIR/containers/auth.json``,
        ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`` and
        ``${DOCKER_CONFIG:-~/.docker}/config.json``.
        """
        if environ.get("REGISTRY_AUTH_FILE"):
            return cls(files=(Path(environ["REGISTRY_AUTH_FILE"]),))
        files: list[Path] = []
        if environ.get("XDG_RUNTIME_DIR"):
            files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
        config_home = (
            Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
        )
        files.append(config_home / "containers" / "auth.json")
        docker = (
            Path(environ["DOCKER_CONFIG"]) if environ.get("DOCKER_CONFIG") else home / ".docker"
        )
        files.append(docker / "config.json")
        return cls(files=tuple(files))

    def find(self, registry: str, repository: str = "") -> Credentials | None:
        """The credentials for ``registry`` (and ``repository`` in it), or None."""
        parts = repository.split("/") if repository else []
        keys = [f"{registry}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
        keys.append(registry)
        for path in self.files:
            entries = _read_auth_file(path)
            for key in keys:
                entry = entries.get(key)
                if entry is not None:
                    found = _credentials(entry, key=key, source=path)
                    if found is not None:
                        return found
        return None

    def describe(self) -> str:
        """The files this source reads, for error messages: ``a.json, b.json (missing)``."""
        if not self.files:
            return "no auth file"
        return ", ".join(f"{p}" if p.is_file() else f"{p} (missing)" for p in self.files)


def _read_auth_file(path: Path) -> dict[str, Mapping[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise RegistryAuthError(
            f"cannot read the auth file {path}: {exc.strerror or exc}",
            hint="fix its permissions, or point REGISTRY_AUTH_FILE at another file",
        ) from exc
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise RegistryAuthError(
            f"the auth file {path} is not valid JSON (line {exc.lineno}: {exc.msg})",
            hint="log in again (podman login) to rewrite it, or fix it by hand",
        ) from exc
    auths = data.get("auths", {}) if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise RegistryAuthError(
            f"the auth file {path} has no 'auths' object",
            hint='it should look like {"auths": {"HOST": {"auth": "BASE64(user:password)"}}}',
        )
    return {_normalise_key(k): v for k, v in auths.items() if isinstance(v, dict)}


def _normalise_key(key: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``host/ns/`` → ``host/ns``."""
    text = key.strip()
    had_scheme = text.startswith(("https://", "http://"))
    if had_scheme:
        text = text.split("://", 1)[1]
    text = text.rstrip("/")
    if had_scheme:
        text = re.sub(r"/v[12]$", "", text)
    host, sep, path = text.partition("/")
    if host in (LEGACY_DEFAULT_REGISTRY, DEFAULT_REGISTRY_API_HOST):
        host = DEFAULT_REGISTRY
    return host + sep + path


def _credentials(entry: Mapping[str, Any], *, key: str, source: Path) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise RegistryAuthError(
                f"the auth file {source} has an 'auth' for {key} that is not base64 of "
                "user:password",
                hint=f"log in again (podman login {key.partition('/')[0]})",
            ) from exc
        username, colon, password = decoded.partition(":")
        if not colon:
            raise RegistryAuthError(
                f"the auth file {source} has an 'auth' for {key} without a ':' "
                "between user and password",
                hint=f"log in again (podman login {key.partition('/')[0]})",
            )
        return Credentials(username=username, password=password, source=source)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(username=user, password=secret, source=source)
    return None


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """``ALGORITHM:HEX`` of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclass(slots=True)
class _Token:
    value: str
    deadline: float


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
        self._auth = auth or AuthSource()
        self._client_factory = client_factory or _default_client
        self._timeout = httpx.Timeout(timeout)
        self._retries = max(0, retries)
        self._backoff = backoff
        self._on_request = on_request
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._basic: set[str] = set()
        self._credentials: dict[tuple[str, str], Credentials | None] = {}

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client (a later request opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- pulling ------------------------------------------------------------

    def get_manifest(
        self, ref: ImageReference, *, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> tuple[bytes, str, str]:
        """The manifest ``ref`` names: its bytes, media type and digest.

        By digest, the body is checked against it; by tag, the digest is
        computed, and checked against ``Docker-Content-Digest`` when sent.
        """
        url = f"{ref.api_base}/{ref.repository}/manifests/{ref.reference}"
        response = self._request(
            "GET", ref, url, headers={"Accept": ", ".join(accept)}, follow_redirects=True
        )
        if response.status_code == 404:
            raise ImageNotFoundError(
                f"no such image/tag: {ref} is not in {ref.registry}{_detail(response)}",
                hint=f"check the repository and tag (skopeo list-tags docker://{ref.name})",
            )
        if response.status_code != 200:
            self._fail(response, ref, f"GET manifest {ref.reference}")
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
            if media_type not in INDEX_MEDIA_TYPES:
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
        response = self._request("GET", ref, self._blob_url(ref, digest), follow_redirects=True)
        if response.status_code == 404:
            raise ImageNotFoundError(
                f"{ref.name} has no blob {digest}{_detail(response)}",
                hint="the image is incomplete in the registry: push it again",
            )
        if response.status_code != 200:
            self._fail(response, ref, f"GET blob {digest}")
        _verify(response.content, digest, what=f"blob {digest} of {ref.name}")
        return response.content

    def stream_blob(self, ref: ImageReference, digest: str, sink: Callable[[bytes], None]) -> None:
        """Pass a blob of ``ref``'s repository to ``sink`` chunk by chunk, then check its digest.

        The check can only fail after ``sink`` has seen every byte: write to a
        temporary place and keep it only when this returns.
        """
        algorithm = check_digest(digest).partition(":")[0]
        response = self._request(
            "GET", ref, self._blob_url(ref, digest), stream=True, follow_redirects=True
        )
        try:
            if response.status_code == 404:
                response.read()
                raise ImageNotFoundError(
                    f"{ref.name} has no blob {digest}{_detail(response)}",
                    hint="the image is incomplete in the registry: push it again",
                )
            if response.status_code != 200:
                response.read()
                self._fail(response, ref, f"GET blob {digest}")
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
        response = self._request("HEAD", ref, self._blob_url(ref, digest))
        if response.status_code == 404:
            return False
        if response.status_code == 200 or response.is_redirect:
            return True
        return self._fail(response, ref, f"HEAD blob {digest}")

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
            started = self._request("POST", ref, uploads, params=params, push=True)
            if started.status_code == 201:
                return True  # mounted from mount_from
            if started.status_code != 202:
                self._fail(started, ref, f"start the upload of blob {digest}")
            location = started.headers.get("Location")
            if not location:
                raise RegistryError(
                    f"{ref.registry} started an upload for {ref.name} without a Location",
                    hint="the registry does not follow the OCI distribution spec",
                )
            upload_url = started.url.join(location).copy_merge_params({"digest": digest})
            done = self._request(
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
            if done.status_code in _RETRYABLE_STATUS and attempt <= self._retries:
                self._sleep(attempt)
                continue
            self._fail(done, ref, f"upload blob {digest}")

    def put_manifest(self, ref: ImageReference, body: bytes, media_type: str) -> str:
        """Store a manifest under ``ref``'s tag (or, without one, its digest); return its digest.

        The blobs it names must be pushed first. When ``ref`` has a digest the
        body must match it.
        """
        if ref.digest is not None:
            _verify(body, ref.digest, what=f"the manifest for {ref}")
            digest = ref.digest
        else:
            digest = digest_of(body)
        reference = ref.tag if ref.tag is not None else digest
        url = f"{ref.api_base}/{ref.repository}/manifests/{reference}"
        response = self._request(
            "PUT", ref, url, push=True, content=lambda: body, headers={"Content-Type": media_type}
        )
        if response.status_code not in (200, 201, 202):
            self._fail(response, ref, f"PUT manifest {reference}")
        sent = response.headers.get("Docker-Content-Digest", "")
        if sent and sent.partition(":")[0] == digest.partition(":")[0] and sent != digest:
            raise RegistryError(
                f"{ref.registry} stored the manifest for {ref} as {sent}, not {digest}",
                hint="the registry rewrote the manifest; refer to the image by tag",
            )
        return digest

    # -- transport ----------------------------------------------------------

    def _blob_url(self, ref: ImageReference, digest: str) -> str:
        return f"{ref.api_base}/{ref.repository}/blobs/{digest}"

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def _request(
        self,
        method: str,
        ref: ImageReference,
        url: str | httpx.URL,
        *,
        push: bool = False,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: Callable[[], bytes | Iterator[bytes]] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        retry: bool = True,
    ) -> httpx.Response:
        """Send one request, answering one auth challenge and retrying transient failures.

        The response is returned whatever its status; with ``stream`` the
        caller closes it.
        """
        client = self._http()
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        attempt = 0
        challenged = False
        while True:
            attempt += 1
            request = client.build_request(
                method,
                url,
                params=params,
                headers={**(headers or {}), **self._authorization(ref, scope)},
                content=content() if content is not None else None,
                timeout=self._timeout,
            )
            if self._on_request is not None:
                self._on_request(method, str(request.url))
            try:
                response = client.send(request, stream=stream, follow_redirects=follow_redirects)
            except httpx.ConnectError as exc:
                raise RegistryError(
                    f"cannot reach the registry {ref.registry} ({ref.api_base}): {exc}",
                    hint=f"check that a registry runs at {ref.registry} and that the name "
                    "resolves (plain http is used only on loopback)",
                ) from exc
            except httpx.TransportError as exc:
                if not retry or attempt > self._retries:
                    raise RegistryError(
                        f"{method} {request.url} failed after {plural(attempt, 'attempt')}: "
                        f"{type(exc).__name__}: {exc}",
                        hint="check the network and the registry, then try again",
                    ) from exc
                self._sleep(attempt)
                continue
            if response.status_code == 401 and not challenged:
                challenged = True
                challenge = response.headers.get("WWW-Authenticate", "")
                if stream:
                    response.read()  # the error body, for the message
                response.close()
                self._answer(ref, scope, challenge, response)
                attempt -= 1  # the challenge is not a failure
                continue
            if retry and response.status_code in _RETRYABLE_STATUS and attempt <= self._retries:
                response.close()
                self._sleep(attempt)
                continue
            return response

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(_MAX_SLEEP, self._backoff * 2 ** (attempt - 1)))

    def _find_credentials(self, ref: ImageReference) -> Credentials | None:
        key = (ref.registry, ref.repository)
        with self._lock:
            if key in self._credentials:
                return self._credentials[key]
        found = self._auth.find(ref.registry, ref.repository)
        with self._lock:
            self._credentials[key] = found
        return found

    def _authorization(self, ref: ImageReference, scope: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get((ref.registry, scope))
            basic = ref.registry in self._basic
        if token is not None and token.deadline > time.monotonic():
            return {"Authorization": f"Bearer {token.value}"}
        if basic:
            credentials = self._find_credentials(ref)
            if credentials is not None:
                return {"Authorization": _basic(credentials)}
        return {}

    def _answer(
        self, ref: ImageReference, scope: str, challenge: str, response: httpx.Response
    ) -> None:
        """Get ready to retry after a 401: a Bearer token, or Basic credentials."""
        scheme, params = _parse_challenge(challenge)
        credentials = self._find_credentials(ref)
        if scheme == "basic":
            if credentials is None:
                raise self._auth_error(ref, response, None)
            with self._lock:
                self._basic.add(ref.registry)
            return
        if scheme != "bearer" or not params.get("realm"):
            raise self._auth_error(ref, response, credentials)
        realm = httpx.URL(params["realm"])
        if credentials is not None and realm.scheme != "https" and not is_loopback(realm.host):
            raise RegistryAuthError(
                f"{ref.registry} asks for credentials at {realm}, over plain http",
                hint="credentials are only sent over https (or on loopback)",
            )
        scopes = (params.get("scope") or scope).split()
        query = httpx.QueryParams(
            [("service", params["service"])] if params.get("service") else []
        ).merge({"scope": scopes})
        if self._on_request is not None:
            self._on_request("GET", str(realm.copy_merge_params(query)))
        try:
            answer = self._http().get(
                realm,
                params=query,
                headers={"Authorization": _basic(credentials)} if credentials else None,
                timeout=self._timeout,
                follow_redirects=True,
            )
        except httpx.TransportError as exc:
            raise RegistryError(
                f"cannot get a token for {ref.name} from {realm}: {type(exc).__name__}: {exc}",
                hint="check the network, then try again",
            ) from exc
        if answer.status_code in (401, 403):
            raise self._auth_error(ref, answer, credentials)
        if answer.status_code != 200:
            self._fail(answer, ref, f"get a token from {realm}")
        try:
            data = answer.json()
            value = data.get("token") or data.get("access_token")
            lifetime = int(data.get("expires_in") or _TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError) as exc:
            raise RegistryError(
                f"the token server {realm} answered without a token",
                hint="the registry's token service does not follow the spec",
            ) from exc
        if not isinstance(value, str) or not value:
            raise RegistryError(
                f"the token server {realm} answered without a token",
                hint="the registry's token service does not follow the spec",
            )
        # Renew a little early so a token never expires between check and use.
        deadline = time.monotonic() + max(1, lifetime - 5)
        with self._lock:
            self._tokens[(ref.registry, scope)] = _Token(value=value, deadline=deadline)

    def _auth_error(
        self, ref: ImageReference, response: httpx.Response, credentials: Credentials | None
    ) -> RegistryAuthError:
        status = f"HTTP {response.status_code}{_detail(response)}"
        if credentials is not None:
            return RegistryAuthError(
                f"{ref.registry} refused access to {ref.repository} ({status}) with the "
                f"credentials of {credentials.username!r} from {credentials.source}",
                hint=f"check the user, the password and their rights on {ref.repository} "
                f"(podman login {ref.registry} rewrites {credentials.source.name})",
            )
        return RegistryAuthError(
            f"{ref.registry} refused access to {ref.repository} ({status}); no credentials "
            f"for {ref.registry} in {self._auth.describe()}",
            hint=f"log in (podman login {ref.registry}) or set REGISTRY_AUTH_FILE to an auth "
            "file that has them",
        )

    def _fail(self, response: httpx.Response, ref: ImageReference, action: str) -> NoReturn:
        if response.status_code in (401, 403):
            raise self._auth_error(ref, response, self._find_credentials(ref))
        if response.status_code >= 500:
            hint = f"the registry failed (retried {plural(self._retries, 'time')}); check its log"
        else:
            hint = "check the image reference, and that the blobs it needs were pushed first"
        raise RegistryError(
            f"{ref.registry}: {action} in {ref.repository} failed: "
            f"HTTP {response.status_code}{_detail(response)}",
            hint=hint,
        )


def _default_client() -> httpx.Client:
    from wheelbarrow.store.fetch import default_client

    return default_client()


def _basic(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://a/token",service="r",scope="repository:x:pull,push"``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m[1].lower(): m[2] if m[2] is not None else (m[3] or "")
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


def _detail(response: httpx.Response) -> str:
    """``: CODE: message`` from a registry's JSON error body, or nothing."""
    try:
        errors = response.json().get("errors") or []
        parts = [
            f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
            for e in errors
            if isinstance(e, dict)
        ]
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        return ""
    return f": {'; '.join(parts)}" if parts else ""


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
