"""A small OCI registry on 127.0.0.1 with the referrers API (OCI distribution 1.1).

Debian's docker-registry has no referrers API, so the API path is tested against this
one: blobs (monolithic uploads), manifests by tag and digest, the ``OCI-Subject``
answer to a manifest with a ``subject``, and ``GET /v2/<name>/referrers/<digest>``
(with the ``artifactType`` filter, unless ``filters=False``). It keeps everything in
memory and records every request, so a test can say what the client asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_PATH = re.compile(
    r"^/v2/(?P<name>.+?)/(?P<kind>blobs/uploads|blobs|manifests|referrers)/?(?P<ref>[^/]*)$"
)


@dataclass
class RegistryState:
    """What the server holds, by repository, and the requests it answered (method, path)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # digest -> body, type
    tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, tag) -> digest
    subjects: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # -> referrers
    uploads: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    filters: bool = True
    refuse_subjects: bool = False  # answer a manifest with a subject with 400

    def manifest_puts(self) -> list[str]:
        """The references manifests were PUT under, in order."""
        return [p.rsplit("/", 1)[-1] for m, p in self.requests if m == "PUT" and "/manifests/" in p]


@dataclass(frozen=True)
class ReferrersRegistry:
    """A running server: ``host`` is ``127.0.0.1:PORT``."""

    host: str
    state: RegistryState


def _handler(state: RegistryState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def _route(self) -> tuple[str, str, str, dict[str, list[str]]] | None:
            parts = urlsplit(self.path)
            state.requests.append((self.command, parts.path))
            if parts.path == "/v2/":
                return ("", "root", "", {})
            match = _PATH.match(parts.path)
            if match is None:
                return None
            return match["name"], match["kind"], match["ref"], parse_qs(parts.query)

        def do_GET(self) -> None:
            route = self._route()
            if route is None:
                self._send(404)
                return
            name, kind, ref, query = route
            if kind == "root":
                self._send(200, b"{}", {"Content-Type": "application/json"})
                return
            if kind == "blobs":
                data = state.blobs.get(ref)
                if data is None:
                    self._send(404)
                    return
                self._send(200, data, {"Docker-Content-Digest": ref})
                return
            if kind == "manifests":
                digest = ref if ref.startswith("sha256:") else state.tags.get((name, ref))
                if digest is None or digest not in state.manifests:
                    self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                    return
                body, media_type = state.manifests[digest]
                self._send(200, body, {"Content-Type": media_type, "Docker-Content-Digest": digest})
                return
            if kind == "referrers":
                self._referrers(name, ref, query)
            return
            self._send(404)
            return

        do_HEAD = do_GET

        def _referrers(self, name: str, digest: str, query: dict[str, list[str]]) -> None:
            wanted = (query.get("artifactType") or [None])[0]
            entries = []
            for referrer in state.subjects.get((name, digest), []):
                body, media_type = state.manifests[referrer]
                doc = json.loads(body)
                artifact_type = doc.get("artifactType") or doc["config"]["mediaType"]
                if wanted and state.filters and artifact_type != wanted:
                    continue
                entry = {
                    "mediaType": media_type,
                    "digest": referrer,
                    "size": len(body),
                    "artifactType": artifact_type,
                }
                if doc.get("annotations"):
                    entry["annotations"] = doc["annotations"]
                entries.append(entry)
            headers = {"Content-Type": OCI_INDEX}
            if wanted and state.filters:
                headers["OCI-Filters-Applied"] = "artifactType"
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            self._send(200, json.dumps(index).encode(), headers)

        def do_POST(self) -> None:
            route = self._route()
            if route is None or route[1] != "blobs/uploads":
                self._send(404)
                return
            self._body()
            upload = uuid.uuid4().hex
            state.uploads.add(upload)
            self._send(202, headers={"Location": f"/v2/{route[0]}/blobs/uploads/{upload}"})

        def do_PUT(self) -> None:
            route = self._route()
            if route is None:
                self._send(404)
                return
            name, kind, ref, query = route
            body = self._body()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if kind == "blobs/uploads":
                if ref not in state.uploads or query.get("digest") != [digest]:
                    self._send(400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                    return
                state.uploads.discard(ref)
                state.blobs[digest] = body
                self._send(201, headers={"Docker-Content-Digest": digest})
                return
            if kind != "manifests":
                self._send(404)
                return
            if ref.startswith("sha256:") and ref != digest:
                self._send(400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                return
            doc = json.loads(body)
            if state.refuse_subjects and "subject" in doc:
                self._send(400, b'{"errors":[{"code":"MANIFEST_INVALID","message":"subject"}]}')
                return
            for blob in [doc.get("config"), *doc.get("layers", [])]:
                if blob and blob["digest"] not in state.blobs:
                    self._send(400, b'{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN"}]}')
                    return
            media_type = self.headers.get("Content-Type", "")
            state.manifests[digest] = (body, media_type)
            if not ref.startswith("sha256:"):
                state.tags[(name, ref)] = digest
            headers = {"Docker-Content-Digest": digest}
            subject = doc.get("subject")
            if isinstance(subject, dict):
                listed = state.subjects.setdefault((name, subject["digest"]), [])
                if digest not in listed:
                    listed.append(digest)
                headers["OCI-Subject"] = subject["digest"]
            self._send(201, headers=headers)

    return Handler


@contextlib.contextmanager
def serve_referrers_registry(
    *, filters: bool = True, refuse_subjects: bool = False
) -> Iterator[ReferrersRegistry]:
    """Run the registry on a free port of 127.0.0.1 until the block ends. ``filters=False``:
    it ignores ``artifactType`` (and says none was applied), as the spec allows;
    ``refuse_subjects``: it refuses every manifest with a ``subject``."""
    state = RegistryState(filters=filters, refuse_subjects=refuse_subjects)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ReferrersRegistry(host=f"127.0.0.1:{server.server_address[1]}", state=state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
