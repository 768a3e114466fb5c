"""The remote store on S3-compatible object storage (``s3://BUCKET/PREFIX``), through s3fs.

Credentials come from botocore's standard chain (``AWS_ACCESS_KEY_ID`` and
friends, ``~/.aws/credentials``, ``~/.aws/config``, ``AWS_PROFILE``, instance
roles); a server other than AWS's is named by ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``. Every object is written by one PUT (or one completed
multipart upload), which S3 makes visible whole or not at all.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow.store.remote import BUILD_RECORD, MANIFEST, RemoteError
from wheelbarrow.store.store import Store

__all__ = ["S3Remote"]

CHUNK = 1 << 20
_KEY_VARS = (
    ("key", "AWS_ACCESS_KEY_ID"),
    ("secret", "AWS_SECRET_ACCESS_KEY"),
    ("token", "AWS_SESSION_TOKEN"),
)
_CREDENTIALS_HINT = (
    "check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
    "and ~/.aws/credentials, and that they may read and write the bucket"
)


class S3Remote:
    """Blobs and manifests under ``s3://BUCKET/PREFIX`` (see :mod:`wheelbarrow.store.remote`)."""

    def __init__(self, url: str, *, environ: Mapping[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            raise RemoteError(
                f"{url!r} is not an S3 URL", hint="write the remote as s3://BUCKET/PREFIX"
            )
        self.bucket = parts.hostname
        self.prefix = parts.path.strip("/")
        # Never the URL as given: a user:secret@ part, if any, stays out of every message.
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
        # Keys in ``environ`` (the buildpacks' config vars too) are used; without them,
        # botocore's chain finds them (the process environment, ~/.aws, instance roles).
        given = environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY")
        self._keys = {arg: environ[name] for arg, name in _KEY_VARS if given and environ.get(name)}
        self._fs: Any = None  # an s3fs.S3FileSystem (s3fs has no type hints)

    def _where(self) -> str:
        return self.url + (f" (endpoint {self.endpoint})" if self.endpoint else "")

    @property
    def fs(self) -> Any:
        """The s3fs filesystem, made on first use (importing s3fs takes tenths of a second)."""
        if self._fs is None:
            try:
                from s3fs import S3FileSystem  # type: ignore[import-untyped]
            except ImportError as exc:
                raise RemoteError(
                    f"{self.url}: the S3 client (s3fs) is not installed",
                    hint="install it: pip install 'wheelbarrow[s3]'",
                ) from exc

            self._fs = S3FileSystem(
                **self._keys,
                endpoint_url=self.endpoint,
                skip_instance_cache=True,
                # One attempt per request, a short connect: a wrong endpoint is said in seconds.
                config_kwargs={"connect_timeout": 5, "retries": {"max_attempts": 2}},
            )
        return self._fs

    def _path(self, *parts: str) -> str:
        return "/".join(p for p in (self.bucket, self.prefix, *parts) if p)

    def _blob_path(self, sha256: str) -> str:
        return self._path("blobs", "sha256", sha256[:2], sha256)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """The client's exceptions as errors that name the remote (never a secret) and say what
        to do."""
        try:
            yield
        except WheelbarrowError:  # the local store's own (a hash mismatch): said as it is
            raise
        except PermissionError as exc:
            raise RemoteError(
                f"{self._where()}: access denied while {doing}", hint=_CREDENTIALS_HINT
            ) from exc
        except FileNotFoundError as exc:
            if _no_bucket(exc):
                raise RemoteError(
                    f"{self._where()}: the bucket {self.bucket} does not exist",
                    hint="create it (e.g. `aws s3 mb s3://BUCKET`), or fix the remote's URL",
                ) from exc
            raise
        except Exception as exc:
            raise _client_error(exc, self._where(), doing) from exc

    def has_blob(self, sha256: str) -> bool:
        """Whether the blob is there."""
        with self._errors(f"looking for blob {sha256[:12]}"):
            return bool(self.fs.exists(self._blob_path(sha256)))

    def get_blob(self, sha256: str, store: Store, *, filename: str) -> int:
        """Stream the blob into ``store``, which checks its hash before keeping it."""
        label = f"{filename} from {self.url}"
        with (
            self._errors(f"downloading {filename}"),
            self.fs.open(self._blob_path(sha256), "rb", block_size=8 * CHUNK) as src,
            store.writer(sha256=sha256, size=None, label=label, filename=filename) as out,
        ):
            while chunk := src.read(CHUNK):
                out.write(chunk)
            return out.size

    def put_blob(self, sha256: str, path: Path) -> None:
        """Upload one blob (already there with the same name means the same content)."""
        with self._errors(f"uploading {path.name}"):
            self.fs.put_file(str(path), self._blob_path(sha256))

    def get_manifest(self, key: str) -> bytes | None:
        """The manifest under ``key``, or None."""
        with self._errors(f"reading the manifest of wheelhouse {key}"):
            try:
                data: bytes = self.fs.cat_file(self._path("wheelhouses", key, MANIFEST))
            except FileNotFoundError as exc:
                if _no_bucket(exc):
                    raise
                self._check_bucket()
                return None
            return data

    def put_manifest(self, key: str, data: bytes) -> None:
        """Write the manifest in one PUT, then the bucket's static index (pages last)."""
        with self._errors(f"writing the manifest of wheelhouse {key}"):
            self.fs.pipe_file(self._path("wheelhouses", key, MANIFEST), data)
        from wheelbarrow.share.bucket_index import publish_manifest

        with self._errors(f"publishing the bucket's index of wheelhouse {key}"):
            publish_manifest(self.fs, self._path(), data)

    def get_builds(self, key: str) -> list[bytes]:
        """The build records under ``builds/KEY/``: one listing, then the records read together."""
        with self._errors(f"looking for builds of {key}"):
            found = self.fs.find(self._path("builds", key))
            records = sorted(p for p in found if p.endswith(f"/{BUILD_RECORD}"))
            if not records:
                self._check_bucket()
                return []
            data: dict[str, bytes] = self.fs.cat(records, on_error="omit")
            return [data[p] for p in records if p in data]

    def put_build(self, key: str, entry: str, data: bytes) -> None:
        """Write one build record in one PUT."""
        with self._errors(f"writing the build record {key}/{entry}"):
            self.fs.pipe_file(self._path("builds", key, entry, BUILD_RECORD), data)

    def _check_bucket(self) -> None:
        # A missing object and a missing bucket both read as "not found"; only the
        # bucket's absence is an error.
        if not self.fs.exists(self.bucket):
            raise FileNotFoundError(f"The specified bucket does not exist: {self.bucket}")


def _client_error(exc: Exception, where: str, doing: str) -> RemoteError:
    """A botocore or aiohttp failure as a :class:`RemoteError`."""
    name = type(exc).__name__
    if name in {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"} or (
        isinstance(exc, OSError) and "connect" in str(exc).lower()
    ):
        return RemoteError(
            f"{where}: cannot reach the S3 endpoint while {doing}",
            hint="check AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) and that the server is up; "
            "on AWS leave it unset",
        )
    code = _error_code(exc)
    if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}:
        return RemoteError(f"{where}: access denied while {doing} ({code})", hint=_CREDENTIALS_HINT)
    return RemoteError(
        f"{where}: {doing} failed: {name}: {exc}",
        hint="check the remote's URL, endpoint and credentials, then try again",
    )


def _error_code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _no_bucket(exc: FileNotFoundError) -> bool:
    """Whether "not found" is the bucket's absence (S3's ``NoSuchBucket``), not an object's.

    A path names the bucket, whose name may hold the word "bucket": only the error's
    code (or S3's message for that code) tells.
    """
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket":
        return True
    return "specified bucket does not exist" in str(exc).lower()
