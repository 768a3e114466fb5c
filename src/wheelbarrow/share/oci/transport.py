"""The registry client's HTTP side: requests with auth challenges answered, failures retried."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NoReturn

import httpx

from wheelbarrow._core.errors import RegistryAuthError, RegistryError
from wheelbarrow._core.text import plural
from wheelbarrow.share.oci.auth import AuthSource, Credentials
from wheelbarrow.share.oci.reference import ImageReference, is_loopback

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_SLEEP = 8.0
_TOKEN_LIFETIME = 60  # seconds, when the token server does not say (the spec's default)
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')

RequestHook = Callable[[str, str], None]
"""Called with the method and URL of every request the client sends (token requests too)."""


@dataclass(slots=True)
class _Token:
    value: str
    deadline: float


class RegistryTransport:
    """Sends a registry's requests: credentials, tokens, retries and the errors they end in.

    ``auth`` gives credentials, used when a registry asks for them (Basic, or a
    Bearer token fetched from the realm it names, cached per repository and
    access). ``client_factory`` makes the ``httpx.Client`` (the default honours
    the usual proxy and certificate variables); ``on_request`` sees
    every request sent. Requests that fail with 5xx, 408 or 429, or time out,
    are retried ``retries`` times with exponential backoff.
    """

    def __init__(
        self,
        *,
        auth: AuthSource,
        client_factory: Callable[[], httpx.Client] | None,
        timeout: float,
        retries: int,
        backoff: float,
        on_request: RequestHook | None,
    ) -> None:
        self._auth = auth
        self._client_factory = client_factory or _default_client
        self._timeout = httpx.Timeout(timeout)
        self.retries = max(0, retries)
        self._backoff = backoff
        self._on_request = on_request
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._basic: set[str] = set()
        self._credentials: dict[tuple[str, str], Credentials | None] = {}

    def close(self) -> None:
        """Close the HTTP client (a later request opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def request(
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
                response = self._send(client, request, ref, stream, follow_redirects)
            except httpx.TransportError as exc:
                if not retry or attempt > self.retries:
                    raise RegistryError(
                        f"{method} {request.url} failed after {plural(attempt, 'attempt')}: "
                        f"{type(exc).__name__}: {exc}",
                        hint="check the network and the registry, then try again",
                    ) from exc
                self.sleep(attempt)
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
            if retry and response.status_code in RETRYABLE_STATUS and attempt <= self.retries:
                response.close()
                self.sleep(attempt)
                continue
            return response

    def _send(
        self,
        client: httpx.Client,
        request: httpx.Request,
        ref: ImageReference,
        stream: bool,
        follow_redirects: bool,
    ) -> httpx.Response:
        """Send ``request`` once; a registry that cannot be reached at all is not retried."""
        try:
            return client.send(request, stream=stream, follow_redirects=follow_redirects)
        except httpx.ConnectError as exc:
            raise RegistryError(
                f"cannot reach the registry {ref.registry} ({ref.api_base}): {exc}",
                hint=f"check that a registry runs at {ref.registry} and that the name "
                "resolves (plain http is used only on loopback)",
            ) from exc

    def sleep(self, attempt: int) -> None:
        """Wait before retry ``attempt``: exponential backoff, capped."""
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
        value, lifetime = self._fetch_token(ref, realm, query, credentials)
        # Renew a little early so a token never expires between check and use.
        deadline = time.monotonic() + max(1, lifetime - 5)
        with self._lock:
            self._tokens[(ref.registry, scope)] = _Token(value=value, deadline=deadline)

    def _fetch_token(
        self,
        ref: ImageReference,
        realm: httpx.URL,
        query: httpx.QueryParams,
        credentials: Credentials | None,
    ) -> tuple[str, int]:
        """Ask the token server at ``realm`` for a token: its value and lifetime in seconds."""
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
            self.fail(answer, ref, f"get a token from {realm}")
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
        return value, lifetime

    def _auth_error(
        self, ref: ImageReference, response: httpx.Response, credentials: Credentials | None
    ) -> RegistryAuthError:
        status = f"HTTP {response.status_code}{error_detail(response)}"
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

    def fail(self, response: httpx.Response, ref: ImageReference, action: str) -> NoReturn:
        """Raise the error a failed ``action`` on ``ref`` ended in, by its status."""
        if response.status_code in (401, 403):
            raise self._auth_error(ref, response, self._find_credentials(ref))
        if response.status_code >= 500:
            hint = f"the registry failed (retried {plural(self.retries, 'time')}); check its log"
        else:
            hint = "check the image reference, and that the blobs it needs were pushed first"
        raise RegistryError(
            f"{ref.registry}: {action} in {ref.repository} failed: "
            f"HTTP {response.status_code}{error_detail(response)}",
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


def error_detail(response: httpx.Response) -> str:
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
